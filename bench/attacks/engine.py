"""The attack engine: fixed-shape batches of B slots, refilled as pairs finish (continuous batching).

A *task* is one (image, target set) pair under one attack. ``run_tasks`` keeps B slots: each
slot holds one task's whole attack state (for Auto-PGD: step size, checkpoint counters, best
point, previous point; for ML-DP and MLA-LP their own), and one *tick* advances every live slot
by one iteration with one batched forward/backward over all B rows. When a task succeeds or
exhausts its budget, its slot takes the next pending task before the next tick, so the batch
stays full until the queue runs dry.

**Reproducibility.** Every tensor an iteration computes has B rows, whether B or fewer tasks
are live (free slots are padded with a valid image and ignored), and each row is computed
from its own slot alone. The kernels therefore see the same shapes whatever the batch holds,
and a task's result depends only on its own inputs, the attack, the machine, the device and
B: not on its batch-mates, on the order tasks arrive, on the slot it lands in, or on when it
enters. Resume, shards and workers rely on this (``docs/sweeps.md``).

Attacks of one *family* (``Attack.family``) share a batch: the five Auto-PGD attacks, with
their ε, τ and budgets per slot, run in one batch, so a sweep's tail of one setting is filled
by the next setting's pairs.

``running`` is the one driver around the engine: ``Attack.__call__``, ``bench attack`` and the
sweeps (one process or Ray workers) all run their tasks through it; it freezes the model and
turns running out of GPU memory into an error that names a smaller B (B is part of the
contract above, so it is never changed behind the user's back).
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch
from torch import Tensor, nn

from bench.attacks.ops import forward, frozen
from bench.errors import BenchError, InvalidValue


class SlotAttack(Protocol):
    """What the engine needs of an attack (``bench.attacks.base.Attack`` is one): its family and
    the ``Stepper`` class that runs that family on B slots."""

    stepper_class: ClassVar[type[Stepper]]

    def family(self) -> Hashable: ...


@dataclass
class Task:
    """One pair under one attack: ``setting`` indexes the engine's attacks; ``key`` is the caller's."""

    key: Hashable
    setting: int
    image: Tensor  # [C, H, W] in [0, 1]
    desired: Tensor  # [L] bool
    target_mask: Tensor  # [L] bool
    nontarget_mask: Tensor  # [L] bool


@dataclass
class Outcome:
    """A finished task.

    ``adv`` is the returned image (the clean one for a failed task), ``logits`` the model's
    logits on it as the engine computed them (the same forward that decided success),
    ``iterations`` the iteration of the returned image (−1 when failed), ``ticks`` the
    number of ticks the task held its slot and ``seconds`` its share of their wall time
    (each tick's time divided among its live slots).
    """

    key: Hashable
    setting: int
    adv: Tensor
    logits: Tensor
    success: bool
    iterations: int
    ticks: int
    seconds: float


@dataclass
class EngineStats:
    """Slot use: ``occupancy`` = live slot·ticks ÷ (B × ticks)."""

    batch: int = 0
    ticks: int = 0
    live: int = 0  # Σ over ticks of the live slots
    gradient_ticks: dict[int, int] = field(default_factory=dict)  # input gradients per tick → ticks
    seconds: float = 0.0  # wall time of the whole family, metrics and writes included (set by the sweep)

    @property
    def occupancy(self) -> float:
        return self.live / (self.batch * self.ticks) if self.ticks else 0.0

    def add(self, other: EngineStats) -> None:
        self.batch = max(self.batch, other.batch)
        self.ticks += other.ticks
        self.live += other.live
        self.seconds += other.seconds
        for k, v in other.gradient_ticks.items():
            self.gradient_ticks[k] = self.gradient_ticks.get(k, 0) + v


def per_row(mask: Tensor, like: Tensor) -> Tensor:
    """A ``[B]`` mask (or value per row) shaped to broadcast over ``like``'s rows."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


class Stepper(ABC):
    """B slots of one attack family and their per-slot state.

    Subclasses keep their state in ``[B, ...]`` tensors, set it up for new slots in ``reset``
    and advance every live slot by one iteration in ``tick``. ``tick`` returns the ``[B]`` mask
    of slots that finished and fills ``adv``, ``adv_logits``, ``success`` and ``iterations``
    for them. Every computation is made on all B rows (row-wise), never on a subset whose size
    depends on which slots are live.
    """

    attacks: Sequence[SlotAttack]

    def __init__(self, attacks: Sequence[SlotAttack], batch: int, image: Tensor, n_out: int, max_targets: int) -> None:
        b, device = batch, image.device
        self.attacks, self.batch, self.max_targets = list(attacks), batch, max_targets
        self.x0 = image.new_zeros(b, *image.shape)
        self.desired = torch.zeros(b, n_out, dtype=torch.bool, device=device)
        self.tmask = torch.zeros_like(self.desired)
        self.ntmask = torch.zeros_like(self.desired)
        self.setting = torch.zeros(b, dtype=torch.long, device=device)
        self.live = torch.zeros(b, dtype=torch.bool, device=device)
        self.adv = self.x0.clone()
        self.adv_logits = torch.zeros(b, n_out, dtype=image.dtype, device=device)
        self.success = torch.zeros(b, dtype=torch.bool, device=device)
        self.iterations = torch.full((b,), -1, dtype=torch.long, device=device)
        self.gradients = 0  # input gradients taken in the last tick

    def admit(self, slot: int, task: Task) -> None:
        self.x0[slot] = task.image
        self.desired[slot], self.tmask[slot], self.ntmask[slot] = task.desired, task.target_mask, task.nontarget_mask
        self.setting[slot] = task.setting
        self.live[slot] = True
        self.reset(slot)

    def release(self, slot: int) -> tuple[Tensor, Tensor, bool, int]:
        """Free a finished slot; its returned image, the logits on it, success and iteration."""
        self.live[slot] = False
        return (
            self.adv[slot].clone(),
            self.adv_logits[slot].clone(),
            bool(self.success[slot]),
            int(self.iterations[slot]),
        )

    def finish(self, done: Tensor, adv: Tensor, logits: Tensor, success: Tensor, iterations: Tensor) -> None:
        """Record the outcome of the slots in ``done`` (failed ones get their clean image back)."""
        self.adv = torch.where(per_row(done, adv), torch.where(per_row(success, adv), adv, self.x0), self.adv)
        self.adv_logits = torch.where(done[:, None], logits, self.adv_logits)
        self.success = torch.where(done, success, self.success)
        self.iterations = torch.where(done, torch.where(success, iterations, -1), self.iterations)

    @abstractmethod
    def reset(self, slot: int) -> None:
        """Set up a newly admitted slot's state (its first tick evaluates the clean image)."""

    @abstractmethod
    def tick(self, model: nn.Module) -> Tensor:
        """One iteration of every live slot; the ``[B]`` mask of slots that finished."""


def run_tasks(
    attacks: Sequence[SlotAttack],
    model: nn.Module,
    tasks: Iterable[Task],
    batch: int,
    *,
    n_out: int,
    max_targets: int,
    stats: EngineStats | None = None,
) -> Iterator[list[Outcome]]:
    """Run every task through B slots; yields the outcomes finished at each tick (possibly none).

    Args:
        attacks: the engine's attacks, all of one family; ``Task.setting`` indexes them.
        model: frozen, in evaluation mode, on the tasks' device (``running`` sees to it).
        tasks: pending tasks, consumed lazily as slots free up.
        batch: B, the rows of every forward/backward.
        n_out: the model's outputs (the masks' width).
        max_targets: the most target-mask labels any task of this run can have (ML-DP takes
            that many Jacobian rows per slot, the same for every task of the run).
        stats: filled with the slot use, when given.
    """
    if int(batch) != batch or batch < 1:
        raise InvalidValue("batch_size", batch, "must be a positive integer")
    families = {a.family() for a in attacks}
    if len(families) != 1:
        raise BenchError(f"attacks of different families cannot share a batch: {sorted(map(str, families))}")
    pending = iter(tasks)
    first = next(pending, None)
    if first is None:
        return
    stepper = attacks[0].stepper_class(attacks, batch, first.image, n_out, max_targets)
    stats = stats if stats is not None else EngineStats()
    stats.batch = batch
    keys: list[Task | None] = [None] * batch
    ticks = [0] * batch
    seconds = [0.0] * batch
    waiting: Task | None = first
    while True:
        for slot in range(batch):
            if keys[slot] is None and waiting is not None:
                stepper.admit(slot, waiting)
                keys[slot], ticks[slot], seconds[slot] = waiting, 0, 0.0
                waiting = next(pending, None)
        live = [s for s in range(batch) if keys[s] is not None]
        if not live:
            return
        start = time.perf_counter()
        done = stepper.tick(model).tolist()
        share = (time.perf_counter() - start) / len(live)
        stats.ticks += 1
        stats.live += len(live)
        stats.gradient_ticks[stepper.gradients] = stats.gradient_ticks.get(stepper.gradients, 0) + 1
        finished = []
        for slot in live:
            ticks[slot] += 1
            seconds[slot] += share
            task = keys[slot]
            if done[slot] and task is not None:
                adv, logits, success, iterations = stepper.release(slot)
                finished.append(
                    Outcome(task.key, task.setting, adv, logits, success, iterations, ticks[slot], seconds[slot])
                )
                keys[slot] = None
        yield finished


@contextmanager
def running(
    attacks: Sequence[SlotAttack],
    model: nn.Module,
    tasks: Iterable[Task],
    batch: int,
    *,
    max_targets: int,
    n_out: int | None = None,
    stats: EngineStats | None = None,
) -> Iterator[Iterator[list[Outcome]]]:
    """The one driver around the engine: the model frozen, ``tasks`` through B = ``batch`` slots
    (``run_tasks``); yields the stream of outcomes finished at each tick.

    ``n_out`` (the model's outputs) is found with one forward pass of the first task's image when
    not given, and must equal the width of its labels. Running out of GPU memory anywhere inside
    the ``with`` block is a ``BenchError`` that names a smaller B.
    """
    try:
        with frozen(model):
            if n_out is None:
                pending = iter(tasks)
                first = next(pending, None)
                if first is not None:
                    with torch.no_grad():
                        n_out = forward(model, first.image[None]).shape[1]
                    if n_out != first.desired.shape[0]:
                        raise BenchError(
                            f"the model has {n_out} outputs but the labels have {first.desired.shape[0]} columns"
                        )
                    tasks = itertools.chain([first], pending)
            yield run_tasks(attacks, model, tasks, batch, n_out=n_out or 0, max_targets=max_targets, stats=stats)
    except torch.cuda.OutOfMemoryError:
        raise out_of_memory(batch) from None


def out_of_memory(batch: int) -> BenchError:
    """Running out of GPU memory at B = ``batch``: the error names a smaller B."""
    smaller = f"{{batch_size}} {batch // 2}" if batch > 1 else "a smaller model or smaller images"
    return BenchError(f"out of GPU memory at batch size {batch}; try {smaller}", options=["batch_size"])
