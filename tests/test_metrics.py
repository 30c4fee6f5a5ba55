"""FR_N, FR_S, NT_R, SSIM and RMSD against values worked out by hand on small prediction
tables (with failed rows and inconsistent successes), and SSIM against a direct formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from bench.attacks.targets import omega_masks, pair_targets
from bench.errors import BenchError
from bench.metrics import combination_rates, pair_metrics, summarize
from kg.closure import GraphTensors
from kg.graph import LabelGraph

# cat, dog, car are labels; animal → {cat, dog}, vehicle → {car}
GRAPH = LabelGraph("toy", ("cat", "dog", "car", "animal", "vehicle"), ((3, 0), (3, 1), (4, 2)), 3)
G = GraphTensors(GRAPH)


def logits(*rows: str) -> torch.Tensor:
    return torch.tensor([[1.0 if c == "1" else -1.0 for c in row] for row in rows])


# node order: cat dog car animal vehicle
CLEAN = logits("10111", "10111", "10111", "11111", "10111", "11111")
ADV = logits(
    "00101",  # Ω={cat}: success, consistent; Ψ̄ = {dog, car, vehicle} unchanged
    "00111",  # Ω={cat}: success, but animal stays on without a positive child → inconsistent at cat
    "10110",  # Ω={cat}: failed (cat still on); vehicle changed but a failed row counts as unperturbed
    "01010",  # Ω={cat}: success, consistent; Ψ̄ = {dog, car, animal, vehicle}: car, vehicle changed → 2/4
    "00000",  # Ω={cat, car}: success, consistent; Ψ̄ = {dog}: unchanged
    "01011",  # Ω={cat, car}: success; vehicle on without a child → inconsistent at car
)
OMEGA = [["cat"]] * 4 + [["cat", "car"]] * 2
COMBO = ["cat"] * 4 + ["cat+car"] * 2


def images(n: int = 6, size: int = 24):
    gen = torch.Generator().manual_seed(0)
    clean = 0.2 + 0.6 * torch.rand(n, 3, size, size, generator=gen, dtype=torch.float64)
    shift = torch.tensor([0.01, 0.0, 0.03, 0.02, 0.05, 0.04], dtype=torch.float64)[:n]
    adv = clean + shift.view(-1, 1, 1, 1)
    return clean, adv, shift


def metrics():
    clean_img, adv_img, _ = images()
    targets = pair_targets(CLEAN, omega_masks(GRAPH, OMEGA), G)
    return pair_metrics(targets, ADV, G, clean_img, adv_img)


def test_per_pair_values():
    m = metrics()
    assert m.success.tolist() == [True, True, False, True, True, True], "FR_N numerator: every Ω label off"
    assert m.consistent.tolist() == [True, False, False, True, True, False], (
        "FR_S numerator: success and locally consistent"
    )
    assert torch.allclose(m.ntr_share, torch.tensor([0, 0, 0, 0.5, 0, 0], dtype=torch.float64)), (
        "NT_R share of Ψ̄ changed"
    )
    flipped = [[GRAPH.nodes[k] for k in row.nonzero().flatten().tolist()] for row in m.flipped]
    assert flipped == [[], [], [], ["car", "vehicle"], [], []], (
        "flipped: the Ψ̄ labels that changed, on successful rows only (row 3 changed vehicle but failed)"
    )
    _, _, shift = images()
    expected_rmsd = torch.where(m.success, shift, torch.tensor(float("nan"), dtype=torch.float64))
    assert torch.allclose(m.rmsd, expected_rmsd, equal_nan=True), "RMSD = √(‖x − x′‖²/N) for successes, NaN otherwise"
    assert torch.allclose(m.linf, shift) and torch.allclose(m.l2, shift * math.sqrt(3 * 24 * 24)), "norms of every pair"
    assert math.isnan(float(m.ssim[2])) and abs(float(m.ssim[1]) - 1.0) < 1e-12, (
        "SSIM: NaN when failed, 1 when unchanged"
    )


def test_per_combination_rates_and_summary():
    m = metrics()
    rates = {r.combination: r for r in combination_rates(m, COMBO)}
    cat, both = rates["cat"], rates["cat+car"]
    assert (cat.n, cat.fr_n, cat.fr_s, cat.nt_r) == (4, 0.75, 0.5, 0.125), "Ω={cat}: 3/4, 2/4, (0+0+0+0.5)/4"
    assert (both.n, both.fr_n, both.fr_s, both.nt_r) == (2, 1.0, 0.5, 0.0), "Ω={cat,car}: 2/2, 1/2, 0"
    assert abs(cat.rmsd - (0.01 + 0.0 + 0.02) / 3) < 1e-12, "RMSD averages the successful rows only"
    assert abs(cat.ssim - float(m.ssim[[0, 1, 3]].mean())) < 1e-12, "SSIM averages the successful rows only"
    s = summarize(list(rates.values()), m)
    assert s.n_combinations == 2, "two combinations"
    assert np.allclose(s.fr_n, (0.875, 0.125)) and np.allclose(s.fr_s, (0.5, 0.0)), (
        "mean ± population std of FR_N, FR_S"
    )
    assert np.allclose(s.nt_r, (0.0625, 0.0625)), "mean ± population std of NT_R"
    assert abs(s.ssim_pooled - float(m.ssim[m.success].mean())) < 1e-12, "pooled SSIM over all successful images"
    for r in rates.values():
        assert r.fr_s <= r.fr_n, "FR_S ≤ FR_N by construction"


def test_combination_ids_as_a_tensor_an_array_or_a_list_give_the_same_rates():
    """Tensor and array elements hash by identity: each must group by value, like a list."""
    m = metrics()
    ids = [0, 0, 1, 0, 2, 2]
    by_list = combination_rates(m, ids)
    assert [r.combination for r in by_list] == [0, 1, 2], "three combinations, in first appearance"
    for other in (torch.tensor(ids), np.array(ids)):
        assert repr(combination_rates(m, other)) == repr(by_list), type(other).__name__  # NaN SSIM: by text


def test_combination_without_success_has_nan_ssim_and_is_skipped_in_its_mean():
    m = metrics()
    rates = combination_rates(m, ["a", "a", "never", "a", "b", "b"])
    never = next(r for r in rates if r.combination == "never")
    assert never.fr_n == 0.0 and math.isnan(never.ssim) and math.isnan(never.rmsd), "no success: rates 0, SSIM NaN"
    s = summarize(rates)
    assert not math.isnan(s.ssim[0]), "SSIM mean skips combinations without success"
    assert math.isnan(s.ssim_pooled), "pooled SSIM needs the pair metrics"


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM (Wang et al. 2004): 11×11 Gaussian window σ = 1.5, K = (0.01, 0.03), data range 1,
    images reflect-padded by 5 so the SSIM map covers every pixel, mean over pixels and channels."""
    ax = np.arange(11) - 5
    w = np.exp(-(ax**2) / (2 * 1.5**2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    c1, c2 = 0.01**2, 0.03**2
    out = []
    for a, b in zip(x, y):
        f = lambda v: correlate2d(np.pad(v, 5, mode="reflect"), w, mode="valid")
        mu_a, mu_b = f(a), f(b)
        var_a, var_b, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
        out.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(np.mean(out))


def test_ssim_against_the_formula():
    gen = torch.Generator().manual_seed(1)
    clean = torch.rand(1, 3, 20, 20, generator=gen, dtype=torch.float64)
    adv = (clean + 0.1 * torch.randn(1, 3, 20, 20, generator=gen, dtype=torch.float64)).clamp(0, 1)
    targets = pair_targets(logits("10111"), omega_masks(GRAPH, [["cat"]]), G)
    m = pair_metrics(targets, logits("00101"), G, clean, adv)
    assert abs(float(m.ssim[0]) - reference_ssim(clean[0].numpy(), adv[0].numpy())) < 1e-6, "SSIM formula"


def test_ntr_counts_outputs_outside_the_graph():
    """With a node → output map, every output outside Ψ is watched (the official OI script was not)."""
    index = [5, 0, 2, 6, 3]
    clean = torch.full((1, 7), -1.0)
    clean[0, [5, 2, 6, 3]] = 1.0  # cat, car, animal, vehicle
    adv = clean.clone()
    adv[0, [5, 6]] = -1.0  # Ψ = {cat, animal} off: success
    adv[0, 4] = 1.0  # an unmapped output flips on
    targets = pair_targets(clean, omega_masks(GRAPH, [["cat"]]), G, output_index=index)
    x = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    m = pair_metrics(targets, adv, G, x, x)
    assert bool(m.success[0]) and bool(m.consistent[0]), "success, consistent in the graph"
    assert abs(float(m.ntr_share[0]) - 1 / 5) < 1e-12, "1 of the 5 outputs outside Ψ changed"


def test_bad_inputs():
    clean_img, adv_img, _ = images()
    targets = pair_targets(CLEAN, omega_masks(GRAPH, OMEGA), G)
    with pytest.raises(BenchError, match="do not match"):
        pair_metrics(targets, ADV[:, :4], G, clean_img, adv_img)
    with pytest.raises(BenchError, match="one clean and one adversarial image per pair"):
        pair_metrics(targets, ADV, G, clean_img[:2], adv_img[:2])
    with pytest.raises(BenchError, match="combination ids"):
        combination_rates(metrics(), ["a"])
    with pytest.raises(BenchError, match="no target combinations"):
        summarize([])


def test_nt_r_is_zero_when_psi_covers_every_label():
    """Edges 0 → 1, clean {0, 1}, Ω = {0}: Ψ = {0, 1} leaves no non-target to disturb, so a
    successful pair's NT_R share is defined as 0 (not 0/0), and a failed one's is 0 as always."""
    from bench.attacks.targets import pair_targets
    from kg.closure import GraphTensors
    from kg.graph import LabelGraph

    g = GraphTensors(LabelGraph("two", ("child", "parent"), ((1, 0),), 1))
    clean = torch.tensor([[True, True], [True, True]])
    targets = pair_targets(clean, torch.tensor([[False, True], [False, True]]), g)
    assert targets.psi.all(), "Ψ is every label"
    adv_logits = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])  # the first pair succeeds, the second fails
    images = torch.zeros(2, 3, 8, 8)
    m = pair_metrics(targets, adv_logits, g, images, images)
    assert m.success.tolist() == [True, False] and m.ntr_share.tolist() == [0.0, 0.0]
