"""MLA-U (Song et al., ICDM 2018, as run in the paper): Auto-PGD on the targets' loss alone.

The step is the sign of the gradient of −Σ_{l∈Ω} BCE(logit_l, desired_l); nothing holds the
other labels in place. The target mask is Ω itself (no knowledge graph).
"""

from __future__ import annotations

from torch import Tensor

from bench.attacks import register_attack
from bench.attacks.apgd import APGDAttack


@register_attack("mla-u")
class MLAU(APGDAttack):
    """MLA-U: e = sgn(g_Ω), the target-only gradient (``mlaalpha`` in the official code)."""

    semantic = False

    def gradient_masks(self, target_mask: Tensor, nontarget_mask: Tensor) -> tuple[Tensor, ...]:
        return (target_mask,)

    def step_direction(self, grads: tuple[Tensor, ...]) -> Tensor:
        return grads[0].sign()
