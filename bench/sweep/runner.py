"""Running a sweep: every (combination, image) pair under every attack through the engine's
B slots (continuous batching), metrics → rows.

**Work order.** The shard's pairs (combination ids ascending, images in dataset order) are
queued per (attack, ε, τ) setting, and the settings one after another. Attacks of one family
(the five Auto-PGD attacks; ML-DP; MLA-LP) share the engine's B slots
(``bench.attacks.engine``): when a pair finishes, its slot takes the next pair in the queue,
of the same combination, the next combination or the next setting, so the batch stays full
until the family's queue runs dry. Ψ = h(Ω, G) is computed for each pair as it is queued,
from its clean prediction and the graph store's descendants of Ω. Finished pairs
are measured in fixed batches of ``metric_batch(B)`` and written with one ``write_rows`` call
each, which also marks complete the combinations whose last row it holds.

**Reproducibility.** Every forward/backward of the attacks and of the metrics has a fixed
number of rows, and each row is computed from its own pair alone, so a pair's row depends on
its inputs, the machine, the device and B, never on which pairs share its batch, on the
order pairs arrive or on when it enters. Hence a resumed run, the shards of ``--shard i/n``
merged, and any number of workers give bitwise the rows of one uninterrupted run (with the
same B). ``docs/sweeps.md`` states the contract.

**Resume.** A re-run skips the stored rows and queues the others: a ``kill -9`` loses at most
the pairs in flight and the finished ones waiting for their metrics.

**Shards.** ``--shard i/n`` keeps the combinations with ``combo_id % n == i``; combination
ids are positions in the enumeration, the same in every process.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from bench import numerics
from bench.attacks import ATTACKS, attack_parameters, create_attack
from bench.attacks.apgd import APGDAttack
from bench.attacks.base import Attack
from bench.attacks.engine import EngineStats, Outcome, Task, running
from bench.attacks.pairs import pair_batch_size
from bench.attacks.targets import PairTargets, pair_targets
from bench.errors import BenchError, StoreBusy
from bench.metrics import pair_metrics
from bench.sweep.inputs import SweepModel
from bench.sweep.presets import Preset, SweepOptions
from bench.sweep.progress import StageTimes, SweepProgress
from bench.sweep.protocol import (
    CleanPredictions,
    PlannedCombination,
    check_sizes,
    clean_predictions,
    label_candidates,
    plan_combinations,
    shard_of,
)
from kg.closure import GraphTensors
from kg.graph import LabelGraph
from results.schema import Protocol, ResultKey, ResultRow, RunConfig
from results.store import ResultStore

RMSD_ATTACKS = ("ml-dp",)  # the results contract: RMSD on successful ML-DP rows (Supp. Fig. 2)
COMBINATION_CHUNK = 5_000  # combinations recorded per transaction
QUEUE_CHUNK = 256  # pairs whose targets are computed at once as they are queued
METRIC_BATCH = 64  # the most rows of one metrics batch
STORE_WAIT = 60.0  # seconds to wait for a graph store held by another sweep


# ---------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AttackSetting:
    """One (attack, ε, τ) of the grid; ``images`` caps the images per combination it attacks."""

    attack: str
    eps: float
    tau: float
    steps: int
    images: int

    def create(self) -> Attack:
        params = {"eps": self.eps, "steps": self.steps}
        if "tau" in attack_parameters(ATTACKS.get(self.attack)):
            params["tau"] = self.tau
        return create_attack(self.attack, **params)

    def key(self, combo_id: int, image_id: str) -> ResultKey:
        return ResultKey.of(combo_id, image_id, self.attack, self.eps, self.tau)


def attack_steps(attack: str, iterations: int, overrides: dict[str, int]) -> int:
    """Iterations of an attack: its override, else N for the Auto-PGD attacks, else its own default."""
    if attack in overrides:
        return int(overrides[attack])
    if issubclass(ATTACKS.get(attack), APGDAttack):
        return iterations
    return int(attack_parameters(ATTACKS.get(attack))["steps"])


def attack_settings(config: RunConfig) -> list[AttackSetting]:
    """The run's grid: every attack × ε, and × τ for the attacks that take τ (the others are
    written with ``τ = config.tau[0]``, the results contract)."""
    steps = dict(config.protocol.steps)
    images = dict(config.protocol.images)
    out = []
    for name in config.attacks:
        takes_tau = "tau" in attack_parameters(ATTACKS.get(name))
        for eps in config.eps:
            for tau in config.tau if takes_tau else config.tau[:1]:
                n = min(int(images.get(name, config.images_per_combination)), config.images_per_combination)
                out.append(AttackSetting(name, eps, tau, steps.get(name, config.iterations), n))
    return out


def sweep_config(
    dataset: str,
    model: SweepModel,
    graph: LabelGraph,
    preset: Preset,
    options: SweepOptions | None = None,
    *,
    name: str = "",
    shard: tuple[int, int] = (0, 1),
    device: str = "",
) -> RunConfig:
    """The ``RunConfig`` of a sweep: ``options`` with what they leave out taken from ``preset``.

    ``protocol`` records the settings that change the numbers beyond the grid: the split, how
    combinations are chosen, each attack's iterations and images per combination, the closure
    rule, the model's precision and the CPU numerics mode.
    """
    o = (options or SweepOptions()).filled(preset, dataset)
    steps = {a: attack_steps(a, o.iterations, dict(preset.attack_steps)) for a in o.attacks}
    fewer = {a: min(n, o.images_per_combination) for a, n in preset.attack_images.items() if a in o.attacks}
    return RunConfig(
        dataset=dataset,
        model_name=model.name,
        model_card=model.card,
        model_path=model.path,
        graph_name=graph.name,
        graph_sha256=graph.sha256,
        attacks=o.attacks,
        eps=o.eps,
        tau=o.tau,
        sizes=o.sizes,
        images_per_combination=o.images_per_combination,
        iterations=o.iterations,
        seed=o.seed,
        preset=preset.name,
        name=name,
        shard_index=shard[0],
        shard_count=shard[1],
        device=device,
        extra=Protocol(
            split=o.split,
            combos=o.combos,
            combinations_per_size=o.combinations_per_size,
            include_abstract=o.include_abstract,
            steps=steps,
            images=fewer,
            closure=o.closure,
            precision=o.precision,
            cpu_numerics=o.cpu_numerics,
        ).to_extra(),
    )


def shard_db_path(db: Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` writes: ``<stem>.shard-i-of-n<suffix>`` beside ``db``
    (``db`` itself when there is one shard); ``bench merge`` combines the files."""
    db = Path(db)
    return db if count == 1 else db.with_name(f"{db.stem}.shard-{index}-of-{count}{db.suffix}")


# ---------------------------------------------------------------------- graph store
def stored_graph_name(graph: LabelGraph) -> str:
    """The catalog's name when the graph is the catalog's, else the name with its hash (so a
    restricted or edited graph never replaces the catalog's copy in a shared store)."""
    from kg.catalog import load_graph

    try:
        same = load_graph(graph.name).sha256 == graph.sha256
    except BenchError:
        same = False
    return graph.name if same else f"{graph.name}-{graph.sha256[:12]}"


def _open_graph_store(kind: str, path: str | Path | None = None):
    from kg.stores import open_graph_store

    deadline = time.monotonic() + STORE_WAIT
    while True:
        try:
            return open_graph_store(kind, path)
        except StoreBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def closure_masks(
    graph: LabelGraph, combos: Sequence[PlannedCombination], kind: str = "ladybug", path: str | Path | None = None
) -> tuple[Tensor, Tensor]:
    """``[C, n]`` masks of the proper ancestors and descendants of each combination's members,
    from the graph store ``kind`` (a Ladybug store's file: ``path``): the graph is loaded
    idempotently, then one round trip for all."""
    ancestors = torch.zeros(len(combos), graph.n, dtype=torch.bool)
    descendants = torch.zeros_like(ancestors)
    if not combos:
        return ancestors, descendants
    name = stored_graph_name(graph)
    with _open_graph_store(kind, path) as store:
        store.load(graph if name == graph.name else replace(graph, name=name))
        masks = store.combination_masks(name, [c.labels for c in combos])
    n = masks.ancestors.shape[1]
    ancestors[:, :n] = torch.from_numpy(masks.ancestors)
    descendants[:, :n] = torch.from_numpy(masks.descendants)
    return ancestors, descendants


# ---------------------------------------------------------------------- the sweep
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
    engine: dict[str, EngineStats] = field(default_factory=dict)  # slot use per attack family


def no_eligible(config: RunConfig, clean: CleanPredictions) -> BenchError:
    sizes = ", ".join(str(k) for k in config.sizes)
    return BenchError(
        f"no {config.protocol.split} image of {config.dataset} is eligible for any target set of size {sizes}: "
        f"{int(clean.consistent.sum())} of {len(clean)} clean predictions are consistent with the graph, and an image "
        "needs every target predicted positive; try smaller {sizes} or a better-trained model",
        options=["sizes"],
    )


def metric_batch(batch: int) -> int:
    """Rows per metrics batch (SSIM, norms): fixed for a run of batch size B."""
    return min(batch, METRIC_BATCH)


@dataclass
class Prepared:
    """A sweep planned and recorded, ready for its pairs: what one process or a cluster's
    driver prepares before any attack."""

    run_id: str
    settings: list[AttackSetting]
    engines: dict[AttackSetting, Attack]
    clean: CleanPredictions
    mine: list[PlannedCombination]  # the shard's combinations
    work: _Work
    complete: int  # combinations complete now
    batch_size: int
    started: float
    store: ResultStore
    progress: SweepProgress
    times: StageTimes
    machine: str  # this process's numerics fingerprint id (``ResultStore.use_machine``)
    written: int = 0  # rows this process wrote
    engine: dict[str, EngineStats] = field(default_factory=dict)  # slot use per attack family

    def write(
        self, rows: Sequence[ResultRow], saved: Sequence[tuple[ResultKey, str]] = (), machine: str | None = None
    ) -> None:
        """Store new rows (and their saved examples) in one transaction, mark the combinations
        they complete, and advance the progress display: the one writer's step. ``machine``:
        the fingerprint id of the process that computed them (default: this one's)."""
        machine = machine or self.machine
        rows = [replace(r, machine=machine) for r in rows if r.key not in self.work.done]
        if not rows:
            return
        finished = self.work.finish(rows)
        with self.times("writing rows"):
            self.written += self.store.write_rows(self.run_id, rows, complete=finished, artifacts=saved)
        self.complete += len(finished)
        self.progress.advance(len(rows), self.complete, self.work.running_for(rows[-1]))

    def outcome(self) -> SweepOutcome:
        """Mark the run finished when every combination is complete; what this process did."""
        if self.complete == len(self.mine):
            with self.times("run records"):
                self.store.finish_run(self.run_id)
        return SweepOutcome(
            run_id=self.run_id,
            db=self.store.path,
            combinations=len(self.mine),
            empty=sum(1 for c in self.mine if not c.images),
            pairs=self.work.planned,
            written=self.written,
            resumed=self.work.planned - self.work.todo,
            images=len(self.clean),
            consistent=int(self.clean.consistent.sum()),
            skipped_images=self.clean.skipped,
            batch_size=self.batch_size,
            seconds=time.perf_counter() - self.started,
            finished=self.complete == len(self.mine),
            times=self.times,
            engine=self.engine,
        )


@dataclass(frozen=True)
class ExampleSpec:
    """Where a run saves its adversarial examples: the first ``per_combination`` pairs of each
    combination and setting, under ``folder``; paths are stored relative to ``base``."""

    folder: Path
    base: Path
    per_combination: int

    @classmethod
    def beside(cls, store: ResultStore, run_id: str, per_combination: int) -> ExampleSpec | None:
        if per_combination <= 0:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
        base = store.path.parent
        return cls(base / f"{store.path.stem}-examples" / slug, base, per_combination)


def prepare_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset,
    graph: LabelGraph,
    store: ResultStore,
    *,
    device,
    batch_size: int | None,
    graph_store: str,
    progress: SweepProgress,
    times: StageTimes,
    save_images: int = 0,
    graph_db: str | Path | None = None,
    allow_mixed_numerics: bool = False,
    record_machine: bool = True,
) -> Prepared:
    """Check every input, predict the clean images, plan, record the run and its combinations
    (and this machine's numerics fingerprint, unless ``record_machine`` is off: a cluster's
    driver, whose workers record their own), fetch the closures from the graph store and find
    what is stored: before any attack."""
    started = time.perf_counter()
    settings = attack_settings(config)
    protocol = config.protocol
    numerics.require(protocol.cpu_numerics)
    # Every input check before any work or any write: bad ε, τ or steps, or a size too large.
    engines = {s: s.create() for s in settings}
    check_sizes(config.sizes, len(label_candidates(graph, protocol.include_abstract)), graph)
    _check_stored_config(store, config)
    with times("clean predictions"):
        clean = clean_predictions(model, dataset, graph, device, progress=progress.predictions(len(dataset)))
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
        raise no_eligible(config, clean)
    mine = shard_of(planned, config.shard_index, config.shard_count)
    size = pair_batch_size(model, tuple(dataset[int(clean.indices[0])][0].shape), batch_size)
    fingerprint = numerics.fingerprint(device, protocol.precision, size, protocol.cpu_numerics)
    with times("run records"):
        run_id = store.begin_run(config)
        if record_machine:
            machine = store.use_machine(run_id, fingerprint, allow_mixed=allow_mixed_numerics)
        else:
            machine = numerics.machine_id(fingerprint)
        _record_combinations(store, run_id, mine)
    attacked = [c for c in mine if c.images]
    with times("graph store"):
        _, descendants = closure_masks(graph, attacked, graph_store, graph_db)
    with times("resume bookkeeping"):
        work = _Work(
            attacked,
            clean,
            settings,
            store.done_keys(run_id),
            GraphTensors(graph),
            descendants,
            dataset,
            protocol.closure,
            ExampleSpec.beside(store, run_id, save_images),
        )
        complete_stored = store.done_combinations(run_id)
        newly = sorted({c.combo_id for c in mine if work.remaining[c.combo_id] == 0} - complete_stored)
        if newly:
            store.write_rows(run_id, [], complete=newly)
    complete = len(complete_stored) + len(newly)
    progress.start(work.todo, len(mine), complete)
    return Prepared(
        run_id, settings, engines, clean, mine, work, complete, size, started, store, progress, times, machine
    )


@contextmanager
def prepared_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset,
    graph: LabelGraph,
    store: ResultStore,
    *,
    progress: SweepProgress | None = None,
    times: StageTimes | None = None,
    **options,
) -> Iterator[tuple[Prepared, nn.Module]]:
    """Hold the run for this process (``ResultStore.run_lock``) and prepare it (``options``: those
    of ``prepare_sweep``); yields the prepared sweep and the model in the run's precision. One
    process or a cluster's driver."""
    from bench.precision import with_precision

    progress = progress or SweepProgress()
    times = times if times is not None else StageTimes()
    model = with_precision(model, config.protocol.precision)
    with store.run_lock(config.run_id):
        prep = prepare_sweep(config, model, dataset, graph, store, progress=progress, times=times, **options)
        yield prep, model


def attack_rows(
    work: _Work,
    engines: dict[AttackSetting, Attack],
    model: nn.Module,
    size: int,
    max_targets: int,
    times: StageTimes,
    engine_stats: dict[str, EngineStats],
) -> Iterator[list[ResultRow]]:
    """Every pair of ``work`` not stored yet through the engine, family by family: yields each
    metrics batch's rows; ``engine_stats`` collects the slot use per attack family."""
    n_out = work.clean.logits.shape[1]
    for family in _families(work.settings, engines):
        attacks = [engines[s] for s in family]
        semantic = any(a.semantic for a in attacks)
        stats = engine_stats.setdefault(_family_name(attacks), EngineStats())
        family_started = time.perf_counter()
        buffer: list[Outcome] = []
        tasks = work.tasks([work.settings.index(s) for s in family], engines, times)
        targets = n_out if semantic else max_targets
        with running(attacks, model, tasks, size, n_out=n_out, max_targets=targets, stats=stats) as run:
            while True:
                with times("attack"):
                    finished = next(run, None)
                if finished is None:
                    break
                buffer.extend(finished)
                while len(buffer) >= metric_batch(size):
                    with times("metrics"):
                        rows = work.rows(buffer[: metric_batch(size)], metric_batch(size))
                    del buffer[: metric_batch(size)]
                    yield rows, work.take_saved()
        if buffer:
            with times("metrics"):
                rows = work.rows(buffer, metric_batch(size))
            yield rows, work.take_saved()
        stats.seconds += time.perf_counter() - family_started


def run_sweep(
    config: RunConfig,
    model: nn.Module,
    dataset,
    graph: LabelGraph,
    store: ResultStore,
    *,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    graph_store: str = "ladybug",
    graph_db: str | Path | None = None,
    progress: SweepProgress | None = None,
    times: StageTimes | None = None,
    save_images: int = 0,
    allow_mixed_numerics: bool = False,
) -> SweepOutcome:
    """Run (or resume) the sweep ``config`` describes and write its rows to ``store``.

    Args:
        config: the run's configuration (``sweep_config``; ``config.protocol`` holds the split,
            how combinations are chosen, per-attack ``steps`` and ``images``, closure, precision).
        model: the model under attack, on ``device``; outputs in ``graph``'s node order.
        dataset: the split to attack (``MultiLabelDataset``), labelled in ``graph``'s order.
        batch_size: B, the engine's slots (default ``pair_batch_size``).
        graph_store: ``ladybug`` or ``neo4j``, for the combinations' descendants; ``graph_db``:
            the Ladybug file (default ``$BENCH_LADYBUG_DB``, else ``$BENCH_DATA/graphs.lbug``).
        save_images: save the adversarial examples of the first N pairs of each combination
            and setting beside the database (``bench.examples``; listed in ``artifacts``).
        allow_mixed_numerics: resume a run whose stored rows another machine computed (another
            numerics fingerprint, ``bench.numerics``; recorded). With ``cpu_numerics`` =
            ``portable`` (``config.protocol``), ``bench.numerics.pin("portable")`` must have
            run before torch's first kernel in this process.
    """
    with prepared_sweep(
        config,
        model,
        dataset,
        graph,
        store,
        device=device,
        batch_size=batch_size,
        graph_store=graph_store,
        graph_db=graph_db,
        progress=progress,
        times=times,
        save_images=save_images,
        allow_mixed_numerics=allow_mixed_numerics,
    ) as (prep, model):
        for rows, saved in attack_rows(
            prep.work, prep.engines, model, prep.batch_size, max(config.sizes), prep.times, prep.engine
        ):
            prep.write(rows, saved)
        return prep.outcome()


def _families(settings: Sequence[AttackSetting], engines: dict[AttackSetting, Attack]) -> list[list[AttackSetting]]:
    """The settings grouped by attack family, in order of first appearance."""
    groups: dict[object, list[AttackSetting]] = {}
    for s in settings:
        groups.setdefault(engines[s].family(), []).append(s)
    return list(groups.values())


def _family_name(attacks: Sequence[Attack]) -> str:
    return "Auto-PGD" if isinstance(attacks[0], APGDAttack) else (attacks[0].display_name or attacks[0].name)


def _check_stored_config(store: ResultStore, config: RunConfig) -> None:
    """Refuse a stored run of the same id with another configuration before any work."""
    try:
        stored = store.run_config(config.run_id)
    except BenchError:
        return  # not stored yet
    if stored.config_hash != config.config_hash:
        store.begin_run(config)  # raises the store's message naming the fields that differ


def _record_combinations(store: ResultStore, run_id: str, combos: Sequence[PlannedCombination]) -> None:
    """Write the combinations the store does not hold yet (all of them on a first run)."""
    with store.reader() as con:
        stored = {r[0] for r in con.execute("SELECT combo_id FROM combinations WHERE run_id = ?", [run_id]).fetchall()}
    missing = [c.record() for c in combos if c.combo_id not in stored]
    for start in range(0, len(missing), COMBINATION_CHUNK):
        store.write_combinations(run_id, missing[start : start + COMBINATION_CHUNK])


class _Work:
    """The shard's (combination, image) pairs, what is stored, the queue and running rates."""

    def __init__(
        self,
        combos: Sequence[PlannedCombination],
        clean: CleanPredictions,
        settings: Sequence[AttackSetting],
        done: set[ResultKey],
        g: GraphTensors,
        descendants: Tensor,
        dataset,
        closure: str = "bench",
        examples: ExampleSpec | None = None,
    ) -> None:
        self.combos, self.clean, self.settings = list(combos), clean, list(settings)
        self.by_grid = {ResultKey.of(0, "", s.attack, s.eps, s.tau)[2:]: s for s in self.settings}
        self.g, self.descendants, self.dataset, self.closure = g, descendants, dataset, closure
        self.examples, self.saved = examples, []
        pos = [(i, rank, row) for i, c in enumerate(self.combos) for rank, row in enumerate(c.images)]
        self.n_pairs = len(pos)
        self.combo = torch.tensor([p[0] for p in pos], dtype=torch.long)
        self.rank = torch.tensor([p[1] for p in pos], dtype=torch.long)
        self.row = torch.tensor([p[2] for p in pos], dtype=torch.long)
        self.done = set(done)
        self.remaining: Counter[int] = Counter({c.combo_id: 0 for c in self.combos})
        self.planned = 0
        self.pending: list[list[int]] = [[] for _ in self.settings]  # per setting: its pairs not stored yet
        for p in range(self.n_pairs):
            for si, s in enumerate(self.settings):
                if self.rank[p] < s.images:
                    self.planned += 1
                    if self.key(p, s) not in self.done:
                        self.remaining[self.combo_id(p)] += 1
                        self.pending[si].append(p)
        self.todo = sum(self.remaining.values())
        self.rates: dict[AttackSetting, list[int]] = {}
        self.in_flight: dict[tuple[int, int], tuple[PairTargets, Tensor]] = {}

    def combo_id(self, p: int) -> int:
        return self.combos[int(self.combo[p])].combo_id

    def image_id(self, p: int) -> str:
        return self.clean.image_ids[int(self.row[p])]

    def key(self, p: int, s: AttackSetting) -> ResultKey:
        return s.key(self.combo_id(p), self.image_id(p))

    def tasks(
        self, setting_ids: Sequence[int], engines: dict[AttackSetting, Attack], times: StageTimes
    ) -> Iterator[Task]:
        """The queue: each setting's pairs not stored yet, in pair order, settings one after another.

        A task's ``setting`` indexes ``setting_ids`` (the engine's attacks); its key is
        ``(pair, index into self.settings)``."""
        for local, si in enumerate(setting_ids):
            s = self.settings[si]
            pending = self.pending[si]
            for start in range(0, len(pending), QUEUE_CHUNK):
                chunk = pending[start : start + QUEUE_CHUNK]
                with times("targets"):
                    targets = self.targets(chunk)
                desired, tmask, ntmask = targets.attack_inputs(engines[s].semantic)
                for j, p in enumerate(chunk):
                    with times("images"):
                        image = self.image(p)
                    self.in_flight[(p, si)] = (targets.select(slice(j, j + 1)), image)
                    yield Task((p, si), local, image, desired[j], tmask[j], ntmask[j])

    def image(self, p: int) -> Tensor:
        return self.dataset[int(self.clean.indices[int(self.row[p])])][0]

    def targets(self, pairs: Sequence[int]) -> PairTargets:
        """Ω and Ψ = h(Ω, G) of the pairs, from each pair's clean prediction."""
        index = torch.tensor(pairs, dtype=torch.long)
        combo = self.combo[index]
        clean = self.clean.positive[self.row[index]]
        omega = torch.zeros_like(clean)
        for j, c in enumerate(combo.tolist()):
            omega[j, list(self.combos[c].members)] = True
        return pair_targets(clean, omega, self.g, descendants=self.descendants[combo], closure=self.closure)

    def rows(self, outcomes: Sequence[Outcome], batch: int) -> list[ResultRow]:
        """The finished pairs' rows; metrics over ``batch`` rows (the last ones padded)."""
        entries = [self.in_flight.pop(o.key) for o in outcomes]
        pad = batch - len(outcomes)
        targets = PairTargets(
            *(
                torch.cat([getattr(t, f) for t, _ in entries] + [getattr(entries[0][0], f)] * pad)
                for f in ("clean", "omega", "psi")
            ),
            entries[0][0].output_index,
            entries[0][0].turn_on,
        )
        clean_images = torch.stack([image for _, image in entries] + [entries[0][1]] * pad)
        adv = torch.stack([o.adv for o in outcomes] + [outcomes[0].adv] * pad)
        logits = torch.stack([o.logits for o in outcomes] + [outcomes[0].logits] * pad).float().cpu()
        m = pair_metrics(targets, logits, self.g, clean_images.to(adv), adv)
        names = self.output_names(targets)
        out = []
        for j, o in enumerate(outcomes):
            p, s = o.key[0], self.settings[o.key[1]]
            ok = bool(m.success[j])
            out.append(
                ResultRow(
                    combo_id=self.combo_id(p),
                    image_id=self.image_id(p),
                    attack=s.attack,
                    eps=s.eps,
                    tau=s.tau,
                    success=ok,
                    consistent=bool(m.consistent[j]),
                    ntr_share=float(m.ntr_share[j]),
                    iterations=o.iterations if o.iterations >= 0 else s.steps,
                    linf=float(m.linf[j]),
                    l2=float(m.l2[j]),
                    seconds=o.seconds,
                    ssim=float(m.ssim[j]) if ok and not math.isnan(float(m.ssim[j])) else None,
                    rmsd=float(m.rmsd[j]) if ok and s.attack in RMSD_ATTACKS else None,
                    flipped=tuple(names[k] for k in m.flipped[j].nonzero().flatten().tolist()),
                )
            )
            if self.examples is not None and int(self.rank[p]) < self.examples.per_combination:
                self.saved.append((out[-1].key, self._save(o, entries[j][0], entries[j][1], s)))
        return out

    def output_names(self, targets: PairTargets) -> list[str]:
        """Each model output's name: its graph node's, else its index."""
        names = [str(i) for i in range(targets.clean.shape[1])]
        for node, out in enumerate(targets.output_index.tolist()):
            names[out] = self.g.graph.nodes[node]
        return names

    def _save(self, o: Outcome, targets: PairTargets, clean_image: Tensor, s: AttackSetting) -> str:
        from bench.examples import save_example, stem_for

        p = o.key[0]
        stem = stem_for(self.combo_id(p), s.attack, s.eps, s.tau, self.image_id(p))
        names = self.output_names(targets)
        path = save_example(
            self.examples.folder,
            stem,
            clean_image,
            o.adv,
            s.eps,
            s.attack,
            self.clean.logits[int(self.row[p])],
            o.logits,
            targets.omega[0],
            targets.psi[0],
            names,
        )
        return str(path.relative_to(self.examples.base))

    def take_saved(self) -> list[tuple[ResultKey, str]]:
        """The examples saved since the last call (row key, path relative to the database's folder)."""
        saved, self.saved = self.saved, []
        return saved

    def finish(self, rows: Sequence[ResultRow]) -> list[int]:
        """Count the rows as stored; the combinations they complete."""
        finished = []
        for r in rows:
            self.done.add(r.key)
            self.remaining[r.combo_id] -= 1
            if self.remaining[r.combo_id] == 0:
                finished.append(r.combo_id)
            rate = self.rates.setdefault(self.setting_of(r), [0, 0, 0])
            rate[0], rate[1], rate[2] = rate[0] + 1, rate[1] + r.success, rate[2] + r.consistent
        return finished

    def setting_of(self, row: ResultRow) -> AttackSetting:
        return self.by_grid[row.key[2:]]

    def running_for(self, row: ResultRow) -> str:
        """The running rates of the setting ``row`` belongs to."""
        return self.running(self.setting_of(row))

    def running(self, s: AttackSetting) -> str:
        n, ok, consistent = self.rates.get(s, [0, 0, 0])
        name = ATTACKS.get(s.attack).display_name or s.attack
        return f"{name} ε={s.eps:g}: FR_N {100 * ok / max(n, 1):.0f}% FR_S {100 * consistent / max(n, 1):.0f}%"
