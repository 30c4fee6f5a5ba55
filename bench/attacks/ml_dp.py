"""ML-DP: multi-label DeepFool (Song et al., "Multi-label adversarial perturbations", ICDM 2018).

Each iteration linearises the logits of the constrained labels around the current image and
moves, with the least l2 norm, onto the decision boundaries (logit 0) of every constrained
label that is not yet as desired: r = −J_Vᵀ (J_V J_Vᵀ)⁺ z_V. The perturbations accumulate and
the image is x + (1 + overshoot)·Σr, clipped to [0, 1] (DeepFool's overshoot 0.02 so the
boundary is crossed, not just reached). Up to 100 iterations (Supp. §4); of the iterates that
reach the target the one with the smallest perturbation is kept. The perturbation is not
bounded by ε (RMSD = √(‖x − x′‖²/N) is its measure, ``bench.metrics``).

Constrained labels: the target mask (the MLA-U formulation, the default), or target and
non-target masks with ``constrain_nontargets=True`` (the MLA-C formulation of Supp. Fig. 2).
Linearising the logits rather than the sigmoid outputs of the reference code keeps the same
decision boundary but avoids the vanishing slope of a saturated sigmoid.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.attacks import register_attack
from bench.attacks.base import Attack, AttackResult, label_jacobian, reached
from bench.errors import BenchError


def deepfool_step(logits: Tensor, jac: Tensor, violated: Tensor) -> Tensor:
    """Least-l2 ``r`` ``[P, D]`` with ``logits_V + jac_V r = 0`` for the violated labels of each row.

    Args:
        logits: ``[P, K]`` logits of the constrained labels.
        jac: ``[P, K, D]`` their Jacobian rows.
        violated: ``[P, K]`` bool, the labels to move onto their boundary.
    """
    jv = jac * violated[..., None]
    zv = (logits * violated)[..., None]
    gram = jv @ jv.transpose(1, 2)
    return -(jv.transpose(1, 2) @ (torch.linalg.pinv(gram, hermitian=True) @ zv)).squeeze(-1)


@register_attack("ml-dp")
class MLDeepFool(Attack):
    """ML-DP: multi-label DeepFool, the smallest successful iterate of up to ``steps`` iterations.

    Args:
        eps: not a constraint for ML-DP (kept for a uniform interface; see ``bounded``).
        steps: iterations (100, Supp. §4).
        overshoot: DeepFool's overshoot factor (0.02).
        constrain_nontargets: also hold the non-target labels (MLA-C formulation).
    """

    display_name = "ML-DP"
    semantic = False

    def __init__(self, *, eps: float = 0.01, steps: int = 100, overshoot: float = 0.02, constrain_nontargets: bool = False) -> None:
        super().__init__(eps=eps, steps=steps)
        if not 0.0 <= float(overshoot) < 1.0:
            raise BenchError(f"overshoot must be in [0, 1); got {overshoot}")
        self.overshoot = float(overshoot)
        self.constrain_nontargets = bool(constrain_nontargets)

    @property
    def bounded(self) -> bool:
        return False

    def run(self, model: nn.Module, x: Tensor, desired: Tensor, target_mask: Tensor, nontarget_mask: Tensor) -> AttackResult:
        n = x.shape[0]
        constrained = target_mask | nontarget_mask if self.constrain_nontargets else target_mask
        labels = constrained.any(dim=0).nonzero().flatten()
        flat = x.flatten(1)
        total = torch.zeros_like(flat)
        current = x.clone()
        best = x.clone()
        best_l2 = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_iteration = torch.full((n,), -1, dtype=torch.long, device=x.device)
        active = torch.ones(n, dtype=torch.bool, device=x.device)

        for it in range(self.steps + 1):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            logits, jac = label_jacobian(model, current[idx], lambda z: z, labels)
            ok = reached(logits, desired[idx], target_mask[idx])
            l2 = (current[idx] - x[idx]).flatten(1).norm(dim=1)
            better = ok & (l2 < best_l2[idx])
            take = idx[better]
            best[take], best_l2[take], found[take], best_iteration[take] = current[idx][better], l2[better], True, it
            z = logits[:, labels]
            violated = ((z > 0) != desired[idx][:, labels]) & constrained[idx][:, labels]
            active[idx] = violated.any(dim=1)
            if it == self.steps:
                break
            go = violated.any(dim=1)
            total[idx[go]] += deepfool_step(z[go], jac[go], violated[go])
            moved = (flat[idx[go]] + (1.0 + self.overshoot) * total[idx[go]]).clamp(0.0, 1.0)
            current[idx[go]] = moved.view_as(current[idx[go]])
        return AttackResult.build(x, best, found, best_iteration)
