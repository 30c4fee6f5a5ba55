"""The pair queue: a shard's (combination, image) pairs under every setting of the grid, what
is stored, and the engine's tasks in the run's work order.

**Work order.** The shard's pairs (combination ids ascending, images in dataset order) are
queued per (attack, ε, τ) setting, and the settings one after another. Ψ = h(Ω, G) is computed
for each pair as it is queued (``QUEUE_CHUNK`` pairs at once), from its clean prediction and
the graph store's descendants of Ω. A queued pair stays *in flight* (its targets and clean
image kept) until its row is made (``bench.sweep.rows``); ``finish`` counts stored rows and
names the combinations they complete.

One process (``bench.sweep.runner``) and each Ray worker (``bench.sweep.cluster``) build one
queue over the combinations they attack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from bench.attacks.base import Attack
from bench.attacks.engine import Task
from bench.attacks.targets import PairTargets, pair_targets
from bench.sweep.config import AttackSetting
from bench.sweep.planning import CleanPredictions, PlannedCombination
from bench.sweep.progress import StageTimes
from kg.closure import GraphTensors
from results.schema import ResultKey, ResultRow

if TYPE_CHECKING:  # the dataset package registers every loader on import
    from bench.datasets.base import MultiLabelDataset

QUEUE_CHUNK = 256  # pairs whose targets are computed at once as they are queued

TaskKey = tuple[int, int]  # (pair, index into the queue's settings): a task's ``key``


@dataclass(frozen=True)
class InFlight:
    """A queued pair's targets (``PairTargets`` of one row) and its clean image, until its row is made."""

    targets: PairTargets
    image: Tensor


class PairQueue:
    """The pairs of ``combos`` (each combination's attacked images, in order) under ``settings``.

    Pair ``p`` is the ``rank[p]``-th image of combination ``combos[combo[p]]``, row ``row[p]``
    of ``clean``; a setting attacks the pairs of rank below its ``images``. ``done`` holds the
    keys already stored: those pairs are not queued (a resumed run).
    """

    def __init__(
        self,
        combos: Sequence[PlannedCombination],
        clean: CleanPredictions,
        settings: Sequence[AttackSetting],
        done: set[ResultKey],
        g: GraphTensors,
        descendants: Tensor,
        dataset: MultiLabelDataset,
        closure: str = "bench",
    ) -> None:
        self.combos, self.clean, self.settings = list(combos), clean, list(settings)
        self.g, self.descendants, self.dataset, self.closure = g, descendants, dataset, closure
        pos = [(i, rank, row) for i, c in enumerate(self.combos) for rank, row in enumerate(c.images)]
        self.n_pairs = len(pos)
        self.combo = torch.tensor([p[0] for p in pos], dtype=torch.long)
        self.rank = torch.tensor([p[1] for p in pos], dtype=torch.long)
        self.row = torch.tensor([p[2] for p in pos], dtype=torch.long)
        self.done = set(done)
        self.remaining: Counter[int] = Counter({c.combo_id: 0 for c in self.combos})
        self.planned = 0  # rows the pairs make under every setting
        self.pending: list[list[int]] = [[] for _ in self.settings]  # per setting: its pairs not stored yet
        for p in range(self.n_pairs):
            for si, s in enumerate(self.settings):
                if self.rank[p] < s.images:
                    self.planned += 1
                    if self.key(p, s) not in self.done:
                        self.remaining[self.combo_id(p)] += 1
                        self.pending[si].append(p)
        self.todo = sum(self.remaining.values())  # rows not stored yet
        self.in_flight: dict[TaskKey, InFlight] = {}

    def combo_id(self, p: int) -> int:
        return self.combos[int(self.combo[p])].combo_id

    def image_id(self, p: int) -> str:
        return self.clean.image_ids[int(self.row[p])]

    def key(self, p: int, s: AttackSetting) -> ResultKey:
        return s.key(self.combo_id(p), self.image_id(p))

    def tasks(
        self, setting_ids: Sequence[int], attacks: dict[AttackSetting, Attack], times: StageTimes
    ) -> Iterator[Task]:
        """The queue: each setting's pairs not stored yet, in pair order, settings one after another.

        A task's ``setting`` indexes ``setting_ids`` (the engine's attacks); its key is
        ``(pair, index into self.settings)`` (``TaskKey``)."""
        for local, si in enumerate(setting_ids):
            s = self.settings[si]
            pending = self.pending[si]
            for start in range(0, len(pending), QUEUE_CHUNK):
                chunk = pending[start : start + QUEUE_CHUNK]
                with times("targets"):
                    targets = self.targets(chunk)
                desired, tmask, ntmask = targets.attack_inputs(attacks[s].semantic)
                for j, p in enumerate(chunk):
                    with times("images"):
                        image = self.image(p)
                    self.in_flight[(p, si)] = InFlight(targets.select(slice(j, j + 1)), image)
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

    def finish(self, rows: Sequence[ResultRow]) -> list[int]:
        """Count the rows as stored; the combinations they complete."""
        finished = []
        for r in rows:
            self.done.add(r.key)
            self.remaining[r.combo_id] -= 1
            if self.remaining[r.combo_id] == 0:
                finished.append(r.combo_id)
        return finished
