"""The pair queue through the engine, and the engine's outcomes as result rows.

``attack_rows`` runs the queue's pairs family by family (the five Auto-PGD attacks; ML-DP;
MLA-LP) through the engine's B slots (``bench.attacks.engine.running``): when a pair finishes,
its slot takes the next pair in the queue, of the same combination, the next combination or
the next setting, so the batch stays full until the family's queue runs dry. Finished pairs
are measured in fixed batches of ``metric_batch(B)`` (``make_rows``: ``bench.metrics`` on the
engine's own logits) and come out as ``ResultRow``s, with the adversarial examples the run
saves (``ExampleSpec``, ``bench.examples``) and, with transfer targets, each row's adversarial
image evaluated on them in the same batch (``bench.sweep.transfer``).

**Reproducibility.** Every forward/backward of the attacks and of the metrics has a fixed
number of rows, and each row is computed from its own pair alone, so a pair's row depends on
its inputs, the machine, the device and B, never on which pairs share its batch, on the order
pairs arrive or on when it enters (``docs/sweeps.md`` states the contract).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn

from bench.attacks.apgd import APGDAttack
from bench.attacks.base import Attack
from bench.attacks.engine import EngineStats, Outcome, running
from bench.attacks.targets import PairTargets
from bench.defenses import Defended
from bench.examples import save_example, stem_for
from bench.metrics import pair_metrics
from bench.sweep.config import AttackSetting
from bench.sweep.pairs import InFlight, PairQueue, TaskKey
from bench.sweep.progress import StageTimes
from bench.sweep.transfer import TransferTarget, transfer_rows
from results.schema import ResultKey, ResultRow, TransferRow
from results.store import ResultStore

RMSD_ATTACKS = ("ml-dp",)  # the results contract: RMSD on successful ML-DP rows (Supp. Fig. 2)
METRIC_BATCH = 64  # the most rows of one metrics batch

Saved = list[tuple[ResultKey, str]]  # row key → saved example, relative to the database's folder


def metric_batch(batch: int) -> int:
    """Rows per metrics batch (SSIM, norms): fixed for a run of batch size B."""
    return min(batch, METRIC_BATCH)


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


def attack_rows(
    queue: PairQueue,
    attacks: dict[AttackSetting, Attack],
    model: nn.Module,
    size: int,
    max_targets: int,
    times: StageTimes,
    slot_use: dict[str, EngineStats],
    examples: ExampleSpec | None = None,
    transfer: Sequence[TransferTarget] = (),
    defended: Defended | None = None,
) -> Iterator[tuple[list[ResultRow], Saved, list[TransferRow]]]:
    """Every pair of ``queue`` not stored yet through the engine, family by family: yields each
    metrics batch's rows, the examples saved with them and their transfer rows (on the
    ``transfer`` targets); ``slot_use`` collects the engine's slot use per attack family."""
    n_out = queue.clean.logits.shape[1]
    for family in families(queue.settings, attacks):
        members = [attacks[s] for s in family]
        semantic = any(a.semantic for a in members)
        stats = slot_use.setdefault(family_name(members), EngineStats())
        family_started = time.perf_counter()
        buffer: list[Outcome] = []
        tasks = queue.tasks([queue.settings.index(s) for s in family], attacks, times)
        targets = n_out if semantic else max_targets
        with running(members, model, tasks, size, n_out=n_out, max_targets=targets, stats=stats) as run:
            while True:
                with times("attack"):
                    finished = next(run, None)
                if finished is None:
                    break
                buffer.extend(finished)
                while len(buffer) >= metric_batch(size):
                    with times("metrics"):
                        made = make_rows(
                            queue, buffer[: metric_batch(size)], metric_batch(size), examples, transfer, times, defended
                        )
                    del buffer[: metric_batch(size)]
                    yield made
        if buffer:
            with times("metrics"):
                made = make_rows(queue, buffer, metric_batch(size), examples, transfer, times, defended)
            yield made
        stats.seconds += time.perf_counter() - family_started


def families(settings: Sequence[AttackSetting], attacks: dict[AttackSetting, Attack]) -> list[list[AttackSetting]]:
    """The settings grouped by attack family, in order of first appearance."""
    groups: dict[object, list[AttackSetting]] = {}
    for s in settings:
        groups.setdefault(attacks[s].family(), []).append(s)
    return list(groups.values())


def family_name(attacks: Sequence[Attack]) -> str:
    return "Auto-PGD" if isinstance(attacks[0], APGDAttack) else (attacks[0].display_name or attacks[0].name)


def make_rows(
    queue: PairQueue,
    outcomes: Sequence[Outcome],
    batch: int,
    examples: ExampleSpec | None = None,
    transfer: Sequence[TransferTarget] = (),
    times: StageTimes | None = None,
    defended: Defended | None = None,
) -> tuple[list[ResultRow], Saved, list[TransferRow]]:
    """The finished pairs' rows, metrics over ``batch`` rows (the last ones padded), the
    examples saved (the pairs ``examples`` asks for) and the rows' transfer rows on the
    ``transfer`` targets (their forwards over the same ``batch`` rows; timed as the stage
    ``transfer`` of ``times``, within ``metrics``)."""
    keys = [_task_key(o) for o in outcomes]
    entries = [queue.in_flight.pop(k) for k in keys]
    pad = batch - len(outcomes)
    first = entries[0].targets
    targets = PairTargets(
        torch.cat([e.targets.clean for e in entries] + [first.clean] * pad),
        torch.cat([e.targets.omega for e in entries] + [first.omega] * pad),
        torch.cat([e.targets.psi for e in entries] + [first.psi] * pad),
        first.output_index,
        first.turn_on,
    )
    clean_images = torch.stack([e.image for e in entries] + [entries[0].image] * pad)
    adv = torch.stack([o.adv for o in outcomes] + [outcomes[0].adv] * pad)
    logits = torch.stack([o.logits for o in outcomes] + [outcomes[0].logits] * pad).float().cpu()
    detected: list[bool] | None = None
    if defended is not None:  # the defended prediction decides, and its detector rejects
        with torch.no_grad():
            logits = defended.predict(adv).float().cpu()
        rejected = defended.rejects(logits)
        detected = None if rejected is None else rejected.tolist()
    m = pair_metrics(targets, logits, queue.g, clean_images.to(adv), adv)
    names = output_names(queue, targets)
    out, saved = [], []
    for j, o in enumerate(outcomes):
        p, s = keys[j][0], queue.settings[keys[j][1]]
        ok = bool(m.success[j])
        out.append(
            ResultRow(
                combo_id=queue.combo_id(p),
                image_id=queue.image_id(p),
                attack=s.attack,
                eps=s.eps,
                tau=s.tau,
                success=ok,
                consistent=bool(m.consistent[j]),
                ntr_share=float(m.ntr_share[j]),
                success_iteration=o.iterations if o.iterations >= 0 else s.steps,
                linf=float(m.linf[j]),
                l2=float(m.l2[j]),
                seconds=o.seconds,
                ssim=float(m.ssim[j]) if ok and not math.isnan(float(m.ssim[j])) else None,
                rmsd=float(m.rmsd[j]) if ok and s.attack in RMSD_ATTACKS else None,
                flipped=tuple(names[k] for k in m.flipped[j].nonzero().flatten().tolist()),
                detected=None if detected is None else bool(detected[j]),
            )
        )
        if examples is not None and int(queue.rank[p]) < examples.per_combination:
            saved.append((out[-1].key, _save(queue, examples, o, p, entries[j], s)))
    moved: list[TransferRow] = []
    if transfer:
        timer: AbstractContextManager[None] = times("transfer") if times is not None else nullcontext()
        pairs = [k[0] for k in keys] + [keys[0][0]] * pad
        descendants = queue.descendants[queue.combo[torch.tensor(pairs, dtype=torch.long)]]
        omega = targets.graph_view(targets.omega)
        images = clean_images.to(adv)
        with timer:
            moved = transfer_rows(transfer, out, queue.g, omega, descendants, images, adv, queue.closure)
    return out, saved, moved


def output_names(queue: PairQueue, targets: PairTargets) -> list[str]:
    """Each model output's name: its graph node's, else its index."""
    names = [str(i) for i in range(targets.clean.shape[1])]
    for node, out in enumerate(targets.output_index.tolist()):
        names[out] = queue.g.graph.nodes[node]
    return names


def _save(queue: PairQueue, examples: ExampleSpec, o: Outcome, p: int, entry: InFlight, s: AttackSetting) -> str:
    stem = stem_for(queue.combo_id(p), s.attack, s.eps, s.tau, queue.image_id(p))
    path = save_example(
        examples.folder,
        stem,
        entry.image,
        o.adv,
        s.eps,
        s.attack,
        queue.clean.logits[int(queue.row[p])],
        o.logits,
        entry.targets.omega[0],
        entry.targets.psi[0],
        output_names(queue, entry.targets),
    )
    return str(path.relative_to(examples.base))


def _task_key(outcome: Outcome) -> TaskKey:
    """The queue's key of a finished task: ``(pair, setting index)`` (``PairQueue.tasks``)."""
    return cast(TaskKey, outcome.key)
