"""The one call (``bench.benchmark``) and the label-only adapter (``ExtendedLogits``): the call's
rows equal ``run_sweep``'s on the same model, images and settings; the adapter's abstract
logits equal a brute-force maximum over each node's descendant labels (networkx), so every
prediction it makes is consistent above the labels; a user's CSV of edges gives the graph
networkx draws from the same pairs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import networkx as nx
import pandas
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import bench
from bench.errors import BenchError
from bench.models.adapters import ExtendedLogits, OutputOrder
from kg.catalog import read_edges_csv
from kg.closure import GraphTensors, global_consistency
from tests.dags import dags
from tests.sweep_fixtures import LABELS, ToyDataset, ToyNet, toy_graph
from tests.test_sweep_runner import TOY, fetch, sweep, toy_config

ROOT = Path(__file__).resolve().parents[1]
ROWS = "SELECT * EXCLUDE (run_id, seconds, machine) FROM results ORDER BY combo_id, image_id, attack, eps, tau"


class LabelsOnly(nn.Module):
    """A classifier over the dataset's labels alone: the toy model's label logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ToyNet(toy_graph().n)

    def forward(self, images):
        return self.net(images)[:, : len(LABELS)]


def save_torchscript(model: nn.Module, path: Path) -> None:
    """A TorchScript archive of ``model`` (torch.jit is deprecated in favour of torch.export, but
    users still hold such files)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, torch.rand(1, 3, 8, 8)).save(str(path))


def test_the_call_gives_run_sweeps_rows(tmp_path):
    graph = toy_graph()
    options = {"attacks": ("gmla", "mla-u", "ml-dp"), "sizes": (1, 2), "iterations": 10, "images_per_combination": 2}
    sweep(tmp_path / "sweep.duckdb", toy_config(**options, eps=(0.06,)), batch_size=8)

    def call():
        return bench.benchmark(
            ToyNet(graph.n), ToyDataset("test", graph), preset=TOY, eps=0.06, db=tmp_path / "call.duckdb",
            batch_size=8, progress=False, device="cpu", **options,
        )  # fmt: skip

    result = call()
    assert result.fitted == "extended labels"
    expected = fetch(tmp_path / "sweep.duckdb", ROWS)
    assert expected and fetch(result.db, ROWS) == expected, "the call's rows are bench run's"
    frame = result.rows()
    assert len(frame) == len(expected) and set(frame["attack"]) == {"gmla", "mla-u", "ml-dp"}
    summary = result.summary()
    assert set(summary["size"]) == {1, 2} and (summary["run_id"] == result.run_id).all()
    table = result.table(size=1)
    assert "= 1; ε = 0.06" in table and "| GMLA |" in table and "| MLA-U |" in table, table
    assert dict(zip(result.checks()["name"], result.checks()["status"])) == {
        **dict.fromkeys(("gradients", "loss-progress", "probabilities", "randomness", "unbounded-eps"), "pass"),
        "black-box": "skip",
    }
    again = call()
    assert again.run_id == result.run_id and again.outcome.written == 0, "the same call finds its run done"


def test_in_memory_results_are_the_files_and_leave_nothing_on_disk(tmp_path, monkeypatch):
    graph = toy_graph()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    options = {"attacks": "gmla,mla-u", "sizes": (1, 2), "iterations": 5, "images_per_combination": 2, "eps": 0.06}
    common = {"preset": TOY, "batch_size": 8, "progress": False, "device": "cpu", **options}
    on_disk = bench.benchmark(ToyNet(graph.n), ToyDataset("test", graph), db=tmp_path / "r.duckdb", **common)
    in_memory = bench.benchmark(ToyNet(graph.n), ToyDataset("test", graph), db=":memory:", **common)
    assert in_memory.db is None and list((tmp_path / "tmp").iterdir()) == [], "no file is kept"
    assert in_memory.run_id == on_disk.run_id
    rows = [
        tuple(tuple(v) if isinstance(v, list) else v for v in r) for r in in_memory.connection.execute(ROWS).fetchall()
    ]
    assert rows == fetch(on_disk.db, ROWS)
    assert in_memory.table(size=2) == on_disk.table(size=2)
    pandas.testing.assert_frame_equal(in_memory.summary(), on_disk.summary(), rtol=1e-12)  # avg's summing order


def test_a_label_only_model_on_images_and_a_csv_graph(tmp_path):
    graph = toy_graph()
    csv = tmp_path / "mine.csv"
    csv.write_text("parent,child\n" + "".join(f"{graph.nodes[p]},{graph.nodes[c]}\n" for p, c in graph.edges))
    images = torch.stack([ToyDataset("test", graph)[i][0] for i in range(12)])
    shuffled = list(reversed(LABELS))
    model = OutputOrder(LabelsOnly(), list(LABELS), shuffled)  # its outputs in another order than the graph's
    result = bench.benchmark(
        model,
        images,
        labels=shuffled,
        graph=csv,
        attacks="gmla,mla-u",
        sizes=1,
        eps=0.06,
        iterations=5,
        images_per_combination=2,
        preset=TOY,
        db=tmp_path / "r.duckdb",
        progress=False,
        device="cpu",
    )
    assert result.fitted == "dataset labels; abstract nodes: max over descendant labels"
    assert result.graph.nodes[: len(LABELS)] == tuple(shuffled), "the graph's labels in the model's order"
    assert len(result.rows()) > 0 and set(result.rows()["image_id"]) <= {f"images/{i:05d}" for i in range(12)}
    with pytest.raises(BenchError, match="the model has 6 outputs but 5 labels were named"):
        bench.benchmark(model, images, labels=shuffled[:5], graph=csv, progress=False)
    with pytest.raises(BenchError, match=r"the model has 6 outputs, but graph 'toy' has 5 labels and 8 nodes"):
        bench.benchmark(model, images, labels=None, graph=_five_label_graph(tmp_path), progress=False)


def _five_label_graph(tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("parent,child\npet,cat\npet,dog\nanimal,pet\nvehicle,car\nvehicle,bus\n")
    return read_edges_csv(path, ["cat", "dog", "car", "bus", "lion"])


def test_bad_inputs_are_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("parent,child\nanimal\n")
    with pytest.raises(BenchError, match=r"row 1 is not 'parent,child'"):
        read_edges_csv(bad, ["cat"])
    with pytest.raises(BenchError, match=r"images must be \[N, 3, S, S\]"):
        bench.benchmark(nn.Identity(), torch.rand(2, 8, 8), labels=["a"], graph="stamps", progress=False)
    with pytest.raises(BenchError, match="images must lie in"):
        bench.benchmark(nn.Identity(), torch.rand(2, 3, 8, 8) * 2, labels=["a"], graph="stamps", progress=False)
    with pytest.raises(BenchError, match="give a torch.nn.Module"):
        bench.benchmark(lambda x: x, torch.rand(2, 3, 8, 8), graph="stamps", progress=False)


@given(dags(max_nodes=9), st.integers(0, 2**31 - 1))
def test_the_adapter_is_the_max_over_descendant_labels(graph, seed):
    """Against networkx: each abstract node's logit is the largest of its descendant labels';
    the adapted predictions are globally consistent wherever no label is another's ancestor."""
    if any(not any(d < graph.n_labels for d in graph.descendants(v)) for v in range(graph.n_labels, graph.n)):
        with pytest.raises(BenchError, match="has no dataset label below it"):
            ExtendedLogits(nn.Identity(), graph)
        return
    logits = torch.randn(5, graph.n_labels, generator=torch.Generator().manual_seed(seed))
    out = ExtendedLogits(nn.Identity(), graph)(logits)
    g = nx.DiGraph(list(graph.edges))
    g.add_nodes_from(range(graph.n))
    for v in range(graph.n):
        if v < graph.n_labels:
            assert torch.equal(out[:, v], logits[:, v])
        else:
            below = [d for d in nx.descendants(g, v) if d < graph.n_labels]
            assert torch.equal(out[:, v], logits[:, below].amax(dim=1)), (v, below)
    labels_nested = any(a < graph.n_labels for v in range(graph.n_labels) for a in nx.ancestors(g, v))
    if not labels_nested:
        assert bool(global_consistency(out > 0, GraphTensors(graph)).all()), "adapted predictions are consistent"


def test_the_adapter_passes_gradients_to_the_deciding_label():
    graph = toy_graph()
    logits = torch.tensor([[0.5, -1.0, 2.0, -3.0, 0.1, -0.2]], requires_grad=True)
    out = ExtendedLogits(nn.Identity(), graph)(logits)
    out[0, graph.index("animal")].backward()
    assert logits.grad.tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]], "animal's logit is lion's (the largest below)"


def test_edges_csv_against_networkx(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("# my hierarchy\nparent,child\nanimal,pet\npet,cat\npet,dog\nanimal,lion\n\nthing,animal\n")
    graph = read_edges_csv(path, ["cat", "dog", "lion"])
    assert graph.name == "h" and graph.labels == ("cat", "dog", "lion") and graph.n == 6
    named = {(graph.nodes[p], graph.nodes[c]) for p, c in graph.edges}
    reference = nx.DiGraph([("animal", "pet"), ("pet", "cat"), ("pet", "dog"), ("animal", "lion"), ("thing", "animal")])
    assert named == set(reference.edges)
    for v in graph.nodes:
        assert {graph.nodes[a] for a in graph.ancestors(v)} == nx.ancestors(reference, v), v


def test_the_readme_quick_start_runs_as_printed(tmp_path, monkeypatch):
    """The README's Python block, as printed, in a fresh folder: it prints the paper's table."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own model, one call", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    assert len(code.strip().splitlines()) <= 10, "the quick start stays within ten lines"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "| GMLA |" in done.stdout and "| MLA-C |" in done.stdout, done.stdout
    assert (tmp_path / "mine.csv").exists()


def test_the_cli_takes_your_model_as_a_factory_torchscript_or_state_dict(tmp_path):
    """``bench run -m mine:make`` imports your module from the current folder, fits a label-only
    model to the graph, and refuses a bad factory in one line."""
    (tmp_path / "mine.py").write_text(
        "from tests.test_api import LabelsOnly\n"
        "def make():\n    return LabelsOnly()\n"
        "def text():\n    return 'a model'\n"
    )
    launch = "import tests.sweep_fixtures; from bench.cli import main; main()"

    def bench_run(model, *more):
        args = ["run", "-d", "sweep-toy", "-m", model, "--image-size", "8", "--attack", "gmla,mla-u", "--size", "1"]
        args += ["--eps", "0.06", "--iterations", "5", "--images-per-combo", "2", "--preset", "fast", *more]
        return subprocess.run(
            [sys.executable, "-c", launch, *args, "--db", str(tmp_path / "r.duckdb")],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=600,
        )

    done = bench_run("mine:make")
    assert done.returncode == 0, done.stderr
    factory_rows = fetch(tmp_path / "r.duckdb", ROWS)
    assert "mine:make: outputs fitted to graph 'sweep-toy' as dataset labels; abstract nodes: max over" in done.stdout
    assert fetch(tmp_path / "r.duckdb", "SELECT count(*) FROM results")[0][0] > 0
    # the same model as a TorchScript file (with the opt-in: it runs its own code), then the same rows
    save_torchscript(LabelsOnly(), tmp_path / "mine.pt")
    (tmp_path / "r.duckdb").unlink()
    done = bench_run("mine.pt", "--trust-checkpoint")
    assert done.returncode == 0, done.stderr
    assert fetch(tmp_path / "r.duckdb", ROWS) == factory_rows, "TorchScript and module:factory give the same rows"
    # a plain state dict of a torchvision ResNet-18 over the six labels, with --arch
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=len(LABELS)).state_dict(), tmp_path / "r18.pth")
    done = bench_run("r18.pth", "--arch", "resnet18")
    assert done.returncode == 0 and "resnet18:r18.pth: outputs fitted to graph 'sweep-toy' as dataset labels" in (
        done.stdout
    ), done.stderr + done.stdout


def test_your_model_files_and_factories_refused_in_one_line(tmp_path, monkeypatch):
    """What ``bench run -m`` refuses (a BenchError: one line, exit 2), each with its reason."""
    from bench.cli import error_message
    from bench.sweep.inputs import load_sweep_model

    (tmp_path / "mine2.py").write_text(
        "def text():\n    return 'a model'\ndef boom():\n    raise ValueError('no GPU')\n"
    )
    save_torchscript(LabelsOnly(), tmp_path / "mine.pt")
    torch.save(torchvision.models.resnet18(num_classes=len(LABELS)).state_dict(), tmp_path / "r18.pth")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = (
        ("nosuch:make", {}, "nosuch:make: module nosuch does not import: No module named 'nosuch'"),
        ("mine2:absent", {}, "mine2:absent: mine2 has no callable absent"),
        ("mine2:text", {}, "mine2:text: text() returned a str, not a torch.nn.Module"),
        ("mine2:boom", {}, "mine2:boom: boom() failed: no GPU"),
        (
            "mine.pt",
            {},
            "mine.pt is a TorchScript archive, which runs its own code when loaded: pass --trust-checkpoint",
        ),
        ("r18.pth", {"arch": "resnet34"}, "r18.pth does not fit resnet34: "),
        ("r18.pth", {"arch": "resnet-18"}, "unknown timm architecture 'resnet-18'"),
    )
    for model, options, message in cases:
        with pytest.raises(BenchError) as refused:
            load_sweep_model("sweep-toy", model, torch.device("cpu"), **options)
        assert error_message(refused.value).startswith(message), (model, error_message(refused.value))
