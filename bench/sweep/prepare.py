"""A sweep prepared before any attack: every input checked, the clean images predicted, the
combinations planned, the run and its combinations recorded, the closures fetched from the
graph store and what is stored found (``prepare_sweep``, ``prepared_sweep``); then the one
writer's step (``Prepared.write``) and what the sweep did (``SweepOutcome``). One process
(``bench.sweep.runner``) and a Ray cluster's driver (``bench.sweep.cluster``) prepare alike.

**Resume.** A re-run skips the stored rows and queues the others: a ``kill -9`` loses at most
the pairs in flight and the finished ones waiting for their metrics.

**Shards.** ``--shard i/n`` keeps the combinations with ``combo_id % n == i``; combination
ids are positions in the enumeration, the same in every process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bench import numerics
from bench.attacks import bind_graph
from bench.attacks.base import Attack
from bench.attacks.engine import EngineStats
from bench.attacks.ops import model_device
from bench.attacks.pairs import pair_batch_size
from bench.defenses import Defended, defended
from bench.errors import BenchError
from bench.metrics import average_precision, mean_ap
from bench.precision import with_precision
from bench.sweep.checks import SAMPLE, Check, Probe, black_box_check, run_probes
from bench.sweep.config import AttackSetting, attack_settings
from bench.sweep.pairs import PairQueue
from bench.sweep.planning import (
    CleanPredictions,
    PlannedCombination,
    clean_predictions,
    label_candidates,
    plan_combinations,
    shard_of,
)
from bench.sweep.progress import RunningRates, StageTimes, SweepProgress
from bench.sweep.rows import ExampleSpec
from bench.sweep.transfer import TransferTarget, check_names
from kg.closure import GraphTensors
from kg.graph import LabelGraph
from kg.stores.closures import closure_masks
from results.schema import ResultKey, ResultRow, RunConfig, TransferRow
from results.store import ResultStore

if TYPE_CHECKING:  # the dataset package registers every loader on import
    from bench.datasets.base import MultiLabelDataset

COMBINATION_CHUNK = 5_000  # combinations recorded per transaction


@dataclass(frozen=True)
class SweepRequest:
    """How to run a sweep, beside its configuration and inputs: what ``run_sweep``,
    ``run_sweep_ray`` and ``bench run`` pass on alike.

    Attributes:
        device: where the model runs (a Ray run: where each worker runs it).
        batch_size: B, the engine's slots (default ``pair_batch_size``).
        graph_store: ``ladybug`` or ``neo4j``, for the combinations' descendants; ``graph_db``:
            the Ladybug file (default ``$BENCH_LADYBUG_DB``, else ``$BENCH_DATA/graphs.lbug``).
        save_images: save the adversarial examples of the first N pairs of each combination
            and setting beside the database (``bench.examples``; listed in ``artifacts``).
        allow_mixed_numerics: let rows of another numerics fingerprint (another machine, or a
            cluster's other workers) join the run's (recorded); refused by default.
        transfer: models the adversarial images are also evaluated on (``bench.sweep.transfer``;
            one process only, not Ray). A pair is done when it has its row and a transfer row
            for each of them: a stored pair without is recomputed, and must reproduce its row.
    """

    device: torch.device | str = "cpu"
    batch_size: int | None = None
    graph_store: str = "ladybug"
    graph_db: str | Path | None = None
    save_images: int = 0
    allow_mixed_numerics: bool = False
    transfer: tuple[TransferTarget, ...] = ()

    @classmethod
    def of(cls, request: SweepRequest | None, options: dict[str, Any]) -> SweepRequest:
        """``request`` (default: the defaults) with ``options``, fields given as keywords."""
        return replace(request or cls(), **options)


@dataclass
class SweepOutcome:
    """What a sweep did in this process."""

    run_id: str
    db: Path
    combinations: int  # of this shard
    empty: int  # without eligible images
    pairs: int  # rows the shard's plan holds (all attacks)
    written: int  # rows written by this process
    resumed: int  # rows found stored at the start
    images: int  # images predicted
    consistent: int  # ... whose prediction is globally consistent
    skipped_images: int  # that did not decode
    batch_size: int
    seconds: float
    finished: bool
    times: StageTimes = field(default_factory=StageTimes)
    slot_use: dict[str, EngineStats] = field(default_factory=dict)  # the engine's slots per attack family
    checks: list[Check] = field(default_factory=list)  # the run's reliability checks, as stored
    targets: tuple[str, ...] = ()  # the transfer targets
    transferred: int = 0  # pairs evaluated on the transfer targets by this process
    recomputed: int = 0  # rows stored at the start but queued again, for a transfer target they lacked


@dataclass
class Prepared:
    """A sweep planned and recorded, ready for its pairs: what one process or a cluster's
    driver prepares before any attack."""

    run_id: str
    settings: list[AttackSetting]
    attacks: dict[AttackSetting, Attack]
    clean: CleanPredictions
    mine: list[PlannedCombination]  # the shard's combinations
    queue: PairQueue
    examples: ExampleSpec | None
    complete: int  # combinations complete now
    batch_size: int
    started: float
    store: ResultStore
    progress: SweepProgress
    times: StageTimes
    machine: str  # this process's numerics fingerprint id (``ResultStore.use_machine``)
    written: int = 0  # rows this process wrote
    slot_use: dict[str, EngineStats] = field(default_factory=dict)  # the engine's slots per attack family
    transfer: tuple[TransferTarget, ...] = ()  # in the run's precision
    stored_complete: frozenset[int] = frozenset()  # combinations complete in the store when the sweep began
    recomputed: int = 0  # rows stored at the start queued again, for a transfer target they lacked
    transferred: int = 0  # pairs this process evaluated on the transfer targets
    defended: Defended | None = None  # the model under the run's defense (``bench.defenses``)
    rates: RunningRates = field(init=False)

    def __post_init__(self) -> None:
        self.rates = RunningRates(self.settings)

    def write(
        self,
        rows: Sequence[ResultRow],
        saved: Sequence[tuple[ResultKey, str]] = (),
        machine: str | None = None,
        transfer: Sequence[TransferRow] = (),
    ) -> None:
        """Store new rows (and their saved examples and transfer rows) in one transaction, mark
        the combinations they complete, and advance the progress display: the one writer's step.
        ``machine``: the fingerprint id of the process that computed them (default: this one's).
        With transfer targets, rows recomputed for them must equal the stored ones (checked in
        the transaction: ``ResultStore.write_rows(verify=True)``)."""
        machine = machine or self.machine
        rows = [replace(r, machine=machine) for r in rows if r.key not in self.queue.done]
        if not rows:
            return
        keys = {r.key for r in rows}
        transfer = [t for t in transfer if t.key in keys]
        finished = self.queue.finish(rows)
        self.rates.add(rows)
        extra: dict[str, Any] = {"transfer": transfer, "verify": True} if self.transfer else {}
        with self.times("writing rows"):
            self.written += self.store.write_rows(self.run_id, rows, complete=finished, artifacts=saved, **extra)
        self.transferred += len(transfer) // max(len(self.transfer), 1)
        # a combination complete before, recomputed for transfer targets, is not counted twice
        self.complete += sum(1 for c in finished if c not in self.stored_complete)
        self.progress.advance(len(rows), self.complete, self.rates.text_for(rows[-1]))

    def outcome(self) -> SweepOutcome:
        """Mark the run finished when every combination is complete (and make the checks that
        need its rows); what this process did."""
        if self.complete == len(self.mine):
            with self.times("checks"):
                self.store.write_checks(self.run_id, [black_box_check(self.store.setting_rates(self.run_id))])
            with self.times("run records"):
                self.store.finish_run(self.run_id)
        return SweepOutcome(
            run_id=self.run_id,
            db=self.store.path,
            combinations=len(self.mine),
            empty=sum(1 for c in self.mine if not c.images),
            pairs=self.queue.planned,
            written=self.written,
            resumed=self.queue.planned - self.queue.todo,
            images=len(self.clean),
            consistent=int(self.clean.consistent.sum()),
            skipped_images=self.clean.skipped,
            batch_size=self.batch_size,
            seconds=time.perf_counter() - self.started,
            finished=self.complete == len(self.mine),
            times=self.times,
            slot_use=self.slot_use,
            checks=[Check(*c) for c in self.store.checks(self.run_id)],
            targets=tuple(t.name for t in self.transfer),
            transferred=self.transferred,
            recomputed=self.recomputed,
        )


def no_eligible(config: RunConfig, clean: CleanPredictions, candidates: int) -> BenchError:
    sizes = ", ".join(str(k) for k in config.sizes)
    usable = clean.positive[clean.consistent][:, :candidates]
    most = int(usable.sum(1).max()) if len(usable) else 0
    return BenchError(
        f"no {config.protocol.split} image of {config.dataset} is eligible for any target set of size {sizes}: "
        f"{int(clean.consistent.sum())} of {len(clean)} clean predictions are consistent with the graph, "
        f"the most labels one of them predicts positive is {most}, and an image needs every target predicted "
        "positive; try smaller {sizes} or a better-trained model",
        options=["sizes"],
    )


def prepare_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset: MultiLabelDataset,
    graph: LabelGraph,
    store: ResultStore,
    request: SweepRequest,
    *,
    progress: SweepProgress,
    times: StageTimes,
    record_machine: bool = True,
    defended: Defended | None = None,
) -> Prepared:
    """Check every input, predict the clean images (under the run's defense: ``defended``), plan,
    record the run and its combinations
    (and this machine's numerics fingerprint, unless ``record_machine`` is off: a cluster's
    driver, whose workers record their own), fetch the closures from the graph store and find
    what is stored: before any attack."""
    started = time.perf_counter()
    settings = attack_settings(config)
    protocol = config.protocol
    numerics.require(protocol.cpu_numerics)
    # Every input check before any work or any write: bad ε, τ or steps (|Ω|: sweep_config).
    attacks = {s: s.create() for s in settings}
    bind_graph(attacks.values(), graph)  # MLA-KG's edges (Attack.uses_graph); the sweep's outputs are the nodes
    candidates = len(label_candidates(graph, protocol.include_abstract))
    check_names(request.transfer)
    store.check_config(config)
    device = request.device
    with times("clean predictions"):
        predict = defended.predict if defended is not None else model
        clean = clean_predictions(predict, dataset, graph, device, progress=progress.predictions(len(dataset)))
    with times("planning"):
        planned = plan_combinations(
            clean,
            graph,
            config.sizes,
            config.images_per_combination,
            mode=protocol.combos,
            seed=config.seed,
            include_abstract=protocol.include_abstract,
            per_size=protocol.combinations_per_size,
        )
    if not any(c.images for c in planned):
        raise no_eligible(config, clean, candidates)
    mine = shard_of(planned, config.shard_index, config.shard_count)
    size = pair_batch_size(model, tuple(dataset[int(clean.indices[0])][0].shape), request.batch_size)
    fingerprint = numerics.row_numerics(device, protocol.precision, size, protocol.cpu_numerics)
    attacked = [c for c in mine if c.images]
    with times("graph store"):  # before the run's records: a store that fails leaves none
        _, descendants = closure_masks(graph, attacked, request.graph_store, request.graph_db)
    with times("run records"):
        run_id = store.begin_run(config)
        if record_machine:
            machine = store.use_machine(run_id, fingerprint, allow_mixed=request.allow_mixed_numerics)
        else:
            machine = numerics.row_numerics_id(fingerprint)
        _record_combinations(store, run_id, mine)
        store.write_clean_stats(run_id, *clean_stats(clean, dataset, defended))
    with times("resume bookkeeping"):
        stored = store.done_keys(run_id)
        done = store.done_keys(run_id, [t.name for t in request.transfer]) if request.transfer else stored
        queue = PairQueue(
            attacked,
            clean,
            settings,
            done,
            GraphTensors(graph),
            descendants,
            dataset,
            protocol.closure,
        )
        complete_stored = store.done_combinations(run_id)
        newly = sorted({c.combo_id for c in mine if queue.remaining[c.combo_id] == 0} - complete_stored)
        if newly:
            store.write_rows(run_id, [], complete=newly)
    if queue.n_pairs and not store.checks(run_id):  # a resumed run keeps the checks it made
        with times("checks"):
            attacked_model = defended.attacked if defended is not None else model
            store.write_checks(run_id, run_probes(sample_probe(attacked_model, queue, config)))
    complete = len(complete_stored) + len(newly)
    progress.start(queue.todo, len(mine), complete)
    examples = ExampleSpec.beside(store, run_id, request.save_images)
    return Prepared(
        run_id,
        settings,
        attacks,
        clean,
        mine,
        queue,
        examples,
        complete,
        size,
        started,
        store,
        progress,
        times,
        machine,
        transfer=tuple(t.with_precision(protocol.precision) for t in request.transfer),
        stored_complete=frozenset(complete_stored),
        recomputed=len(stored - done),
        defended=defended,
    )


@contextmanager
def prepared_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset: MultiLabelDataset,
    graph: LabelGraph,
    store: ResultStore,
    request: SweepRequest,
    *,
    progress: SweepProgress | None = None,
    times: StageTimes | None = None,
    record_machine: bool = True,
) -> Iterator[tuple[Prepared, nn.Module]]:
    """Hold the run for this process (``ResultStore.run_lock``) and prepare it (``prepare_sweep``);
    yields the prepared sweep and the model the attacks run on, in the run's precision (under the
    run's defense, ``bench.defenses``: one noisy draw, or EOT's mean). One process or a cluster's
    driver."""
    progress = progress or SweepProgress()
    times = times if times is not None else StageTimes()
    model = with_precision(model, config.protocol.precision)
    protocol = config.protocol
    view = defended(model, protocol.defense, protocol.eot, graph) if protocol.defense is not None else None
    with store.run_lock(config.run_id):
        prep = prepare_sweep(
            config,
            model,
            dataset,
            graph,
            store,
            request,
            progress=progress,
            times=times,
            record_machine=record_machine,
            defended=view,
        )
        yield prep, (view.attacked if view is not None else model)


def clean_stats(
    clean: CleanPredictions, dataset: MultiLabelDataset, defended: Defended | None
) -> tuple[int, float | None, float, float | None]:
    """``(images, mAP, consistent share, rejected share)`` of the clean predictions: mAP over the
    dataset's labels with a positive (``None`` without ground truth), the share a defense's
    detector rejects (``None`` without one)."""
    n_labels = dataset.graph.n_labels
    truth = dataset.targets()[clean.indices][:, :n_labels]
    ap = average_precision(clean.logits[:, :n_labels], truth) if bool(truth.any()) else None
    rejected = defended.rejects(clean.logits) if defended is not None else None
    return (
        len(clean),
        None if ap is None or math.isnan(mean_ap(ap)) else mean_ap(ap),
        float(clean.consistent.float().mean()) if len(clean) else 0.0,
        None if rejected is None else float(rejected.float().mean()),
    )


def sample_probe(model: nn.Module, queue: PairQueue, config: RunConfig) -> Probe:
    """The checks' sample: the queue's first ``SAMPLE`` pairs (whatever is stored), the run's
    largest ε and its iterations."""
    pairs = list(range(min(SAMPLE, queue.n_pairs)))
    images = torch.stack([queue.image(p) for p in pairs]).to(model_device(model))
    return Probe(model, images, queue.targets(pairs), max(config.eps), config.iterations, config.protocol.eot)


def _record_combinations(store: ResultStore, run_id: str, combos: Sequence[PlannedCombination]) -> None:
    """Write the combinations the store does not hold yet (all of them on a first run)."""
    stored = store.combination_ids(run_id)
    missing = [c.record() for c in combos if c.combo_id not in stored]
    for start in range(0, len(missing), COMBINATION_CHUNK):
        store.write_combinations(run_id, missing[start : start + COMBINATION_CHUNK])
