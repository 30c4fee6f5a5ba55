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
bounds, instead of 2D rows for −t ≤ rᵢ ≤ t. Solved with SciPy's HiGHS, one LP per sample;
a tick's LPs run on torch's CPU threads at once (``solve_linf_lps``: HiGHS releases the GIL and
solves each LP on one thread, so a sample's step is the same whatever the number of threads).
Pixels are clipped to [0, 1] afterwards; no ε projection (none in the official driver)
unless ``project=True``; the ℓ∞ norm is reported either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linprog
from torch import Tensor, nn

from bench.attacks import register_attack
from bench.attacks.apgd import project as project_ball
from bench.attacks.base import Attack
from bench.attacks.engine import Stepper, per_row
from bench.attacks.ops import forward, label_jacobian, reached

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
    res = linprog(
        cost, A_ub=a_ub, b_ub=np.zeros(len(delta)), bounds=bounds, method="highs", options={"presolve": False}
    )
    if res.status != 0:
        return None
    return res.x[:d] / res.x[d]


def solve_linf_lps(problems: Iterable[tuple[np.ndarray, np.ndarray]], workers: int) -> list[np.ndarray | None]:
    """``solve_linf_lp`` of each ``(jac, delta)`` in order, up to ``workers`` at once; at most
    ``workers`` problems are held in memory (they are built lazily, each a dense Jacobian)."""
    if workers <= 1:
        return [solve_linf_lp(jac, delta) for jac, delta in problems]
    out: list[np.ndarray | None] = []
    with ThreadPoolExecutor(workers) as pool:
        running: list[Future[np.ndarray | None]] = []
        for problem in problems:
            running.append(pool.submit(solve_linf_lp, *problem))
            if len(running) == workers:
                out.append(running.pop(0).result())
        out.extend(f.result() for f in running)
    return out


def _bce(logits: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def threshold_loss(desired: Tensor, threshold: Tensor) -> Tensor:
    """ℓ(τ): the BCE of a label whose confidence sits at the threshold τ (``[P, L]``)."""
    tau = threshold[:, None].to(desired.dtype)
    return -(desired * torch.log(tau) + (1 - desired) * torch.log1p(-tau))


class LPStepper(Stepper):
    """MLA-LP on B slots: each tick is one LP iteration of every live slot (its first tick also
    takes the clean image's prediction). The Jacobian covers every model output (all labels
    are constrained), the same K for every slot."""

    attack: MLALP

    def __init__(self, attacks, batch, image, n_out, max_targets) -> None:
        super().__init__(attacks, batch, image, n_out, max_targets)
        (self.attack,) = attacks
        b, device = batch, image.device
        self.labels = torch.arange(n_out, device=device).expand(b, n_out)
        self.current = self.x0.clone()
        self.threshold = torch.zeros(b, dtype=torch.float64, device=device)
        self.best_ok = torch.zeros(b, dtype=torch.bool, device=device)
        self.best_matched = torch.zeros(b, dtype=torch.long, device=device)
        self.best_l2 = torch.zeros(b, dtype=image.dtype, device=device)
        self.best_it = torch.zeros(b, dtype=torch.long, device=device)
        self.it = torch.zeros(b, dtype=torch.long, device=device)
        self.clean_logits = self.adv_logits.clone()

    def reset(self, slot: int) -> None:
        self.current[slot], self.adv[slot] = self.x0[slot], self.x0[slot]
        self.threshold[slot], self.it[slot] = THRESHOLD_START, 0

    def tick(self, model: nn.Module) -> Tensor:
        live, x0, attack = self.live, self.x0, self.attack
        constrained = self.tmask | self.ntmask
        wanted = constrained.sum(dim=1)
        y = self.desired.to(x0.dtype)
        x = self.current.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = forward(model, x)
            loss = _bce(logits, y)
            jac = label_jacobian(loss, x, self.labels)
        loss, logits = loss.detach(), logits.detach()
        self.gradients = self.labels.shape[1]

        # a slot's first tick: the clean image is the best point so far
        fresh = live & (self.it == 0)
        matched = (((logits > 0) == self.desired) & constrained).sum(dim=1)
        self.best_ok = torch.where(fresh, reached(logits, self.desired, self.tmask), self.best_ok)
        self.best_matched = torch.where(fresh, matched, self.best_matched)
        self.best_l2 = torch.where(fresh, 0.0, self.best_l2)
        self.best_it = torch.where(fresh, 0, self.best_it)
        self.clean_logits = torch.where(fresh[:, None], logits, self.clean_logits)
        self.adv_logits = torch.where(fresh[:, None], logits, self.adv_logits)
        self.it = torch.where(fresh, 1, self.it)
        going = live & (self.best_matched < wanted)

        delta = threshold_loss(y, self.threshold) - loss
        step = torch.zeros_like(x0)
        feasible = going.clone()
        rows = going.nonzero().flatten().tolist()
        keep = constrained.cpu().numpy()
        problems = ((jac[p].cpu().numpy()[keep[p]], delta[p].cpu().numpy()[keep[p]]) for p in rows)
        for p, r in zip(rows, solve_linf_lps(problems, torch.get_num_threads())):
            if r is None:
                feasible[p] = False  # no feasible step: the official code gives up on the sample
            else:
                step[p] = torch.from_numpy(r).view_as(step[p]).to(step)
        candidate = (self.current + step).clamp(0.0, 1.0)
        if attack.project:
            candidate = project_ball(candidate, x0, attack.eps)
        with torch.no_grad():
            z = forward(model, candidate)
        stalled = (_bce(z, y) * self.tmask).sum(1) >= (loss * self.tmask).sum(1)
        lowered = (self.threshold - THRESHOLD_STEP).clamp_min(THRESHOLD_MIN)
        self.threshold = torch.where(going & stalled, lowered, self.threshold)
        ok = reached(z, self.desired, self.tmask)
        matched = (((z > 0) == self.desired) & constrained).sum(dim=1)
        l2 = (candidate - x0).flatten(1).norm(dim=1)
        better = feasible & _lexicographic_better((ok, matched, -l2), (self.best_ok, self.best_matched, -self.best_l2))
        self.adv = torch.where(per_row(better, x0), candidate, self.adv)
        self.adv_logits = torch.where(better[:, None], z, self.adv_logits)
        self.best_ok, self.best_matched = (
            torch.where(better, ok, self.best_ok),
            torch.where(better, matched, self.best_matched),
        )
        self.best_l2, self.best_it = torch.where(better, l2, self.best_l2), torch.where(better, self.it, self.best_it)
        worse = matched < self.best_matched
        self.current = torch.where(
            per_row(going, x0), torch.where(per_row(worse, x0), self.adv, candidate), self.current
        )
        done = live & ~(feasible & (matched < wanted) & (self.it < attack.steps))
        self.it = torch.where(going, self.it + 1, self.it)
        logits_out = torch.where(self.best_ok[:, None], self.adv_logits, self.clean_logits)
        self.finish(done, self.adv, logits_out, self.best_ok, self.best_it)
        return done


@register_attack("mla-lp")
class MLALP(Attack):
    """MLA-LP: iterated ℓ∞-minimal linear programs on the linearised label losses.

    Args:
        eps: ε; only used with ``project=True`` (the ℓ∞ norm is reported either way).
        steps: LP iterations (10).
        project: also project each iterate on the ε-ball (the official driver does not).
    """

    semantic = False
    stepper_class = LPStepper

    def __init__(self, *, eps: float = 0.01, steps: int = 10, project: bool = False) -> None:
        super().__init__(eps=eps, steps=steps)
        self.project = bool(project)

    @property
    def bounded(self) -> bool:
        return self.project


def _lexicographic_better(new: tuple[Tensor, ...], old: tuple[Tensor, ...]) -> Tensor:
    """Row-wise ``new > old`` comparing the keys in order (ties go to the next key)."""
    better = torch.zeros_like(new[0], dtype=torch.bool)
    tied = torch.ones_like(better)
    for a, b in zip(new, old):
        a, b = a.to(torch.float64), b.to(torch.float64)
        better |= tied & (a > b)
        tied &= a == b
    return better
