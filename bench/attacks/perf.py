"""``bench perf attack``: the attack engine's speed, as ratios measured in one run.

(a) the model's own forward + backward in images/s at batch B, two ways: as in training
(``loss.backward()``, parameter gradients) and input-gradient only (parameters frozen, the
least work of one gradient step); (b) an attack's (pairs × iterations)/s on B pairs at once;
(c) the same attack one pair at a time. Reported: (b)/(a) and (b)/(c). The four are timed
in interleaved rounds and each keeps its best round, which filters out a busy machine's noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import create_attack
from bench.attacks.apgd import APGDAttack
from bench.attacks.base import Attack
from bench.attacks.ops import frozen
from bench.devices import resolve_device
from bench.errors import BenchError, InvalidValue


@dataclass(frozen=True)
class AttackPerf:
    """Throughputs measured in one run (pairs × iterations per second for the attack)."""

    attack: str
    device: str
    arch: str
    image_size: int
    labels: int
    batch: int
    steps: int
    model_rate: float  # images/s, forward + backward as in training (parameter gradients)
    input_rate: float  # images/s, forward + input-gradient backward (parameters frozen)
    batched_rate: float  # (pairs × iterations)/s, B pairs per call
    single_rate: float  # (pairs × iterations)/s, one pair per call

    @property
    def vs_model(self) -> float:
        return self.batched_rate / self.model_rate

    @property
    def vs_input(self) -> float:
        return self.batched_rate / self.input_rate

    @property
    def vs_single(self) -> float:
        return self.batched_rate / self.single_rate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def hardest_targets(logits: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Flip the ``k`` most confident labels of each row, so that no pair stops early."""
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask.scatter_(1, logits.abs().topk(k, dim=1).indices, True)
    return (logits > 0) ^ mask, mask, ~mask


def measure_attack_perf(
    attack: str = "gmla",
    arch: str = "resnet18",
    image_size: int = 64,
    labels: int = 20,
    batch: int = 16,
    steps: int = 10,
    single_pairs: int = 4,
    repeats: int = 3,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> AttackPerf:
    """Time (a), (b) and (c) on a randomly initialised timm model (no weights are downloaded)."""
    import timm

    counts = {"batch_size": batch, "steps": steps, "single_pairs": single_pairs, "repeats": repeats, "labels": labels}
    for name, value in counts.items():
        if value < 1:
            raise InvalidValue(name, value, "must be at least 1")
    dev = resolve_device(device)
    try:
        model: nn.Module = timm.create_model(arch, pretrained=False, num_classes=labels)
    except RuntimeError as exc:  # timm: unknown model
        raise BenchError(f"timm has no model {arch!r}: {exc}") from None
    model = model.to(dev).eval()
    instance: Attack = create_attack(attack, eps=1e-3, steps=steps)
    if not isinstance(instance, APGDAttack):
        raise BenchError(f"bench perf attack times the Auto-PGD attacks; {attack!r} is not one")
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, image_size, image_size, generator=gen).to(dev)
    with torch.no_grad():
        desired, tmask, ntmask = hardest_targets(model(x), min(3, labels))

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(x), desired.float()).backward()

    def input_step() -> None:
        with frozen(model), torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            torch.autograd.grad(F.binary_cross_entropy_with_logits(model(xg), desired.float()), xg)

    def work(result) -> int:
        return int(torch.where(result.success, result.iterations, torch.full_like(result.iterations, steps)).sum())

    n_single = min(single_pairs, batch)
    batched: list = []
    singles: list = []

    def one_by_one() -> None:
        singles.clear()
        singles.extend(
            instance(model, x[p : p + 1], desired[p : p + 1], tmask[p : p + 1], ntmask[p : p + 1])
            for p in range(n_single)
        )

    measurements = {
        "train": train_step,
        "input": input_step,
        "batched": lambda: batched.append(instance(model, x, desired, tmask, ntmask)),
        "single": one_by_one,
    }
    train_step()  # warm-up
    input_step()
    instance(model, x[:1], desired[:1], tmask[:1], ntmask[:1])
    best = dict.fromkeys(measurements, float("inf"))
    for r in range(repeats):  # interleaved rounds: every measurement sees the same machine load
        for key, fn in measurements.items():
            if progress:
                progress(f"round {r + 1}/{repeats}: {key}")
            best[key] = min(best[key], _timed(fn, dev))
    model.zero_grad(set_to_none=True)
    return AttackPerf(
        attack=attack,
        device=str(dev),
        arch=arch,
        image_size=image_size,
        labels=labels,
        batch=batch,
        steps=steps,
        model_rate=batch / best["train"],
        input_rate=batch / best["input"],
        batched_rate=work(batched[-1]) / best["batched"],
        single_rate=sum(work(r) for r in singles) / best["single"],
    )
