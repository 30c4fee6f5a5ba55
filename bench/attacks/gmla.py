"""GMLA (Mahmood & Elhamifar, CVPR 2024): flip the consistent target set Ψ = h(Ω, G) while
holding the non-targets Ψ̄ in place.

With ĝ_t and ĝ_nt the l2-normalised gradients of the target-masked and the non-target-masked
objective (−BCE to the desired labels, one summed non-target gradient as in the official
code, i.e. a rank-1 projection P = I − ĝ_nt ĝ_ntᵀ), Supp. Eq. (8) picks per sample

* ``e = P ν / ‖P ν‖∞`` with ν = sgn(ĝ_t)  when cos(ĝ_t, ĝ_nt) ≤ τ (the gradients conflict:
  step in the orthogonal complement of the non-target gradient), else
* ``e = sgn(ĝ_t + ĝ_nt)`` (Eq. 7, both objectives at the same scale).

τ = −0.85 (Supp. §3, hard-coded in the official code for every dataset; configurable here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.attacks import register_attack
from bench.attacks.apgd import APGDAttack
from bench.errors import InvalidValue

NORM_FLOOR = 1e-9  # below it a gradient counts as none, as with the official code's ``+ 1e-9``


def unit(g: Tensor) -> Tensor:
    """Each row of ``g`` (flattened) divided by its l2 norm; a row whose norm is at most 1e-9 is zero.

    The floor is the magnitude guard of the degenerate case: a non-target gradient that
    vanishes (saturated non-target logits of a confident model) counts as no conflict
    (cos = 0 > τ), as the official ``g / (‖g‖ + 1e-9)`` makes it, instead of a unit vector whose
    projection would cancel the target gradient. Above the floor the norm is exact, so the
    projected step stays orthogonal to ĝ_nt (docs/attacks.md).
    """
    flat = g.flatten(1)
    norm = flat.norm(dim=1, keepdim=True)
    return torch.where(norm > NORM_FLOOR, flat / norm.clamp_min(NORM_FLOOR), torch.zeros_like(flat))


def gmla_direction(g_target: Tensor, g_nontarget: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """GMLA's step direction (Supp. Eq. 8) per sample, and which samples took the projection.

    Args:
        g_target, g_nontarget: ``[P, ...]`` gradients of the target and non-target objectives.
        tau: cosine threshold; the projected step is used where cos(ĝ_t, ĝ_nt) ≤ τ.

    Returns:
        ``(e, projected)``: ``e`` shaped like ``g_target`` with ‖e‖∞ ≤ 1, ``projected`` ``[P]`` bool.
    """
    ht, hn = unit(g_target), unit(g_nontarget)
    cos = (ht * hn).sum(dim=1)
    nu = ht.sign()
    orth = nu - hn * (hn * nu).sum(dim=1, keepdim=True)
    orth = orth / orth.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(orth.dtype).tiny)
    projected = cos <= tau
    e = torch.where(projected[:, None], orth, (ht + hn).sign())
    return e.view_as(g_target), projected


@register_attack("gmla")
class GMLA(APGDAttack):
    """GMLA: Auto-PGD with the projected step of Supp. Eq. (8) on Ψ = h(Ω, G).

    Args (besides Auto-PGD's ``eps``, ``steps``, ``eta``, ``momentum``, ``rho``):
        tau: cosine threshold τ in [−1, 1] for the orthogonal projection (−0.85).
    """

    semantic = True

    def __init__(
        self,
        *,
        eps: float = 0.01,
        steps: int = 300,
        eta: float = 0.006,
        momentum: float = 0.75,
        rho: float = 0.75,
        tau: float = -0.85,
    ) -> None:
        super().__init__(eps=eps, steps=steps, eta=eta, momentum=momentum, rho=rho)
        if not -1.0 <= float(tau) <= 1.0:
            raise InvalidValue("tau", tau, "τ is a cosine threshold: it must be in [-1, 1]")
        self.tau = float(tau)

    def gradient_masks(self, target_mask: Tensor, nontarget_mask: Tensor) -> tuple[Tensor, ...]:
        return target_mask, nontarget_mask

    def step_direction(self, grads: tuple[Tensor, ...]) -> Tensor:
        return gmla_direction(grads[0], grads[1], self.tau)[0]
