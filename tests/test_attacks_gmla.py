"""GMLA's step (Supp. Eq. 8) on constructed gradients, and the attack variants' declarations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bench import attacks
from bench.attacks.gmla import gmla_direction


def with_cosine(rng: np.random.Generator, d: int, cos: float) -> tuple[np.ndarray, np.ndarray]:
    """Two random vectors whose cosine is exactly ``cos`` (and different norms)."""
    a = rng.standard_normal(d)
    a /= np.linalg.norm(a)
    b = rng.standard_normal(d)
    b -= a * (a @ b)
    b /= np.linalg.norm(b)
    return 3.0 * a, 0.5 * (cos * a + np.sqrt(1 - cos**2) * b)


def numpy_gmla(gt: np.ndarray, gn: np.ndarray, tau: float) -> np.ndarray:
    ht, hn = gt / np.linalg.norm(gt), gn / np.linalg.norm(gn)
    if ht @ hn <= tau:
        nu = np.sign(ht)
        p_nu = nu - hn * (hn @ nu)
        return p_nu / np.abs(p_nu).max()
    return np.sign(ht + hn)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), cos=st.floats(-0.999, 0.999), tau=st.floats(-1.0, 1.0))
def test_tau_switch_and_both_branches_match_the_formula(seed, cos, tau):
    assume(abs(cos - tau) > 1e-9)  # the constructed cosine is exact to ~1e-15 only
    rng = np.random.default_rng(seed)
    gt, gn = with_cosine(rng, 48, cos)
    e, projected = gmla_direction(torch.from_numpy(gt)[None], torch.from_numpy(gn)[None], tau)
    assert bool(projected[0]) == (cos <= tau), f"branch for cos={cos:.4f}, τ={tau:.4f}"
    expected = numpy_gmla(gt, gn, tau)
    assert np.allclose(e[0].numpy(), expected, atol=1e-12), "step differs from Supp. Eq. (8)"
    assert abs(np.abs(e[0].numpy()).max() - 1.0) < 1e-12, "the step is ℓ∞-normalised"


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), cos=st.floats(-0.999, -0.86))
def test_projected_step_is_orthogonal_to_the_nontarget_gradient(seed, cos):
    rng = np.random.default_rng(seed)
    gt, gn = with_cosine(rng, 30, cos)
    e, projected = gmla_direction(torch.from_numpy(gt).view(1, 3, 10), torch.from_numpy(gn).view(1, 3, 10), -0.85)
    assert bool(projected[0]), f"cos {cos:.3f} ≤ τ = −0.85 must take the projection"
    assert e.shape == (1, 3, 10), "the step has the image's shape"
    hn = gn / np.linalg.norm(gn)
    assert abs(float(e.flatten().numpy() @ hn)) < 1e-12, "e ⟂ ĝ_nt (P = I − ĝ_nt ĝ_ntᵀ)"
    # Up to the ℓ∞ rescaling, e is sgn(ĝ_t) minus its component along ĝ_nt.
    nu = np.sign(gt)
    scale = np.abs(nu - hn * (hn @ nu)).max()
    assert np.allclose(e.flatten().numpy() * scale, nu - hn * (hn @ nu), atol=1e-12), "e = P ν / ‖P ν‖∞"


def test_positive_correlation_gives_the_sign_of_the_normalised_sum():
    gt = torch.tensor([[1.0, -2.0, 0.5, 4.0]], dtype=torch.float64)
    gn = torch.tensor([[100.0, 5.0, -50.0, 10.0]], dtype=torch.float64)  # cos > −0.85, much larger norm
    e, projected = gmla_direction(gt, gn, -0.85)
    assert not bool(projected[0]), "positively correlated gradients take the sign step"
    ht, hn = gt / gt.norm(), gn / gn.norm()
    assert torch.equal(e, (ht + hn).sign()), "e = sgn(ĝ_t + ĝ_nt): both at the same scale, not the raw sum"
    assert not torch.equal(e, (gt + gn).sign()), "the raw sum (MLA-C) would differ here"


def test_per_sample_switch_and_zero_nontarget_gradient():
    rng = np.random.default_rng(1)
    a1, b1 = with_cosine(rng, 12, -0.95)
    a2, b2 = with_cosine(rng, 12, 0.3)
    gt = torch.from_numpy(np.stack([a1, a2, a1]))
    gn = torch.from_numpy(np.stack([b1, b2, np.zeros(12)]))
    e, projected = gmla_direction(gt, gn, -0.85)
    assert projected.tolist() == [True, False, False], "each sample chooses its own branch"
    assert torch.equal(e[2], gt[2].sign()), "no non-target gradient: the step is sgn(ĝ_t)"


def test_declared_target_sets_and_names():
    expected = {
        "gmla": ("GMLA", True),
        "gmla-alpha": ("GMLA_α", True),
        "gmla-beta": ("GMLA_β", True),
        "mla-u": ("MLA-U", False),
        "mla-c": ("MLA-C", False),
        "mla-lp": ("MLA-LP", False),
        "ml-dp": ("ML-DP", False),
        "square": ("Square", False),
        "square-g": ("Square-G", True),
        "mla-kg": ("MLA-KG", False),
    }
    assert attacks.list_attacks() == sorted(expected), "the paper's seven attacks, the black-box Square pair and MLA-KG"
    for name, (display, semantic) in expected.items():
        attack = attacks.create_attack(name)
        assert (attack.display_name, attack.semantic, attack.name) == (display, semantic, name), f"{name}: declaration"
        assert attack.config()["attack"] == name and attack.config()["eps"] == 0.01, f"{name}: config"
    assert attacks.create_attack("gmla").steps == 300 and attacks.create_attack("gmla").tau == -0.85, "paper defaults"
    assert attacks.create_attack("mla-lp").steps == 10 and attacks.create_attack("ml-dp").steps == 100, (
        "baseline budgets"
    )
    assert not attacks.create_attack("ml-dp").bounded and attacks.create_attack("mla-lp", project=True).bounded, (
        "ε-bounded flags"
    )


@pytest.mark.parametrize("tau", [-1.5, 1.01])
def test_tau_out_of_range(tau):
    from bench.errors import BenchError

    with pytest.raises(BenchError, match="τ is a cosine threshold"):
        attacks.create_attack("gmla", tau=tau)


def test_alpha_and_beta_steps_equal_mla_u_and_mla_c_on_the_same_mask():
    """GMLA_α/β differ from MLA-U/MLA-C only by the target mask the caller passes (Ψ vs Ω)."""
    from tests.attacks_fixtures import TinyNet, flip_targets

    model = TinyNet(seed=3)
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        args = flip_targets(model(x), 2, 3)
    for a, b in (("gmla-alpha", "mla-u"), ("gmla-beta", "mla-c")):
        ra = attacks.create_attack(a, eps=0.1, steps=30)(model, x, *args)
        rb = attacks.create_attack(b, eps=0.1, steps=30)(model, x, *args)
        assert torch.equal(ra.adv, rb.adv) and torch.equal(ra.iterations, rb.iterations), f"{a} vs {b}"


def test_a_vanishing_nontarget_gradient_counts_as_no_conflict():
    """A 2-label linear model: target logit +1, non-target logit −30 with weights = −the
    target's. The non-target gradient is σ(−30)·‖w‖ ≈ 1e-12: with the official ``+1e-9`` it
    normalises to ≈ 0, cos ≈ 0 > τ, and the step is the target's sign step (success at step 1);
    a unit-normalised vanishing gradient would give cos = −1 and a step orthogonal to the
    target gradient that never moves the target."""
    from tests.attacks_fixtures import LinearNet

    d = 48
    w = torch.where(torch.arange(d) % 2 == 0, 2.0, -2.0).double()
    x = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    weight = torch.stack([w, -w])
    bias = torch.tensor([1.0, -30.0], dtype=torch.float64) - weight @ x.flatten()
    model = LinearNet(weight, bias)
    desired = torch.tensor([[False, False]])  # switch the target off, keep the non-target off
    tmask, ntmask = torch.tensor([[True, False]]), torch.tensor([[False, True]])
    result = attacks.create_attack("gmla", eps=0.03, steps=20)(model, x, desired, tmask, ntmask)
    assert bool(result.success[0]) and int(result.iterations[0]) == 1, f"iterations {result.iterations.tolist()}"
    g_t = -w.view(1, -1)  # the target objective's gradient direction
    g_nt = 1e-12 * w.view(1, -1)
    e, projected = gmla_direction(g_t, g_nt, -0.85)
    assert not bool(projected[0]) and torch.equal(e, g_t.sign()), "no projection: the target's own sign step"
