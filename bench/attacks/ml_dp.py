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
from bench.attacks.base import Attack
from bench.attacks.engine import Stepper, per_row
from bench.attacks.ops import forward, label_jacobian, label_slots, reached
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


class DeepFoolStepper(Stepper):
    """ML-DP on B slots: each tick linearises K labels of every slot (K fixed for the run:
    the most constrained labels a pair of the run can have) and takes one DeepFool step."""

    attack: MLDeepFool

    def __init__(self, attacks, batch, image, n_out, max_targets) -> None:
        super().__init__(attacks, batch, image, n_out, max_targets)
        (self.attack,) = attacks
        self.width = n_out if self.attack.constrain_nontargets else min(max_targets, n_out)
        b, device = batch, image.device
        self.labels = torch.full((b, self.width), -1, dtype=torch.long, device=device)
        self.current = self.x0.clone()
        self.total = self.x0.flatten(1).clone()
        self.best_l2 = torch.zeros(b, dtype=image.dtype, device=device)
        self.found = torch.zeros(b, dtype=torch.bool, device=device)
        self.best_it = torch.zeros(b, dtype=torch.long, device=device)
        self.it = torch.zeros(b, dtype=torch.long, device=device)
        self.clean_logits = self.adv_logits.clone()

    def reset(self, slot: int) -> None:
        self.labels[slot] = label_slots(
            self.attack.constrained(self.tmask[slot : slot + 1], self.ntmask[slot : slot + 1]), self.width
        )[0]
        self.current[slot], self.total[slot] = self.x0[slot], 0.0
        self.best_l2[slot], self.found[slot], self.best_it[slot], self.it[slot] = float("inf"), False, -1, 0
        self.adv[slot] = self.x0[slot]

    def tick(self, model: nn.Module) -> Tensor:
        live, x0, attack = self.live, self.x0, self.attack
        x = self.current.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(model, x)
            jac = label_jacobian(logits, x, self.labels)
        logits = logits.detach()
        self.gradients = self.width
        self.clean_logits = torch.where((live & (self.it == 0))[:, None], logits, self.clean_logits)
        ok = reached(logits, self.desired, self.tmask)
        l2 = (self.current - x0).flatten(1).norm(dim=1)
        better = live & ok & (l2 < self.best_l2)
        self.adv = torch.where(per_row(better, x0), self.current, self.adv)
        self.adv_logits = torch.where(better[:, None], logits, self.adv_logits)
        self.best_l2 = torch.where(better, l2, self.best_l2)
        self.found |= better
        self.best_it = torch.where(better, self.it, self.best_it)
        valid = self.labels >= 0
        safe = self.labels.clamp_min(0)
        z = logits.gather(1, safe)
        violated = ((z > 0) != self.desired.gather(1, safe)) & valid
        done = live & (~violated.any(dim=1) | (self.it >= attack.steps))
        going = live & ~done
        self.total = torch.where(going[:, None], self.total + deepfool_step(z, jac, violated), self.total)
        moved = (x0.flatten(1) + (1.0 + attack.overshoot) * self.total).clamp(0.0, 1.0).view_as(x0)
        self.current = torch.where(per_row(going, x0), moved, self.current)
        self.it = torch.where(going, self.it + 1, self.it)
        adv, adv_logits = self.adv, torch.where(self.found[:, None], self.adv_logits, self.clean_logits)
        self.finish(done, adv, adv_logits, self.found, self.best_it)
        return done


@register_attack("ml-dp")
class MLDeepFool(Attack):
    """ML-DP: multi-label DeepFool, the smallest successful iterate of up to ``steps`` iterations.

    Args:
        eps: not a constraint for ML-DP (kept for a uniform interface; see ``bounded``).
        steps: iterations (100, Supp. §4).
        overshoot: DeepFool's overshoot factor (0.02).
        constrain_nontargets: also hold the non-target labels (MLA-C formulation).
    """

    semantic = False
    stepper_class = DeepFoolStepper

    def __init__(
        self, *, eps: float = 0.01, steps: int = 100, overshoot: float = 0.02, constrain_nontargets: bool = False
    ) -> None:
        super().__init__(eps=eps, steps=steps)
        if not 0.0 <= float(overshoot) < 1.0:
            raise BenchError(f"overshoot must be in [0, 1); got {overshoot}")
        self.overshoot = float(overshoot)
        self.constrain_nontargets = bool(constrain_nontargets)

    @property
    def bounded(self) -> bool:
        return False

    def constrained(self, target_mask: Tensor, nontarget_mask: Tensor) -> Tensor:
        return target_mask | nontarget_mask if self.constrain_nontargets else target_mask
