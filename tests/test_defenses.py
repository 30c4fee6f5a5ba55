"""The defenses (``bench.defenses``) on toy models: the detector's violations against a node-by-node
loop over the rules, its calibration against a known score distribution, hand-built consistent
and inconsistent predictions; smoothing's vote against the Gaussian closed form; EOT's gradient
against the mean of K draws; and rows that never depend on their batch-mates."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bench.cli import error_message
from bench.defenses import create_defense, list_defenses
from bench.defenses.detector import KGDetector, violations
from bench.defenses.smoothing import MajorityVote, NoisyCopies, row_noise
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.closure import GraphTensors
from kg.graph import LabelGraph
from tests.dags import dags


def rule_breaks(pred: np.ndarray, g: LabelGraph) -> int:
    """Nodes where the child rule or the parent rule fails, one node at a time (kg.closure's definitions)."""
    bad = 0
    for v in range(g.n):
        children, parents = g.children(v), g.parents(v)
        child_ok = not children or (
            any(pred[c] for c in children)
            if pred[v]
            else all(any(pred[p] for p in g.parents(c)) for c in children if pred[c])
        )
        parent_ok = not parents or (
            any(pred[p] for p in parents)
            if pred[v]
            else all(any(pred[c] for c in g.children(p)) for p in parents if pred[p])
        )
        bad += not (child_ok and parent_ok)
    return bad


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=10), st.integers(0, 2**31 - 1))
def test_violations_count_the_nodes_whose_rules_fail(graph, seed):
    rng = np.random.default_rng(seed)
    preds = rng.random((6, graph.n)) < 0.5
    got = violations(torch.from_numpy(preds), GraphTensors(graph)).tolist()
    assert got == [rule_breaks(p, graph) for p in preds]


def test_the_detector_passes_consistent_predictions_and_rejects_broken_ones():
    g = load_graph("voc")
    detector = KGDetector(max_violations=0)
    detector.prepare(nn.Identity(), g)
    consistent = torch.zeros(g.n, dtype=torch.bool)
    consistent[[g.index("cat"), *g.ancestors("cat")]] = True
    orphan = torch.zeros(g.n, dtype=torch.bool)
    orphan[g.index("cat")] = True  # cat without its ancestors
    logits = torch.stack([consistent, orphan, torch.zeros(g.n, dtype=torch.bool)]).float() * 2 - 1
    assert detector.rejects(logits).tolist() == [False, True, False]


class ScoreByPixel(nn.Module):
    """A prediction with ``k`` broken rules for an image whose first pixel is k/10: a chain of
    k + 1 leaves each ON without its parent... built on a star graph so k orphans = k violations."""

    def __init__(self, graph: LabelGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x):
        k = (x[:, 0, 0, 0] * 10).round().long()
        out = torch.full((x.shape[0], self.graph.n), -1.0)
        for row, count in enumerate(k.tolist()):
            out[row, :count] = 1.0  # leaves 0..count-1 ON, their root OFF
        return out


class Images(torch.utils.data.Dataset):
    name, split = "calibration", "train"

    def __init__(self, firsts):
        self.images = torch.zeros(len(firsts), 3, 4, 4)
        self.images[:, 0, 0, 0] = torch.tensor(firsts) / 10

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], torch.zeros(1)


def star(leaves: int) -> LabelGraph:
    nodes = tuple(f"leaf{i}" for i in range(leaves)) + ("root",)
    return LabelGraph("star", nodes, tuple((leaves, i) for i in range(leaves)), leaves)


def test_the_detector_threshold_bounds_the_clean_rejection_rate():
    g = star(6)
    # each ON leaf without the root breaks its parent rule, and the root's child rule breaks once
    firsts = [0] * 90 + [1] * 6 + [3] * 4  # violations 0 (90), 2 (6), 4 (4)
    assert violations(ScoreByPixel(g)(Images(firsts).images) > 0, GraphTensors(g)).bincount().tolist() == [
        90, 0, 6, 0, 4,
    ]  # fmt: skip
    fitted = KGDetector(target_frr=0.05)
    fitted.prepare(ScoreByPixel(g), g, lambda split: Images(firsts))
    assert (fitted.max_violations, fitted.clean_frr) == (2, 0.04), "the smallest count with FRR ≤ 5%"
    strict = KGDetector(target_frr=0.1)
    strict.prepare(ScoreByPixel(g), g, lambda split: Images(firsts))
    assert (strict.max_violations, strict.clean_frr) == (0, 0.1)
    assert fitted.config() == {
        "defense": "kg-detector", "max_violations": 2, "target_frr": 0.05, "calibration": "train", "clean_frr": 0.04,
    }  # fmt: skip


class Threshold(nn.Module):
    """Logit = first pixel − ½ for every output: positive above ½."""

    def forward(self, x):
        return (x[:, :1, 0, 0] - 0.5).expand(-1, 3)


def test_the_vote_follows_the_gaussian_closed_form():
    sigma, samples = 0.2, 4000
    firsts = torch.tensor([0.3, 0.45, 0.5, 0.55, 0.8])
    x = torch.full((len(firsts), 3, 2, 2), 0.5)
    x[:, 0, 0, 0] = firsts
    share = MajorityVote(Threshold(), sigma, samples, seed=3)(x)[:, 0] + 0.5
    expected = torch.tensor([0.5 * (1 + math.erf((float(f) - 0.5) / (sigma * math.sqrt(2)))) for f in firsts])
    assert torch.all((share - expected).abs() < 4 * torch.sqrt(expected * (1 - expected) / samples) + 1e-9)
    noise_free = Threshold()(x)[:, 0] > 0
    vote = MajorityVote(Threshold(), 0.02, 101, seed=0)(x)[:, 0] > 0
    assert vote[[0, 1, 3, 4]].tolist() == noise_free[[0, 1, 3, 4]].tolist(), (
        "far from the boundary, noise changes nothing"
    )


def test_eot_gradient_is_the_mean_of_the_draws():
    """The attacks' gradient of any weighting of the EOT logits is the mean of the K draws' gradients."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    x, w = torch.rand(2, 3, 2, 2, requires_grad=True), torch.randn(2, 3)
    k, sigma = 5, 0.1
    (got,) = torch.autograd.grad((NoisyCopies(net, sigma, k, seed=7)(x) * w).sum(), x)
    noise = row_noise(x, k, sigma, 7, "attack")
    draws = [torch.autograd.grad((net(x + noise[j]) * w).sum(), x)[0] for j in range(k)]
    assert torch.allclose(got, torch.stack(draws).mean(0), atol=1e-6)
    assert not torch.allclose(draws[0], draws[1], atol=1e-4), "the draws differ: the mean is not one draw"


@pytest.mark.parametrize("make", [lambda m: NoisyCopies(m, 0.1, 3, 0), lambda m: MajorityVote(m, 0.1, 9, 0)])
def test_a_rows_output_never_depends_on_its_batch_mates(make):
    torch.manual_seed(0)
    net = make(nn.Sequential(nn.Flatten(), nn.Linear(12, 4)))
    x = torch.rand(5, 3, 2, 2)
    together = net(x)
    assert torch.equal(net(x.flip(0)).flip(0), together)
    assert all(torch.equal(net(x[i : i + 1])[0], together[i]) for i in range(5))
    moved = x.clone()
    moved[0, 0, 0, 0] = torch.nextafter(moved[0, 0, 0, 0], torch.tensor(1.0))
    assert not torch.equal(net(moved)[0], together[0]), "a new input gets new noise"


def test_defenses_by_name_and_their_errors():
    assert list_defenses() == ["kg-detector", "smoothing"]
    assert create_defense("smoothing:sigma=0.5,samples=8").config() == {
        "defense": "smoothing", "sigma": 0.5, "samples": 8, "seed": 0,
    }  # fmt: skip
    for spec, message in (
        ("smoothin", "unknown defense 'smoothin' (did you mean 'smoothing'"),
        ("smoothing:sigma=2", "defense 'smoothing': sigma = 2: must be in (0, 1]"),
        ("smoothing:noise=1", "defense 'smoothing': 'noise=1' is not key=value with a parameter of it"),
        ("kg-detector:target_frr=x", "defense 'kg-detector': target_frr = 'x': must be in [0, 1)"),
    ):
        with pytest.raises(BenchError) as raised:
            create_defense(spec)
        assert error_message(raised.value).startswith(message), error_message(raised.value)


# ----------------------------------------------------------------- sweeps against a defended model
def defended_sweep(path, defense, eot=1, attacks=("mla-u", "gmla"), batch_size=8, **more):
    from bench.sweep.config import sweep_config
    from bench.sweep.inputs import SweepModel
    from bench.sweep.presets import SweepOptions
    from bench.sweep.runner import run_sweep
    from results.store import ResultStore
    from tests.sweep_fixtures import NAME, ToyDataset, ToyNet, toy_graph
    from tests.test_sweep_runner import TOY

    graph = toy_graph()
    model = ToyNet(graph.n).eval()
    options = SweepOptions(attacks=attacks, eps=(0.06,), sizes=(1, 2), images_per_combination=2, iterations=10)
    config = sweep_config(
        NAME, SweepModel(model, NAME, {"model": NAME}, "", 8), graph, TOY, options, defense=defense.config(), eot=eot
    )
    store = ResultStore(path)
    outcome = run_sweep(config, model, ToyDataset("test", graph), graph, store, batch_size=batch_size, **more)
    return outcome, store, model, graph


def test_a_detected_row_is_one_whose_adversarial_prediction_breaks_the_graph(tmp_path):
    """Rows against kg-detector: ``detected`` equals the violations of the saved adversarial
    image's prediction, counted here with the node-by-node loop."""
    import numpy as np

    from tests.test_sweep_runner import fetch

    outcome, store, model, graph = defended_sweep(tmp_path / "d.duckdb", KGDetector(max_violations=0), save_images=99)
    rows = fetch(store.path, "SELECT combo_id, image_id, attack, eps, tau, success, detected FROM results")
    artifacts = store.artifacts(outcome.run_id)
    assert rows and len(artifacts) == len(rows)
    caught = {"mla-u": [], "gmla": []}
    for *key, success, detected in rows:
        with np.load(artifacts[tuple(key)]) as z:
            adv = torch.from_numpy(z["adv_float"])[None]
        with torch.no_grad():
            pred = (model(adv) > 0)[0].numpy()
        assert detected == (rule_breaks(pred, graph) > 0), key
        if success:
            caught[key[2]].append(detected)
    assert all(caught.values()), caught
    with store.reader() as con:
        summary = dict(
            con.execute(
                "SELECT attack, det_mean FROM rate_summary WHERE run_id = ? AND size = 2", [outcome.run_id]
            ).fetchall()
        )
    share = {a: 100 * sum(v) / len(v) for a, v in caught.items()}
    assert share["gmla"] < share["mla-u"], f"the detector catches MLA-U more often than GMLA: {share}"
    assert 0 < summary["mla-u"] <= 100, summary


def test_rows_under_a_defense_never_depend_on_their_batch_mates(tmp_path):
    from bench.defenses.smoothing import Smoothing
    from tests.test_sweep_runner import ROW_SQL, fetch

    rows = []
    for b in (3, 8):
        outcome, store, _, _ = defended_sweep(
            tmp_path / f"s{b}.duckdb", Smoothing(sigma=0.05, samples=5), eot=2, attacks=("mla-u",), batch_size=b
        )
        rows.append(fetch(store.path, ROW_SQL.replace("EXCLUDE (seconds)", "EXCLUDE (seconds, machine)")))
        checks = {c.name: c for c in outcome.checks}
        assert checks["randomness"].status == "pass" and "EOT" in checks["randomness"].detail, checks["randomness"]
    assert rows[0] and rows[0] == rows[1], "B = 3 and B = 8 give the same rows"
    outcome, _, _, _ = defended_sweep(tmp_path / "one.duckdb", Smoothing(sigma=0.05, samples=5), attacks=("mla-u",))
    assert {c.name: c.status for c in outcome.checks}["randomness"] == "flag", "smoothing without EOT is flagged"


def test_the_defenses_layout_puts_each_defense_beside_the_undefended_model(tmp_path):
    from bench.sweep.config import sweep_config
    from bench.sweep.inputs import SweepModel
    from bench.sweep.presets import SweepOptions
    from bench.sweep.runner import run_sweep
    from kg.closure import global_consistency
    from results.tables import defense_layout, to_csv
    from results.views import Selection
    from tests.sweep_fixtures import NAME, ToyDataset, toy_graph
    from tests.test_sweep_runner import TOY

    graph, path = toy_graph(), tmp_path / "cmp.duckdb"
    defended, store, model, _ = defended_sweep(path, KGDetector(max_violations=0))
    options = SweepOptions(
        attacks=("mla-u", "gmla"), eps=(0.06,), sizes=(1, 2), images_per_combination=2, iterations=10
    )
    plain_config = sweep_config(NAME, SweepModel(model, NAME, {"model": NAME}, "", 8), graph, TOY, options)
    plain = run_sweep(plain_config, model, ToyDataset("test", graph), graph, store, batch_size=8)
    with store.reader() as con:
        layout = defense_layout(con, [plain.run_id, defended.run_id], Selection(size=1))
    lines = list(csv.reader(io.StringIO(to_csv(layout))))
    header, body = lines[0], lines[1:]
    assert [r[1] for r in body] == ["none"] * 3 + ["kg-detector"] * 3, body  # MLA-U, GMLA, the worst case
    clean = model(torch.stack([ToyDataset("test", graph)[i][0] for i in range(60)])) > 0
    consistent = float(global_consistency(clean, GraphTensors(graph)).float().mean())
    column = {name: i for i, name in enumerate(header)}
    assert header[:3] == ["model (run)", "defense", "attack"], header
    for row in body:
        assert float(row[column["clean_consistent_mean"]]) == pytest.approx(100 * consistent, abs=1e-6)
    rejected = [row[column["clean_rejected_mean"]] for row in body]
    assert rejected[:3] == [""] * 3 and all(float(v) == pytest.approx(100 * (1 - consistent)) for v in rejected[3:])


def test_bench_run_under_a_defense_and_its_one_line_refusals(tmp_path, capsys, monkeypatch):
    from tests.cli_main import cli

    monkeypatch.setenv("COLUMNS", "300")
    db = str(tmp_path / "r.duckdb")
    args = ["run", "-d", "sweep-toy", "--image-size", "8", "--attack", "gmla,mla-u", "--size", "1", "--eps", "0.06"]
    args += ["--iterations", "5", "--images-per-combo", "2", "--preset", "fast", "--db", db, "-m", "toy-model"]
    from tests.sweep_fixtures import save_toy_model

    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    save_toy_model()
    code, out, err = cli(capsys, monkeypatch, *args, "--defense", "kg-detector:target_frr=0.1")
    assert code == 0, err
    assert "defense: kg-detector(max_violations=" in out, out
    code, out, err = cli(capsys, monkeypatch, "table", "--db", db, "--format", "markdown")
    assert code == 0 and "Det." in out and "FR_N after det." in out and "under the defense kg-detector(" in out, out
    for more, message in (
        (["--defense", "nope"], "unknown defense 'nope'"),
        (["--eot", "3"], "--eot averages the draws of a randomised defense: give one with --defense"),
        (["--defense", "kg-detector", "--eot", "3"], "--eot 3: defense kg-detector draws no randomness to average"),
        (["--defense", "smoothing:sigma=2"], "defense 'smoothing': sigma = 2: must be in (0, 1]"),
    ):
        code, out, err = cli(capsys, monkeypatch, *args, *more)
        assert code == 2 and err.strip().count("\n") == 0 and message in err, (more, err)
