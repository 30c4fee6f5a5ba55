"""MLA-LP's linear program and ML-DP's DeepFool step against closed forms and a second LP
formulation, and both attacks on tiny linear models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from bench import attacks
from bench.attacks import mla_lp
from bench.attacks.ml_dp import deepfool_step
from bench.attacks.mla_lp import solve_linf_lp, solve_linf_lps
from tests.attacks_fixtures import LinearNet, flip_targets

# compares results bit for bit or near a decision boundary: ./setup.sh test reruns it under emulated CPUs
pytestmark = pytest.mark.bitwise


def reference_lp(jac: np.ndarray, delta: np.ndarray) -> float | None:
    """min t s.t. J r ≤ Δ, −t ≤ rᵢ ≤ t, t ≤ 1, written with explicit rows (the official form)."""
    l, d = jac.shape
    eye = np.eye(d)
    a_ub = np.block([[jac, np.zeros((l, 1))], [eye, -np.ones((d, 1))], [-eye, -np.ones((d, 1))]])
    b_ub = np.concatenate([delta, np.zeros(2 * d)])
    cost = np.zeros(d + 1)
    cost[-1] = 1
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(-1, 1)] * d + [(0, 1)], method="highs")
    return float(res.x[-1]) if res.status == 0 else None


# ------------------------------------------------------------------- the LP
def test_single_constraint_closed_form():
    rng = np.random.default_rng(0)
    j = rng.standard_normal(7)
    r = solve_linf_lp(j[None], np.array([-0.3]))
    t_star = 0.3 / np.abs(j).sum()  # min ‖r‖∞ s.t. jᵀr ≤ −0.3 is r = −t* sgn(j)
    assert r is not None and abs(np.abs(r).max() - t_star) < 1e-9, "‖r‖∞ equals the closed form"
    assert np.allclose(r, -t_star * np.sign(j), atol=1e-9), "the unique optimum is −t* sgn(j)"


@pytest.mark.parametrize("seed", range(8))
def test_lp_matches_the_explicit_row_formulation(seed):
    rng = np.random.default_rng(seed)
    jac = rng.standard_normal((3, 6))
    delta = rng.standard_normal(3) * 0.5
    r = solve_linf_lp(jac, delta)
    t_ref = reference_lp(jac, delta)
    if t_ref is None:
        assert r is None, f"seed {seed}: the reference is infeasible"
        return
    assert r is not None, f"seed {seed}: feasible in the reference"
    assert np.all(jac @ r <= delta + 1e-7), f"seed {seed}: constraints hold"
    assert abs(np.abs(r).max() - t_ref) < 1e-7 or (t_ref < 1e-6 and np.abs(r).max() < 1e-5), (
        f"seed {seed}: optimal ‖r‖∞"
    )


def test_lp_infeasible_and_trivial_cases():
    assert solve_linf_lp(np.zeros((1, 4)), np.array([-0.1])) is None, "a label the image cannot move"
    assert solve_linf_lp(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([-1.0, -1.0])) is None, "contradictory rows"
    assert solve_linf_lp(np.array([[1.0, 0.0]]), np.array([-3.0])) is None, "needs ‖r‖∞ > 1"
    r = solve_linf_lp(np.array([[1.0, 2.0]]), np.array([0.5]))
    assert r is not None and np.abs(r).max() < 1e-5, "already satisfied: no perturbation"


# ----------------------------------------------------------------- MLA-LP
class Recorder(LinearNet):
    def __init__(self, *args):
        super().__init__(*args)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return super().forward(x)


def linear_scenario(seed: int = 0, labels: int = 3):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(labels, 12, generator=gen, dtype=torch.float64)
    x = 0.4 + 0.2 * torch.rand(1, 3, 2, 2, generator=gen, dtype=torch.float64)
    bias = 0.3 - x.flatten(1)[0] @ weight.T  # every logit starts at 0.3
    return weight, bias, x


def test_mla_lp_first_step_solves_the_linearised_bce_program():
    weight, bias, x = linear_scenario()
    model = Recorder(weight, bias)
    z = model(x)[0].detach()
    desired = torch.tensor([[False, True, True]])
    tmask = torch.tensor([[True, False, False]])
    attacks.create_attack("mla-lp", steps=1)(model, x, desired, tmask, ~tmask)
    # By hand: ∂BCE_l/∂x = (σ(z_l) − y_l) w_l, Δ_l = BCE at confidence 0.5 − current BCE.
    y = desired[0].double()
    jac = ((torch.sigmoid(z) - y)[:, None] * weight).numpy()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")
    delta = (np.log(2.0) - bce).numpy()
    t_ref = reference_lp(jac, delta)
    candidates = [inp for inp in model.inputs if not torch.equal(inp, x)]
    assert candidates, "the attack evaluates a perturbed image"
    r = (candidates[-1] - x).flatten().numpy()
    assert abs(np.abs(r).max() - t_ref) < 1e-7, "first LP step has the least ℓ∞ norm"
    assert np.all(jac @ r <= delta + 1e-7), "first LP step satisfies the linearised constraints"


def test_mla_lp_flips_a_linear_models_target():
    weight, bias, x = linear_scenario(seed=1)
    model = LinearNet(weight, bias)
    desired = torch.tensor([[False, True, True]])
    tmask = torch.tensor([[True, False, False]])
    result = attacks.create_attack("mla-lp")(model, x, desired, tmask, ~tmask)
    assert bool(result.success[0]) and 1 <= int(result.iterations[0]) <= 10, "success within 10 LP iterations"
    with torch.no_grad():
        pred = model(result.adv) > 0
    assert torch.equal(pred, desired), "target off, the other labels (constrained too) as they were"
    t_min = 0.3 / float(weight[0].abs().sum())  # least ℓ∞ norm that moves logit 0 from 0.3 to 0
    assert float(result.linf[0]) >= t_min - 1e-12, "no attack beats the closed-form minimum"


def same_step(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def test_a_ticks_lps_on_several_threads_equal_each_solved_alone(monkeypatch):
    """``solve_linf_lps`` (a tick's LPs at once on torch's threads) gives each problem, in order,
    bitwise the step it gets alone, infeasible ones included; MLA-LP's results do not depend on
    the number of threads."""
    rng = np.random.default_rng(4)
    problems = [(rng.standard_normal((5, 40)), rng.standard_normal(5) * s) for s in (0.1, 0.5, 3.0, 30.0) * 3]
    alone = [solve_linf_lp(j, d) for j, d in problems]
    assert any(r is None for r in alone) and any(r is not None for r in alone), "feasible and infeasible LPs"
    for workers in (1, 2, 5):
        steps = solve_linf_lps(iter(problems), workers)
        assert len(steps) == len(problems), f"{workers} workers: one step per problem"
        for i, (a, b) in enumerate(zip(alone, steps)):
            assert same_step(a, b), f"{workers} workers: problem {i} differs from its solution alone"

    weight, bias, _ = linear_scenario(seed=2)
    x = torch.rand(6, 3, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    model = LinearNet(weight, bias)
    with torch.no_grad():
        desired, tmask, ntmask = flip_targets(model(x), 1, seed=2)
    results = {}
    for threads in (1, 4):
        monkeypatch.setattr(mla_lp.torch, "get_num_threads", lambda threads=threads: threads)
        results[threads] = attacks.create_attack("mla-lp")(model, x, desired, tmask, ntmask, batch_size=4)
    one, four = results[1], results[4]
    assert bool(one.success.any()), "the scenario has successes"
    for field in ("adv", "logits", "iterations", "success"):
        assert torch.equal(getattr(one, field), getattr(four, field)), f"MLA-LP's {field} depends on the threads"


# ------------------------------------------------------------------- ML-DP
def test_deepfool_step_is_the_least_norm_solution():
    rng = np.random.default_rng(3)
    jac = rng.standard_normal((2, 4, 10))
    logits = rng.standard_normal((2, 4))
    violated = np.array([[True, False, True, False], [False, False, False, True]])
    r = deepfool_step(torch.from_numpy(logits), torch.from_numpy(jac), torch.from_numpy(violated)).numpy()
    for p in range(2):
        v = violated[p]
        ref = np.linalg.lstsq(jac[p][v], -logits[p][v], rcond=None)[0]  # min-norm solution
        assert np.allclose(r[p], ref, atol=1e-10), f"row {p}: least-l2 step onto the violated boundaries"


def test_ml_dp_reaches_a_linear_models_target_in_one_step():
    weight, bias, x = linear_scenario(seed=2, labels=4)
    model = LinearNet(weight, bias)
    desired = torch.tensor([[False, False, True, True]])
    tmask = torch.tensor([[True, True, False, False]])
    result = attacks.create_attack("ml-dp")(model, x, desired, tmask, ~tmask)
    w = weight[:2]
    z = torch.full((2,), 0.3, dtype=torch.float64)
    r_star = -w.T @ torch.linalg.solve(w @ w.T, z)  # closed-form least-l2 move onto both boundaries
    assert bool(result.success[0]) and int(result.iterations[0]) == 1, "one step on a linear model"
    assert torch.allclose(result.adv.flatten(), x.flatten() + 1.02 * r_star, atol=1e-12), "x + (1 + overshoot) r*"
    assert abs(float(result.l2[0]) - 1.02 * float(r_star.norm())) < 1e-12, "reported l2 norm"


def test_ml_dp_holding_the_nontargets():
    weight, bias, x = linear_scenario(seed=4, labels=4)
    model = LinearNet(weight, bias)
    desired = torch.tensor([[False, True, True, True]])
    tmask = torch.tensor([[True, False, False, False]])
    result = attacks.create_attack("ml-dp", constrain_nontargets=True)(model, x, desired, tmask, ~tmask)
    with torch.no_grad():
        pred = model(result.adv) > 0
    assert bool(result.success[0]) and torch.equal(pred, desired), "target flipped, non-targets held"
