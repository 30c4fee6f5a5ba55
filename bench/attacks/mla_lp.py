"""MLA-LP (Zhou et al., IJCNN 2020; ``Attacks/mla_lp.py`` of the official code): the
linear-programming multi-label attack.

Each of up to 10 iterations linearises the per-label BCE ℓ_l(x) = BCE(logit_l, desired_l)
around the current image and solves

    min_r ‖r‖∞  s.t.  J r ≤ ℓ(τ) − ℓ(x),   ‖r‖∞ ≤ 1,

where J is the per-label BCE Jacobian and ℓ(τ) = −[y log τ + (1 − y) log(1 − τ)] the loss at
the confidence threshold τ (0.5 at first): every label's loss must fall to the threshold's
(labels already past it get slack). When an iteration makes no progress (the targets' loss
did not fall) the sample's threshold drops by 0.05, down to 0.1. All labels are constrained
(the official ``A_m = ones``). The best iterate is kept by (success, number of labels as
desired, smaller l2 norm); an iterate worse than the best restarts from the best.

Formulation: substituting r = s / w with s ∈ [−1, 1]ᴰ, w = 1/‖r‖∞ ≥ 1 turns the problem into
``max w s.t. J s − Δ w ≤ 0``: one row per label and the pixel range as plain variable
bounds, instead of 2D rows for −t ≤ rᵢ ≤ t. Solved with SciPy's HiGHS, one LP per sample.
Pixels are clipped to [0, 1] afterwards; no ε projection (none in the official driver)
unless ``project=True``; the ℓ∞ norm is reported either way.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linprog
from torch import Tensor, nn

from bench.attacks import register_attack
from bench.attacks.apgd import project as project_ball
from bench.attacks.base import Attack, AttackResult, forward, label_jacobian, reached

THRESHOLD_START, THRESHOLD_STEP, THRESHOLD_MIN = 0.5, 0.05, 0.1
W_MAX = 1e6  # bounds the LP when r = 0 is feasible (‖r‖∞ ≥ 1e-6)


def solve_linf_lp(jac: np.ndarray, delta: np.ndarray) -> np.ndarray | None:
    """The r of least ‖r‖∞ ≤ 1 with ``jac @ r ≤ delta``, or ``None`` when there is none.

    Args:
        jac: ``[L, D]`` constraint rows (the linearised label losses).
        delta: ``[L]`` right-hand sides.
    """
    jac, delta = np.asarray(jac, dtype=np.float64), np.asarray(delta, dtype=np.float64)
    scale = np.abs(jac).max(axis=1) if jac.size else np.zeros(len(delta))
    flat = scale == 0
    if np.any(delta[flat] < 0):
        return None  # a label the image does not move must still change
    jac, delta, scale = jac[~flat], delta[~flat], scale[~flat]
    d = jac.shape[1] if jac.ndim == 2 else 0
    if len(delta) == 0:
        return np.zeros(d)
    a_ub = np.hstack([jac / scale[:, None], -(delta / scale)[:, None]])
    cost = np.zeros(d + 1)
    cost[-1] = -1.0
    bounds = np.empty((d + 1, 2))
    bounds[:d] = (-1.0, 1.0)
    bounds[d] = (1.0, W_MAX)
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(len(delta)), bounds=bounds, method="highs", options={"presolve": False})
    if res.status != 0:
        return None
    return res.x[:d] / res.x[d]


def _bce(logits: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def threshold_loss(desired: Tensor, threshold: Tensor) -> Tensor:
    """ℓ(τ): the BCE of a label whose confidence sits at the threshold τ (``[P, L]``)."""
    tau = threshold[:, None].to(desired.dtype)
    return -(desired * torch.log(tau) + (1 - desired) * torch.log1p(-tau))


@register_attack("mla-lp")
class MLALP(Attack):
    """MLA-LP: iterated ℓ∞-minimal linear programs on the linearised label losses.

    Args:
        eps: ε; only used with ``project=True`` (the ℓ∞ norm is reported either way).
        steps: LP iterations (10).
        project: also project each iterate on the ε-ball (the official driver does not).
    """

    display_name = "MLA-LP"
    semantic = False

    def __init__(self, *, eps: float = 0.01, steps: int = 10, project: bool = False) -> None:
        super().__init__(eps=eps, steps=steps)
        self.project = bool(project)

    @property
    def bounded(self) -> bool:
        return self.project

    def run(self, model: nn.Module, x: Tensor, desired: Tensor, target_mask: Tensor, nontarget_mask: Tensor) -> AttackResult:
        n = x.shape[0]
        rows = target_mask | nontarget_mask
        labels = rows.any(dim=0).nonzero().flatten()
        y = desired.to(x.dtype)
        threshold = torch.full((n,), THRESHOLD_START, dtype=torch.float64, device=x.device)

        with torch.no_grad():
            logits = forward(model, x)
        best = x.clone()
        best_ok = reached(logits, desired, target_mask)
        best_matched = (((logits > 0) == desired) & rows).sum(dim=1)
        best_l2 = torch.zeros(n, dtype=x.dtype, device=x.device)
        best_iteration = torch.zeros(n, dtype=torch.long, device=x.device)
        current = x.clone()
        active = ~(best_matched == rows.sum(dim=1))

        for it in range(1, self.steps + 1):
            idx = active.nonzero().flatten()
            if idx.numel() == 0:
                break
            loss, jac = label_jacobian(model, current[idx], partial(_bce, target=y[idx]), labels)
            delta = (threshold_loss(y[idx], threshold[idx]) - loss)[:, labels]
            step = torch.zeros_like(current[idx])
            for k, p in enumerate(idx.tolist()):
                keep = rows[p, labels].cpu().numpy()
                r = solve_linf_lp(jac[k].cpu().numpy()[keep], delta[k].cpu().numpy()[keep])
                if r is None:
                    active[p] = False  # no feasible step: the official code gives up on the sample
                else:
                    step[k] = torch.from_numpy(r).view_as(step[k]).to(step)
            candidate = (current[idx] + step).clamp(0.0, 1.0)
            if self.project:
                candidate = project_ball(candidate, x[idx], self.eps)
            with torch.no_grad():
                z = forward(model, candidate)
            stalled = (_bce(z, y[idx]) * target_mask[idx]).sum(1) >= (loss * target_mask[idx]).sum(1)
            threshold[idx] = torch.where(stalled, (threshold[idx] - THRESHOLD_STEP).clamp_min(THRESHOLD_MIN), threshold[idx])
            ok = reached(z, desired[idx], target_mask[idx])
            matched = (((z > 0) == desired[idx]) & rows[idx]).sum(dim=1)
            l2 = (candidate - x[idx]).flatten(1).norm(dim=1)
            better = _lexicographic_better((ok, matched, -l2), (best_ok[idx], best_matched[idx], -best_l2[idx]))
            better &= active[idx]
            take = idx[better]
            best[take], best_ok[take], best_matched[take] = candidate[better], ok[better], matched[better]
            best_l2[take], best_iteration[take] = l2[better], it
            worse = matched < best_matched[idx]
            current[idx] = torch.where(worse.view(-1, *([1] * (x.dim() - 1))), best[idx], candidate)
            active[idx] &= matched < rows[idx].sum(dim=1)
        return AttackResult.build(x, best, best_ok, best_iteration)


def _lexicographic_better(new: tuple[Tensor, ...], old: tuple[Tensor, ...]) -> Tensor:
    """Row-wise ``new > old`` comparing the keys in order (ties go to the next key)."""
    better = torch.zeros_like(new[0], dtype=torch.bool)
    tied = torch.ones_like(better)
    for a, b in zip(new, old):
        a, b = a.to(torch.float64), b.to(torch.float64)
        better |= tied & (a > b)
        tied &= a == b
    return better

