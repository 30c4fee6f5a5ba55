"""Auto-PGD (Croce & Hein, ICML 2020), ℓ∞, shared by GMLA, GMLA_α/β and MLA-U/MLA-C.

Supp. Eq. (9)–(10): ``z = Π(x⁽ᵏ⁾ + η⁽ᵏ⁾ e⁽ᵏ⁾)``, ``x⁽ᵏ⁺¹⁾ = Π(x⁽ᵏ⁾ + α(z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))``
with Π the projection on the ε-ball around the clean image and on [0, 1], α = 0.75 (1 at
the first step), no random start, initial step 2·η with η = 0.006 (the official code's
constant, not 2ε). The objective f = −Σ BCE(logits, desired) over the masked labels drives
the step-size control: at checkpoints w₁ = ⌊0.22 N⌋, then windows shrinking by ⌊0.03 N⌋ down
to ⌊0.06 N⌋, a sample's step is halved and it restarts from its best point x_max when

1. f increased in fewer than ρ·(w_j − w_{j−1}) of the window's steps (ρ = 0.75), or
2. its step was not halved at w_{j−1} and f_max did not grow since then.

Everything is per sample (step size, counters, best point, previous point), so a batch
gives exactly the iterates of its samples run one at a time. A sample stops at its first
success (every target-masked label as desired) and leaves the batch; the loop ends when
all have succeeded. Failed samples come back unperturbed.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks.base import Attack, AttackResult, forward, reached
from bench.errors import BenchError


@dataclass(frozen=True)
class CheckpointSchedule:
    """Auto-PGD checkpoints: the first window, how much each window shrinks, the smallest window."""

    first: int
    decrement: int
    minimum: int

    @classmethod
    def for_steps(cls, steps: int) -> CheckpointSchedule:
        return cls(max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1))

    def checkpoints(self, steps: int) -> list[int]:
        """Iterations (1-based step counts) at which the step-size conditions are checked."""
        out, window, at = [], self.first, self.first
        while at <= steps:
            out.append(at)
            window = max(window - self.decrement, self.minimum)
            at += window
        return out


def project(x: Tensor, x0: Tensor, eps: float) -> Tensor:
    """Π: onto the ℓ∞ ball of radius ε around ``x0``, then onto [0, 1]."""
    return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp(0.0, 1.0)


class APGDAttack(Attack):
    """Auto-PGD with an attack-specific ascent direction (``direction``).

    Args:
        eps: ℓ∞ budget ε.
        steps: iteration budget N (300 in the paper).
        eta: step constant η; the initial step is 2·η (Supp. §1: η = 0.006).
        momentum: α of Supp. Eq. (10) (0.75).
        rho: ρ of the oscillation condition (0.75).
    """

    def __init__(self, *, eps: float = 0.01, steps: int = 300, eta: float = 0.006, momentum: float = 0.75, rho: float = 0.75) -> None:
        super().__init__(eps=eps, steps=steps)
        for what, value in (("eta", eta), ("momentum", momentum), ("rho", rho)):
            if not 0.0 < float(value) <= 1.0:
                raise BenchError(f"{what} must be in (0, 1]; got {value}")
        self.eta, self.momentum, self.rho = float(eta), float(momentum), float(rho)

    @abstractmethod
    def direction(self, ell: Tensor, x: Tensor, target_mask: Tensor, nontarget_mask: Tensor) -> Tensor:
        """The step direction e at ``x`` (shape of ``x``, ‖e‖∞ ≤ 1) from ``ell`` = −BCE per label.

        ``ell`` ``[P, L]`` is still attached to ``x`` (which requires grad).
        """

    def evaluate(self, model: nn.Module, x: Tensor, desired: Tensor, tmask: Tensor, ntmask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Objective f ``[P]``, direction ``[P, ...]`` and success ``[P]`` at ``x``: one forward pass."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(model, x)
            ell = -F.binary_cross_entropy_with_logits(logits, desired.to(logits.dtype), reduction="none")
            step = self.direction(ell, x, tmask, ntmask)
        objective = (ell.detach() * (tmask | ntmask)).sum(dim=1)
        return objective, step.detach(), reached(logits.detach(), desired, tmask)

    def run(self, model: nn.Module, x: Tensor, desired: Tensor, target_mask: Tensor, nontarget_mask: Tensor) -> AttackResult:
        n = x.shape[0]
        adv = x.clone()
        success = torch.zeros(n, dtype=torch.bool, device=x.device)
        iterations = torch.full((n,), -1, dtype=torch.long, device=x.device)

        f, step, ok = self.evaluate(model, x, desired, target_mask, nontarget_mask)
        s = _State(
            pos=torch.arange(n, device=x.device), x0=x, desired=desired, tmask=target_mask, ntmask=nontarget_mask,
            x=x.clone(), x_prev=x.clone(), step=step, x_best=x.clone(), step_best=step, f_best=f, f_prev=f,
            f_best_last=f, eta=torch.full((n,), 2.0 * self.eta, dtype=x.dtype, device=x.device),
            n_up=torch.zeros(n, dtype=torch.long, device=x.device),
            reduced=torch.zeros(n, dtype=torch.bool, device=x.device),
        )  # fmt: skip
        s = s.retire(ok, 0, adv, success, iterations)

        schedule = CheckpointSchedule.for_steps(self.steps)
        window, checkpoint = schedule.first, schedule.first
        for i in range(1, self.steps + 1):
            if s.pos.numel() == 0:
                break
            a = 1.0 if i == 1 else self.momentum
            eta = s.eta.view(-1, *([1] * (x.dim() - 1)))
            z = project(s.x + eta * s.step, s.x0, self.eps)
            x_new = project(s.x + a * (z - s.x) + (1.0 - a) * (s.x - s.x_prev), s.x0, self.eps)
            f, step, ok = self.evaluate(model, x_new, s.desired, s.tmask, s.ntmask)
            s.x_prev, s.x, s.step = s.x, x_new, step
            s.n_up += f > s.f_prev
            s.f_prev = f
            better = f > s.f_best
            s.x_best = torch.where(_rows(better, x), x_new, s.x_best)
            s.step_best = torch.where(_rows(better, x), step, s.step_best)
            s.f_best = torch.where(better, f, s.f_best)
            s = s.retire(ok, i, adv, success, iterations)

            if i == checkpoint:
                halve = (s.n_up < self.rho * window) | (~s.reduced & (s.f_best <= s.f_best_last))
                s.eta = torch.where(halve, s.eta / 2.0, s.eta)
                s.x = torch.where(_rows(halve, x), s.x_best, s.x)
                s.step = torch.where(_rows(halve, x), s.step_best, s.step)
                s.f_prev = torch.where(halve, s.f_best, s.f_prev)
                s.reduced, s.f_best_last = halve, s.f_best
                s.n_up = torch.zeros_like(s.n_up)
                window = max(window - schedule.decrement, schedule.minimum)
                checkpoint += window
        return AttackResult.build(x, adv, success, iterations)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


class _State:
    """Per-sample Auto-PGD state of the samples still running (one row each)."""

    def __init__(self, **tensors: Tensor) -> None:
        self.__dict__.update(tensors)

    def retire(self, ok: Tensor, iteration: int, adv: Tensor, success: Tensor, iterations: Tensor) -> _State:
        """Store the samples that succeeded at this iteration and drop them from the state."""
        if not bool(ok.any()):
            return self
        done = self.pos[ok]
        adv[done] = self.x[ok]
        success[done] = True
        iterations[done] = iteration
        keep = ~ok
        return _State(**{k: v[keep] for k, v in self.__dict__.items()})
