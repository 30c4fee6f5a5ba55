"""Auto-PGD (Croce & Hein, ICML 2020), ℓ∞, shared by GMLA, GMLA_α/β, MLA-U/MLA-C and MLA-KG.

Supp. Eq. (9)–(10): ``z = Π(x⁽ᵏ⁾ + η⁽ᵏ⁾ e⁽ᵏ⁾)``, ``x⁽ᵏ⁺¹⁾ = Π(x⁽ᵏ⁾ + α(z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))``
with Π the projection on the ε-ball around the clean image and on [0, 1], α = 0.75 (1 at
the first step), no random start, initial step 2·η with η = 0.006 (the official code's
constant, not 2ε). The objective f = −Σ BCE(logits, desired) over the masked labels (plus an
attack's ``extra_objective``, MLA-KG's penalty) drives the step-size control: at checkpoints
w₁ = ⌊0.22 N⌋, then windows shrinking by ⌊0.03 N⌋ down to ⌊0.06 N⌋, a sample's step is
halved and it restarts from its best point x_max when

1. f increased in fewer than ρ·(w_j − w_{j−1}) of the window's steps (ρ = 0.75), or
2. its step was not halved at w_{j−1} and f_max did not grow since then.

Everything is per sample (step size, counters, best point, previous point, and the
attack, ε and budget themselves): each sample lives in a slot of the engine
(``bench.attacks.engine``), stops at its first success (every target-masked label as
desired) or at its budget, and hands its slot to the next pair. Failed samples come back
unperturbed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from bench.attacks.base import Attack
from bench.attacks.engine import Stepper, per_row
from bench.attacks.ops import forward, input_grad, reached
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


def project(x: Tensor, x0: Tensor, eps: float | Tensor) -> Tensor:
    """Π: onto the ℓ∞ ball of radius ε (a number, or one per row) around ``x0``, then onto [0, 1]."""
    return torch.minimum(torch.maximum(x, x0 - eps), x0 + eps).clamp(0.0, 1.0)


class APGDStepper(Stepper):
    """Auto-PGD on B slots; each slot runs its own attack, ε, budget and checkpoint schedule."""

    attacks: Sequence[APGDAttack]

    def __init__(self, attacks, batch, image, n_out, max_targets) -> None:
        super().__init__(attacks, batch, image, n_out, max_targets)
        for a in attacks:
            if not isinstance(a, APGDAttack):
                raise BenchError(f"{type(a).__name__} is not an Auto-PGD attack")
        b, device, dtype = batch, image.device, image.dtype
        self.n_grads = [len(a.gradient_masks(self.tmask[:1], self.ntmask[:1])) for a in attacks]
        if max(self.n_grads) > MAX_GRADIENTS:
            raise BenchError(f"an Auto-PGD attack may take at most {MAX_GRADIENTS} input gradients per step")
        self.x, self.x_prev, self.e, self.x_best, self.e_best = (self.x0.clone() for _ in range(5))
        self.f_best, self.f_prev, self.f_best_last = (torch.zeros(b, dtype=dtype, device=device) for _ in range(3))
        self.clean_logits = self.adv_logits.clone()
        self.eta = torch.zeros(b, dtype=dtype, device=device)
        self.n_up = torch.zeros(b, dtype=torch.long, device=device)
        self.reduced = torch.zeros(b, dtype=torch.bool, device=device)
        self.it = torch.full((b,), -1, dtype=torch.long, device=device)  # −1: the clean image is evaluated next
        self.window, self.checkpoint = torch.zeros_like(self.it), torch.zeros_like(self.it)
        # per-slot settings of its attack
        self.eps_, self.eta0, self.momentum, self.rho = (torch.zeros(b, dtype=dtype, device=device) for _ in range(4))
        self.steps, self.decrement, self.minimum = (torch.zeros_like(self.it) for _ in range(3))

    def reset(self, slot: int) -> None:
        attack = self.attacks[int(self.setting[slot])]
        schedule = CheckpointSchedule.for_steps(attack.steps)
        self.it[slot] = -1
        self.eps_[slot], self.eta0[slot], self.momentum[slot], self.rho[slot] = (
            attack.eps,
            attack.eta,
            attack.momentum,
            attack.rho,
        )
        self.steps[slot], self.decrement[slot], self.minimum[slot] = attack.steps, schedule.decrement, schedule.minimum
        self.window[slot] = self.checkpoint[slot] = schedule.first

    def evaluate(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Objective f ``[B]``, direction, success ``[B]`` and logits at ``x``: one forward pass."""
        live_settings = self.setting[self.live].unique().tolist()
        needed = max(self.n_grads[s] for s in live_settings)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(model, x)
            ell = -F.binary_cross_entropy_with_logits(logits, self.desired.to(logits.dtype), reduction="none")
            masks = [torch.zeros_like(self.tmask) for _ in range(needed)]
            for s in live_settings:
                mine = (self.setting == s)[:, None]
                for j, m in enumerate(self.attacks[s].gradient_masks(self.tmask, self.ntmask)):
                    masks[j] = torch.where(mine, m, masks[j])
            extra, hook = self.extra_terms(logits, live_settings)
            grads = []
            for j, m in enumerate(masks):
                grads.append(input_grad((ell * m).sum(), x, retain=j < needed - 1))
                if hook is not None:  # only the first gradient's loss takes the extra terms
                    hook.remove()
                    hook = None
        self.gradients = needed
        e = torch.zeros_like(x)
        for s in live_settings:
            mine = per_row(self.setting == s, x)
            e = torch.where(mine, self.attacks[s].step_direction(tuple(grads[: self.n_grads[s]])), e)
        objective = (ell.detach() * (self.tmask | self.ntmask)).sum(dim=1)
        if extra is not None:
            objective = torch.where(extra[0], objective + extra[1], objective)
        return objective, e.detach(), reached(logits.detach(), self.desired, self.tmask), logits.detach()

    def extra_terms(
        self, logits: Tensor, live_settings: list[int]
    ) -> tuple[tuple[Tensor, Tensor] | None, RemovableHandle | None]:
        """The live attacks' ``extra_objective`` terms: ``(rows, values [B])`` to add to the
        objective and a hook that adds their gradient to those rows' gradient at ``logits``;
        ``(None, None)`` when no live attack has one (the step is then computed exactly as
        without the hook, and so is every row outside ``rows`` with it)."""
        z = logits.detach().requires_grad_(True)
        rows, total = None, None
        for s in live_settings:
            term = self.attacks[s].extra_objective(z, self.desired, self.tmask)
            if term is not None:
                mine = self.setting == s
                rows = mine if rows is None else rows | mine
                total = torch.where(mine, term, torch.zeros_like(term) if total is None else total)
        if rows is None or total is None:
            return None, None
        g_extra = torch.autograd.grad(total.sum(), z)[0] if total.requires_grad else torch.zeros_like(z)
        g_extra, picked = g_extra.detach(), rows[:, None]
        hook = logits.register_hook(lambda g: torch.where(picked, g + g_extra, g))
        return (rows, total.detach()), hook

    def tick(self, model: nn.Module) -> Tensor:
        live, x0 = self.live, self.x0
        fresh, going = live & (self.it < 0), live & (self.it >= 0)
        i = self.it + 1
        a = torch.where(i == 1, torch.ones_like(self.momentum), self.momentum)
        eps = per_row(self.eps_, x0)
        z = project(self.x + per_row(self.eta, x0) * self.e, x0, eps)
        stepped = project(
            self.x + per_row(a, x0) * (z - self.x) + per_row(1.0 - a, x0) * (self.x - self.x_prev), x0, eps
        )
        point = torch.where(per_row(going, x0), stepped, x0)
        f, e, ok, logits = self.evaluate(model, point)

        # slots evaluated at their clean image: Auto-PGD's starting state
        fr = per_row(fresh, x0)
        self.x, self.x_prev, self.x_best = (torch.where(fr, x0, t) for t in (self.x, self.x_prev, self.x_best))
        self.e, self.e_best = (torch.where(fr, e, t) for t in (self.e, self.e_best))
        self.f_best, self.f_prev, self.f_best_last = (
            torch.where(fresh, f, t) for t in (self.f_best, self.f_prev, self.f_best_last)
        )
        self.clean_logits = torch.where(fresh[:, None], logits, self.clean_logits)
        self.eta = torch.where(fresh, 2.0 * self.eta0, self.eta)
        self.n_up = torch.where(fresh, 0, self.n_up)
        self.reduced = torch.where(fresh, False, self.reduced)

        # slots that took step i
        g = per_row(going, x0)
        self.x_prev, self.x, self.e = (
            torch.where(g, self.x, self.x_prev),
            torch.where(g, point, self.x),
            torch.where(g, e, self.e),
        )
        self.n_up = self.n_up + (going & (f > self.f_prev)).long()
        self.f_prev = torch.where(going, f, self.f_prev)
        better = going & (f > self.f_best)
        self.x_best = torch.where(per_row(better, x0), point, self.x_best)
        self.e_best = torch.where(per_row(better, x0), e, self.e_best)
        self.f_best = torch.where(better, f, self.f_best)
        self.it = torch.where(live, i, self.it)

        succeeded = live & ok
        exhausted = going & ~ok & (i >= self.steps)
        done = succeeded | exhausted
        self.finish(done, point, torch.where(succeeded[:, None], logits, self.clean_logits), succeeded, i)

        at = going & ~done & (i == self.checkpoint)
        halve = at & ((self.n_up < self.rho * self.window) | (~self.reduced & (self.f_best <= self.f_best_last)))
        h = per_row(halve, x0)
        self.eta = torch.where(halve, self.eta / 2.0, self.eta)
        self.x, self.e = torch.where(h, self.x_best, self.x), torch.where(h, self.e_best, self.e)
        self.f_prev = torch.where(halve, self.f_best, self.f_prev)
        self.reduced = torch.where(at, halve, self.reduced)
        self.f_best_last = torch.where(at, self.f_best, self.f_best_last)
        self.n_up = torch.where(at, 0, self.n_up)
        self.window = torch.where(at, torch.maximum(self.window - self.decrement, self.minimum), self.window)
        self.checkpoint = torch.where(at, self.checkpoint + self.window, self.checkpoint)
        return done


class APGDAttack(Attack):
    """Auto-PGD with an attack-specific ascent direction.

    A subclass says which input gradients it needs (``gradient_masks``: one label mask per
    gradient of Σ −BCE over the masked labels) and how they make the step
    (``step_direction``). All Auto-PGD attacks are one family: their pairs share a batch.

    Args:
        eps: ℓ∞ budget ε.
        steps: iteration budget N (300 in the paper).
        eta: step constant η; the initial step is 2·η (Supp. §1: η = 0.006).
        momentum: α of Supp. Eq. (10) (0.75).
        rho: ρ of the oscillation condition (0.75).
    """

    def __init__(
        self, *, eps: float = 0.01, steps: int = 300, eta: float = 0.006, momentum: float = 0.75, rho: float = 0.75
    ) -> None:
        super().__init__(eps=eps, steps=steps)
        for what, value in (("eta", eta), ("momentum", momentum), ("rho", rho)):
            if not 0.0 < float(value) <= 1.0:
                raise BenchError(f"{what} must be in (0, 1]; got {value}")
        self.eta, self.momentum, self.rho = float(eta), float(momentum), float(rho)

    stepper_class = APGDStepper

    def family(self) -> Hashable:
        return APGDAttack

    @abstractmethod
    def gradient_masks(self, target_mask: Tensor, nontarget_mask: Tensor) -> tuple[Tensor, ...]:
        """``[B, L]`` label masks, one per input gradient the step needs (at most ``MAX_GRADIENTS``)."""

    @abstractmethod
    def step_direction(self, grads: tuple[Tensor, ...]) -> Tensor:
        """The step e (shape of the images, ‖e‖∞ ≤ 1) of each row from its gradients, row by row."""

    def extra_objective(self, logits: Tensor, desired: Tensor, target_mask: Tensor) -> Tensor | None:
        """An optional term ``[B]`` of each row, differentiable in ``logits`` ``[B, L]`` and row by
        row, added to the objective f (so the step-size control sees it) and, through its gradient
        at the logits, to the loss of the first input gradient (``gradient_masks``' first mask).
        ``None`` (the default): no term, and the attack's steps are computed exactly as without it.
        """
        return None


MAX_GRADIENTS = 2
