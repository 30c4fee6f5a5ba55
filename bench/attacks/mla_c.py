"""MLA-C (Song et al., ICDM 2018, as run in the paper): Auto-PGD on the targets' loss while
keeping every other label as it is.

The step is the sign of the raw gradient of −Σ_l BCE(logit_l, desired_l) over all labels,
desired = flipped on Ω and the clean prediction elsewhere: the non-target gradient is not
rescaled, so with many labels it can dominate (Supp. §1, Eq. 6). Target mask Ω.
"""

from __future__ import annotations

from torch import Tensor

from bench.attacks import register_attack
from bench.attacks.apgd import APGDAttack


@register_attack("mla-c")
class MLAC(APGDAttack):
    """MLA-C: e = sgn(g_Ω + g_Ω̄), the raw total-loss gradient (``mlabeta`` in the official code)."""

    semantic = False

    def gradient_masks(self, target_mask: Tensor, nontarget_mask: Tensor) -> tuple[Tensor, ...]:
        return (target_mask | nontarget_mask,)

    def step_direction(self, grads: tuple[Tensor, ...]) -> Tensor:
        return grads[0].sign()
