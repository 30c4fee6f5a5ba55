"""The reliability checks (``bench.sweep.checks``): each on a toy model built to trip it and on
the plain toy model, which passes them all; their values against closed forms; stored with the
run, in one line at the end of ``bench run`` and beside the table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.sweep.checks import PROBES, Check, Probe, black_box_check, run_probes, summary_line
from bench.sweep.pairs import PairQueue
from bench.sweep.prepare import sample_probe
from results.store import ResultStore
from results.tables import paper_layout, to_markdown
from results.views import Selection
from tests.sweep_fixtures import ToyDataset, ToyNet, toy_graph
from tests.test_sweep_runner import sweep, toy_config


class Quantised(nn.Module):
    """Images rounded to 1/4 steps before the toy net, on the images whose first pixel is above
    ``above`` (all of them by default): a zero input gradient there, as a quantising defense."""

    def __init__(self, above: float = -1.0) -> None:
        super().__init__()
        self.net, self.above = ToyNet(toy_graph().n), above

    def forward(self, x):
        gate = (x[:, :1, :1, :1] > self.above).to(x.dtype)
        return self.net(gate * (x * 4).round() / 4 + (1 - gate) * x)


class Noisy(nn.Module):
    """Gaussian noise on the input at every call: a randomised model."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ToyNet(toy_graph().n)

    def forward(self, x):
        return self.net(x + 0.05 * torch.randn_like(x))


class Sigmoid(nn.Module):
    """Probabilities instead of logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ToyNet(toy_graph().n)

    def forward(self, x):
        return torch.sigmoid(self.net(x))


def probe(model: nn.Module, pairs: int = 8) -> Probe:
    """The probe a toy sweep makes: its queue's first pairs (clean predictions of the plain toy
    net, so the same pairs whatever the model), ε 0.06, 20 iterations."""
    from bench.sweep.planning import clean_predictions, plan_combinations

    graph = toy_graph()
    data = ToyDataset("test", graph)
    clean = clean_predictions(ToyNet(graph.n).eval(), data, graph)
    planned = [c for c in plan_combinations(clean, graph, (1, 2), 2) if c.images]
    from kg.closure import GraphTensors

    descendants = torch.stack([GraphTensors(graph).reach[list(c.members)].any(0) for c in planned])
    queue = PairQueue(planned, clean, [], set(), GraphTensors(graph), descendants, data)
    config = toy_config(iterations=20)
    return sample_probe(model.eval(), queue, config)


def statuses(model: nn.Module) -> dict[str, str]:
    torch.manual_seed(0)
    return {c.name: c.status for c in run_probes(probe(model))}


def test_the_plain_toy_model_passes_every_check():
    assert statuses(ToyNet(toy_graph().n)) == {name: "pass" for name in PROBES.names()}


@pytest.mark.parametrize(
    ("model", "flagged"),
    [
        (Quantised(), {"gradients", "loss-progress", "unbounded-eps"}),
        (Noisy(), {"randomness"}),
        (Sigmoid(), {"probabilities"}),
    ],
    ids=["quantised", "noisy", "sigmoid"],
)
def test_each_check_trips_on_the_model_built_for_it(model, flagged):
    found = statuses(model)
    assert {name for name, status in found.items() if status == "flag"} >= flagged, found
    if not isinstance(model, Noisy):
        assert found["randomness"] == "pass", "a deterministic model is not called randomised"


def test_the_zero_gradient_share_is_the_share_of_quantised_images():
    """Half-quantised: the images whose first pixel is above the sample's median pixel; the check's
    value is the share of those images, counted here from the pixels."""
    sample = probe(ToyNet(toy_graph().n))
    first = sample.images[:, 0, 0, 0]
    threshold = float(first.median())
    expected = float((first > threshold).float().mean())
    model = Quantised(above=threshold).eval()
    (check,) = run_probes(Probe(model, sample.images, sample.targets, sample.eps, sample.iterations), ["gradients"])
    assert check.value == pytest.approx(expected) and 0 < expected < 1


def test_black_box_check_against_hand_made_rates():
    square = "square"
    rates = [(0.01, "gmla", 0.4), (0.01, "mla-u", 0.5), (0.01, square, 0.3), (0.03, "gmla", 0.6), (0.03, square, 0.7)]
    check = black_box_check(rates)
    assert check.status == "flag" and check.value == pytest.approx(0.1) and "ε = 0.03" in check.detail
    assert black_box_check(rates[:3]).status == "pass" and black_box_check(rates[:3]).value == pytest.approx(-0.2)
    assert black_box_check([(0.01, "gmla", 0.4)]).status == "skip"


def test_summary_line_names_each_flag_and_counts_the_rest():
    checks = [Check("a", "pass", 0.0, "fine"), Check("b", "flag", 1.0, "broken; do this"), Check("c", "skip", None, "")]
    assert summary_line(checks) == "checks: ⚠ b: broken; do this (1 pass, 1 skip)"
    assert summary_line(checks[:1]) == "checks: 1 pass"


def test_a_sweep_stores_its_checks_and_the_table_flags_them(tmp_path):
    graph = toy_graph()
    config = toy_config(attacks=("gmla", "mla-u", "square"), sizes=(1,), iterations=5, steps={"square": 200})
    plain = sweep(tmp_path / "plain.duckdb", config, model=ToyNet(graph.n).eval())
    assert {c.name: c.status for c in plain.checks} == {name: "pass" for name in (*PROBES.names(), "black-box")}
    quantised = sweep(tmp_path / "q.duckdb", config, model=Quantised().eval())
    flagged = {c.name for c in quantised.checks if c.flagged}
    assert {"gradients", "loss-progress", "unbounded-eps", "black-box"} <= flagged, quantised.checks
    assert [c[0] for c in ResultStore(tmp_path / "q.duckdb").checks(quantised.run_id)] == sorted(
        c.name for c in quantised.checks
    )
    with ResultStore(tmp_path / "q.duckdb", create=False).reader() as con:
        table = to_markdown(paper_layout(con, [quantised.run_id], Selection(1)))
    assert f"⚠ run {quantised.run_id}, check gradients: the input gradient of the loss is exactly zero" in table
    with ResultStore(tmp_path / "plain.duckdb", create=False).reader() as con:
        assert "⚠" not in to_markdown(paper_layout(con, [plain.run_id], Selection(1)))


def test_bench_run_ends_with_the_checks_line(tmp_path, capsys, monkeypatch):
    from tests.cli_main import cli

    monkeypatch.setenv("COLUMNS", "400")
    args = ["run", "-d", "sweep-toy", "--image-size", "8", "--attack", "gmla,mla-u", "--size", "1", "--eps", "0.06"]
    args += ["--iterations", "5", "--images-per-combo", "2", "--preset", "fast", "--db", str(tmp_path / "r.duckdb")]
    code, out, err = cli(capsys, monkeypatch, *args, "-m", "tests.test_checks:Quantised")
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("checks: ")]
    assert "⚠ gradients: the input gradient of the loss is exactly zero on 100% of 8 pairs" in line, line
    assert "⚠ unbounded-eps: MLA-U with ε = 1" in line and line.endswith("(2 pass, 1 skip)"), line
