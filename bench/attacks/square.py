"""Square (Andriushchenko et al., ECCV 2020), ℓ∞, as AutoAttack's ``square.py``, for multi-label targets.

A black-box, query-based attack: forward passes only (no gradients). Per pair, with x the
clean image, ε its ℓ∞ budget and N = ``steps`` its query budget:

* iteration 0 evaluates the clean image (no query: the desired labels come from the clean
  prediction); the pair stops there when it already succeeds;
* iteration 1 (query 1) is AutoAttack's start, vertical stripes: x_best = clip₀₁(x + ε·σ) with
  one sign σ ∈ {−1, +1} per (channel, column), accepted whatever its loss;
* iteration k ≥ 2 (query k) changes one square window of x_best: side
  s = min(max(round(√(p·H·W)), 1), H, W) with p = ``p_selection(k − 2)`` (AutoAttack's schedule
  p_init, p_init/2, …, p_init/512, the iteration rescaled as ⌊(k − 2)/N · 10000⌋), top-left
  corner uniform in {0 … H − s} × {0 … W − s}, and one sign per channel; the window becomes
  clip₀₁(x ± ε) (what AutoAttack's x_best ± 2ε projected on the ε-ball and [0, 1] is), the
  rest stays x_best. The candidate replaces x_best when its loss is strictly lower.

A pair stops at its first success (every target-masked label as desired, ``ops.reached``),
returning that candidate whatever its loss (AutoAttack keeps a misclassified candidate too),
or after query N, returning its clean image (``Stepper.finish``). ``iterations`` is the
returned image's iteration = its number of queries; at most N queries are made per pair.

Losses, with BCE_l = BCE(logit_l, desired_l) and both minimised:

* ``square`` (targets Ω): L = Σ_{l∈Ω} BCE_l, MLA-U's objective;
* ``square-g`` (targets Ψ = h(Ω, G)): L = Σ_{l∈Ψ} BCE_l + Σ_{l∈Ψ̄} BCE_l, the targets driven to
  their flipped values and the non-targets held at their clean prediction, with equal
  weights (GMLA's Auto-PGD objective, −Σ BCE over target and non-target masks).

**Randomness.** Every pair draws from its own CPU ``torch.Generator``, seeded from the pair's
content alone (``pair_seed``): the first 8 bytes (little-endian) of the SHA-256 of its image
shape and labels count (``<4q``: C, H, W, L), its image as little-endian float64, its desired
labels, target and non-target masks (one byte 0/1 per label), ε (``<d``) and the attack's
``seed`` (decimal ASCII). Its draws, in order: iteration 1, ``randint(0, 2, (C, 1, W))``
(stripe signs 2r − 1); iteration k ≥ 2, ``randint(0, H − s + 1, (1,))``, then
``randint(0, W − s + 1, (1,))`` (window corner), then ``randint(0, 2, (C,))`` (window signs). So
no draw depends on the slot, B, the batch-mates or the arrival order, and every per-tick
tensor has B rows computed from its own slot (``bench.attacks.engine``).

Deviation from AutoAttack: it draws the window corner in {0 … H − s − 1} (``random_int``'s
exclusive bound), so the last row and column are never in a window; here every position is.
AutoAttack draws one window for the whole batch; here each pair draws its own.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Hashable, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import register_attack
from bench.attacks.base import Attack
from bench.attacks.engine import Stepper, per_row
from bench.attacks.ops import forward, reached
from bench.errors import BenchError, InvalidParameter, InvalidValue


def p_selection(it: int, p_init: float) -> float:
    """AutoAttack's schedule of the window's share p at (rescaled) iteration ``it`` of 10000."""
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128)):
        if it <= bound:
            return p_init / divisor
    return p_init / (256 if it <= 8000 else 512)


def window_side(iteration: int, steps: int, p_init: float, height: int, width: int) -> int:
    """The side s of the square window of iteration ``iteration`` ≥ 2 of a budget of ``steps`` queries."""
    p = p_selection(int((iteration - 2) / steps * 10000), p_init)
    return min(max(int(round(math.sqrt(p * height * width))), 1), height, width)


def pair_seed(
    image: Tensor, desired: Tensor, target_mask: Tensor, nontarget_mask: Tensor, eps: float, seed: int
) -> int:
    """The seed of one pair's generator, from its content alone (see the module docstring)."""
    c, h, w = image.shape
    digest = hashlib.sha256()
    digest.update(struct.pack("<4q", c, h, w, desired.shape[0]))
    digest.update(image.detach().to("cpu", torch.float64).contiguous().numpy().astype("<f8").tobytes())
    for mask in (desired, target_mask, nontarget_mask):
        digest.update(mask.detach().to("cpu", torch.bool).numpy().astype(np.uint8).tobytes())
    digest.update(struct.pack("<d", float(eps)))
    digest.update(str(int(seed)).encode("ascii"))
    return int.from_bytes(digest.digest()[:8], "little")


class SquareStepper(Stepper):
    """Square on B slots: each slot its own attack (ε, budget, p_init, loss), generator and best point."""

    attacks: Sequence[SquareAttack]

    def __init__(self, attacks, batch, image, n_out, max_targets) -> None:
        super().__init__(attacks, batch, image, n_out, max_targets)
        for a in attacks:
            if not isinstance(a, SquareAttack):
                raise BenchError(f"{type(a).__name__} is not a Square attack")
        b, device, dtype = batch, image.device, image.dtype
        self.x_best = self.x0.clone()
        self.loss_best = torch.zeros(b, dtype=dtype, device=device)
        self.clean_logits = self.adv_logits.clone()
        self.it = torch.full((b,), -1, dtype=torch.long, device=device)  # −1: the clean image is evaluated next
        self.eps_ = torch.zeros(b, dtype=dtype, device=device)
        self.steps_ = torch.zeros(b, dtype=torch.long, device=device)
        self.with_nontargets = torch.zeros(b, dtype=torch.bool, device=device)
        self.iteration = [-1] * b  # the same as ``it``, on the host, for the draws
        self.generators: list[torch.Generator | None] = [None] * b

    def reset(self, slot: int) -> None:
        attack = self.attacks[int(self.setting[slot])]
        self.it[slot], self.iteration[slot] = -1, -1
        self.eps_[slot], self.steps_[slot] = attack.eps, attack.steps
        self.with_nontargets[slot] = attack.holds_nontargets
        self.x_best[slot] = self.x0[slot]
        seed = pair_seed(
            self.x0[slot], self.desired[slot], self.tmask[slot], self.ntmask[slot], attack.eps, attack.seed
        )
        self.generators[slot] = torch.Generator().manual_seed(seed)

    def draws(self, live: list[bool], settings: list[int]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Each live slot's draws for its next iteration (zeros elsewhere), on the CPU.

        Returns stripe signs ``[B, C, 1, W]``, window top ``[B]``, left ``[B]``, side ``[B]`` and
        window signs ``[B, C]``.
        """
        b, (c, h, w) = self.batch, self.x0.shape[1:]
        stripes = torch.zeros(b, c, 1, w, dtype=torch.long)
        top, left, side = (torch.zeros(b, dtype=torch.long) for _ in range(3))
        signs = torch.zeros(b, c, dtype=torch.long)
        for slot in range(b):
            k, gen = self.iteration[slot] + 1, self.generators[slot]
            if not live[slot] or k < 1 or gen is None:
                continue
            if k == 1:
                stripes[slot] = 2 * torch.randint(0, 2, (c, 1, w), generator=gen) - 1
                continue
            attack = self.attacks[settings[slot]]
            s = window_side(k, attack.steps, attack.p_init, h, w)
            top[slot] = int(torch.randint(0, h - s + 1, (1,), generator=gen))
            left[slot] = int(torch.randint(0, w - s + 1, (1,), generator=gen))
            side[slot] = s
            signs[slot] = 2 * torch.randint(0, 2, (c,), generator=gen) - 1
        return stripes, top, left, side, signs

    def tick(self, model: nn.Module) -> Tensor:
        live, x0 = self.live, self.x0
        live_list = live.tolist()
        device, dtype = x0.device, x0.dtype
        stripes, top, left, side, signs = (t.to(device) for t in self.draws(live_list, self.setting.tolist()))
        eps = per_row(self.eps_, x0)
        i = self.it + 1

        # the point of each row's iteration i: clean (0), stripes (1) or a new window on x_best (≥ 2)
        striped = (x0 + eps * stripes.to(dtype)).clamp(0.0, 1.0)
        h, w = x0.shape[2:]
        rows = torch.arange(h, device=device)[None, :, None]
        cols = torch.arange(w, device=device)[None, None, :]
        t, lft, s = top[:, None, None], left[:, None, None], side[:, None, None]
        window = ((rows >= t) & (rows < t + s) & (cols >= lft) & (cols < lft + s))[:, None]
        corner = (x0 + eps * signs.to(dtype)[:, :, None, None]).clamp(0.0, 1.0)
        squared = torch.where(window, corner, self.x_best)
        point = torch.where(per_row(i == 0, x0), x0, torch.where(per_row(i == 1, x0), striped, squared))

        with torch.no_grad():
            logits = forward(model, point)
        self.gradients = 0
        ell = F.binary_cross_entropy_with_logits(logits, self.desired.to(logits.dtype), reduction="none")
        weights = self.tmask.to(dtype) + (self.ntmask & self.with_nontargets[:, None]).to(dtype)
        loss = (ell * weights).sum(dim=1)
        ok = reached(logits, self.desired, self.tmask)

        fresh = live & (i == 0)
        self.clean_logits = torch.where(fresh[:, None], logits, self.clean_logits)
        keep = live & ((i == 1) | ((i >= 2) & (loss < self.loss_best)))
        self.x_best = torch.where(per_row(keep, x0), point, self.x_best)
        self.loss_best = torch.where(keep, loss, self.loss_best)
        self.it = torch.where(live, i, self.it)
        self.iteration = [k + 1 if on else k for k, on in zip(self.iteration, live_list)]

        succeeded = live & ok
        done = succeeded | (live & (i >= self.steps_))
        self.finish(done, point, torch.where(succeeded[:, None], logits, self.clean_logits), succeeded, i)
        return done


class SquareAttack(Attack):
    """Square, ℓ∞, on multi-label targets: see the module docstring.

    Square and Square-G are one family: their pairs, at any ε, budget and ``p_init``, share a
    batch of slots.

    Args:
        eps: ℓ∞ budget ε.
        steps: query budget N (model forwards on perturbed images per pair; 1000).
        p_init: the window's initial share of the image p (AutoAttack's ℓ∞ default 0.8).
        seed: mixed into every pair's generator seed (0).
    """

    black_box = True
    holds_nontargets: ClassVar[bool] = False
    stepper_class = SquareStepper

    def __init__(self, *, eps: float = 0.01, steps: int = 1000, p_init: float = 0.8, seed: int = 0) -> None:
        super().__init__(eps=eps, steps=steps)
        if not 0.0 < float(p_init) <= 1.0:
            raise InvalidParameter("p_init", p_init, "must be in (0, 1]")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise InvalidValue("seed", seed, "must be an integer")
        self.p_init = float(p_init)
        self.seed = int(seed)

    def family(self) -> Hashable:
        return SquareAttack


@register_attack("square")
class Square(SquareAttack):
    """Square on Ω with MLA-U's objective: Σ_{l∈Ω} BCE(logit_l, desired_l)."""

    semantic = False


@register_attack("square-g")
class SquareG(SquareAttack):
    """Square on Ψ = h(Ω, G), non-targets held: Σ_{l∈Ψ} BCE_l + Σ_{l∈Ψ̄} BCE_l."""

    semantic = True
    holds_nontargets = True
