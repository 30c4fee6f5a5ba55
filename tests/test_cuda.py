"""The CUDA path against the CPU path, which the rest of the suite checks against its
references: every attack, the closures, the metrics, training with mixed precision and a
whole sweep. Runs where CUDA is available and is skipped elsewhere (CI has no GPU).

``BENCH_TEST_DEVICE=cpu`` runs these tests with the CPU standing in for the GPU, to check the
tests themselves on a machine without one.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from bench import attacks
from bench.attacks.targets import omega_masks, pair_targets
from bench.metrics import pair_metrics
from bench.sweep.inputs import SweepModel
from bench.train import train
from kg.catalog import load_graph
from kg.closure import GraphTensors, global_consistency, local_consistency, turn_off_closure, turn_on_closure
from results.store import ResultStore
from tests.dags import consistent_prediction
from tests.sweep_fixtures import NAME, ToyDataset, ToyNet, toy_graph
from tests.test_attacks_apgd import scenario

DEVICE = torch.device(os.environ.get("BENCH_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device (run it on a GPU machine)"
)


def on_device(model, *tensors):
    return (copy.deepcopy(model).to(DEVICE), *(t.to(DEVICE) for t in tensors))


@pytest.mark.parametrize("kind", ["gmla", "gmla-alpha", "gmla-beta", "mla-u", "mla-c", "mla-lp", "ml-dp"])
def test_every_attack_gives_the_cpu_result(kind):
    """The same algorithm on both devices. The contract promises no bits across devices: their
    float64 kernels round differently (~1e-16), which decides a pair only where a comparison or
    a decision boundary ties within rounding. So pairs that end alike must be alike to 1e-9, and
    at most one pair of the eight may part (seen on an H100: ML-DP one iteration apart after
    13-19 steps; its first steps are compared)."""
    model, x, desired, tmask, ntmask = scenario(1)
    steps = {"mla-lp": 5, "ml-dp": 2}.get(kind, 100)
    attack = attacks.create_attack(kind, eps=0.2, steps=steps)
    cpu = attack(model, x, desired, tmask, ntmask)
    gpu = attack(*on_device(model, x, desired, tmask, ntmask))
    assert gpu.adv.device.type == DEVICE.type, f"{kind}: the adversarial images left the device"
    same = gpu.iterations.cpu() == cpu.iterations
    assert int((~same).sum()) <= 1, f"{kind}: iterations {gpu.iterations.tolist()} vs CPU {cpu.iterations.tolist()}"
    assert torch.allclose(gpu.adv.cpu()[same], cpu.adv[same], rtol=0, atol=1e-9), (
        f"{kind}: images of pairs that ended alike differ from the CPU's"
    )
    assert bool((cpu.iterations >= 0).any()), f"{kind}: the scenario must have successes"


def test_closures_and_consistency_give_the_cpu_result():
    graph = load_graph("stamps")
    rng = np.random.default_rng(0)
    pred = torch.tensor(np.array([consistent_prediction(graph, rng) for _ in range(64)]))
    pred[::7] = torch.from_numpy(rng.random((len(pred[::7]), graph.n)) < 0.3)  # some inconsistent rows
    omega = torch.zeros_like(pred)
    for row in range(len(pred)):
        omega[row, rng.choice(graph.n_labels, size=2, replace=False)] = True
    g_cpu, g_dev = GraphTensors(graph), GraphTensors(graph, DEVICE)
    for name, fn in [("turn-off", turn_off_closure), ("turn-on", turn_on_closure)]:
        assert torch.equal(fn(pred.to(DEVICE), omega.to(DEVICE), g_dev).cpu(), fn(pred, omega, g_cpu)), (
            f"{name} closure"
        )
    for name, fn in [("local", local_consistency), ("global", global_consistency)]:
        assert torch.equal(fn(pred.to(DEVICE), g_dev).cpu(), fn(pred, g_cpu)), f"{name} consistency"


def test_metrics_give_the_cpu_result():
    from tests.test_metrics import ADV, CLEAN, GRAPH, OMEGA, G, images

    clean, adv, _ = images()
    cpu = pair_metrics(pair_targets(CLEAN, omega_masks(GRAPH, OMEGA), G), ADV, G, clean, adv)
    g = G.to(DEVICE)
    dev_targets = pair_targets(CLEAN.to(DEVICE), omega_masks(GRAPH, OMEGA).to(DEVICE), g)
    dev = pair_metrics(dev_targets, ADV.to(DEVICE), g, clean.to(DEVICE), adv.to(DEVICE))
    for field in ("success", "consistent", "ntr_share", "linf", "ssim", "rmsd"):
        a, b = getattr(dev, field).cpu().double(), getattr(cpu, field).double()
        assert torch.allclose(a, b, rtol=0, atol=1e-5, equal_nan=True), f"{field}: {a.tolist()} vs CPU {b.tolist()}"


def test_mixed_precision_training_learns(tmp_path):
    from tests.test_train import TINY, Synthetic

    result = train(
        TINY, run_dir=tmp_path / "run", device=DEVICE, progress=False, datasets=(Synthetic("train"), Synthetic("test"))
    )
    card = result.card
    assert card.recipe["device"] == DEVICE.type, f"card records device {card.recipe['device']}"
    assert card.history[-1] < 0.7 * card.history[0], f"training loss did not fall: {card.history}"
    assert card.test_map > 0.8, f"test mAP {card.test_map} on an easy synthetic task"


def test_sweep_rows_equal_the_cpu_sweep(tmp_path):
    from bench.sweep.runner import run_sweep
    from tests.test_sweep_runner import fetch, toy_config

    graph = toy_graph()
    sql = (
        "SELECT combo_id, image_id, attack, success, consistent, success_iteration, ntr_share, linf, l2, ssim, rmsd "
        "FROM results ORDER BY combo_id, image_id, attack"
    )
    rows = []
    for device in (torch.device("cpu"), DEVICE):
        model = ToyNet(graph.n).eval().to(device)
        config = toy_config(model=SweepModel(model, NAME, {"model": NAME}, "", 8), device=str(device))
        path = tmp_path / f"sweep-{len(rows)}.duckdb"
        run_sweep(config, model, ToyDataset("test", graph), graph, ResultStore(path), batch_size=8, device=device)
        rows.append(fetch(path, sql))
    assert rows[0] and len(rows[0]) == len(rows[1]), "both sweeps wrote every pair"
    assert [r[:3] for r in rows[0]] == [r[:3] for r in rows[1]], "the same pairs, in the same combinations"
    assert any(r[3] for r in rows[0]) and not all(r[3] for r in rows[0]), "the toy sweep has successes and failures"
    # float32 on two devices: a pair near a decision boundary may end otherwise (the contract
    # covers one device); the rest must agree, and the rates stay within a few pairs
    alike = [(c, d) for c, d in zip(*rows, strict=True) if c[3:6] == d[3:6]]
    assert len(alike) >= 0.9 * len(rows[0]), f"only {len(alike)} of {len(rows[0])} rows end alike on both devices"
    for cpu, dev in alike:
        assert dev[6:] == pytest.approx(cpu[6:], abs=1e-4, nan_ok=True), f"metrics differ: {dev} vs CPU {cpu}"
    for attack in {r[2] for r in rows[0]}:
        rate = [sum(r[3] for r in rs if r[2] == attack) / sum(r[2] == attack for r in rs) for rs in rows]
        assert rate[1] == pytest.approx(rate[0], abs=0.1), f"{attack}: FR_N {rate[1]:.3f} vs CPU {rate[0]:.3f}"
