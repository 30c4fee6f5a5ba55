"""Open Images loader on tiny CSVs in the V6 layout: labels by hand, ancestors against networkx."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import kg
from bench.datasets import create_dataset
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.graph import LabelGraph
from tests.dags import expected_extended

DESCRIPTIONS = [
    ("/m/animal", "Animal"),
    ("/m/cat", "Cat"),
    ("/m/dog", "Dog"),
    ("/m/car", "Car"),
    ("/m/vehicle", "Vehicle"),
    ("/m/tree", "Tree"),
]
ROWS = [  # ImageID,Source,LabelName,Confidence
    ("aa01", "verification", "/m/cat", 1),
    ("aa01", "crowdsource-verification", "/m/dog", 0),  # verified negative
    ("aa01", "verification", "/m/0nonbox", 1),  # not a boxable class: ignored
    ("aa02", "verification", "/m/car", 1),
    ("aa02", "verification", "/m/car", 1),  # duplicate row
    ("aa02", "verification", "/m/animal", 1),  # a label that is also an ancestor
    ("aa03", "verification", "/m/tree", 0),  # only a negative
    ("aa04", "verification", "/m/dog", 1),  # image not downloaded
]
EXPECTED = {"aa01": {"Cat"}, "aa02": {"Car", "Animal"}, "aa03": set()}


def oi_graph() -> LabelGraph:
    """Graph over the boxable MIDs (ids), node names = display names, one abstract node."""
    nodes = ["Tree", "Car", "Dog", "Cat", "Animal", "Vehicle", "Thing"]
    ids = ["/m/tree", "/m/car", "/m/dog", "/m/cat", "/m/animal", "/m/vehicle", ""]
    ix = {n: i for i, n in enumerate(nodes)}
    edges = [("Animal", "Cat"), ("Animal", "Dog"), ("Vehicle", "Car"), ("Thing", "Animal"), ("Thing", "Vehicle")]
    return LabelGraph("oi-test", tuple(nodes), tuple((ix[p], ix[c]) for p, c in edges), n_labels=6, ids=tuple(ids))


def write_oi(root, split="validation", rows=ROWS, name=None, header="ImageID,Source,LabelName,Confidence"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "class-descriptions-boxable.csv").write_text("".join(f"{m},{d}\n" for m, d in DESCRIPTIONS))
    name = name or f"{split}-annotations-human-imagelabels.csv"
    (root / name).write_text(header + "\n" + "".join(f"{i},{s},{m},{c}\n" for i, s, m, c in rows))
    (root / split).mkdir(exist_ok=True)
    for k, image_id in enumerate(["aa01", "aa02", "aa03", "zz99"]):  # zz99: on disk, not in the CSV
        Image.new("RGB", (24, 36), (60 * k, 0, 255)).save(root / split / f"{image_id}.jpg")
    return root


@pytest.mark.parametrize("split, alias", [("validation", "val"), ("test", "test")])
def test_labels_match_hand_computed_with_ancestors(tmp_path, caplog, split, alias):
    write_oi(tmp_path, split=split)
    graph = oi_graph()
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        ds = create_dataset("openimages", alias, root=tmp_path, image_size=16, graph=graph)
    assert ds.split == split and [ds.image_id(i) for i in range(len(ds))] == list(EXPECTED), "wrong split or images"
    for i, (image_id, positives) in enumerate(EXPECTED.items()):
        want = torch.from_numpy(expected_extended(graph, positives))
        assert torch.equal(ds.targets()[i], want), f"{image_id}: got {ds.targets()[i].tolist()}, want {want.tolist()}"
    image, _ = ds[0]
    assert image.shape == (3, 16, 16) and float(image.max()) <= 1.0, "image is not Resize/CenterCrop/ToTensor"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 4 images" in warnings[0] and "aa04.jpg" in warnings[0], f"{warnings}"


def test_v6_train_file_name_and_default_size(tmp_path):
    write_oi(tmp_path, split="train", name="oidv6-train-annotations-human-imagelabels.csv")
    ds = create_dataset("openimages", "train", root=tmp_path, graph=oi_graph())
    assert len(ds) == 3 and ds.image_size == 448, f"{len(ds)} images at {ds.image_size} px"


def test_bad_input(tmp_path):
    write_oi(tmp_path, header="ImageID,LabelName,Confidence")
    with pytest.raises(BenchError, match=r"does not start with the header ImageID,Source,LabelName,Confidence"):
        create_dataset("openimages", "validation", root=tmp_path, graph=oi_graph())
    with pytest.raises(BenchError, match=r"test-annotations-human-imagelabels\.csv is missing"):
        create_dataset("openimages", "test", root=tmp_path, graph=oi_graph())
    with pytest.raises(BenchError, match=r"unknown Open Images split 'valdation' \(did you mean 'validation'"):
        create_dataset("openimages", "valdation", root=tmp_path, graph=oi_graph())
    (tmp_path / "class-descriptions-boxable.csv").unlink()
    with pytest.raises(BenchError, match=r"class-descriptions-boxable\.csv is missing"):
        create_dataset("openimages", "validation", root=tmp_path, graph=oi_graph())


def test_graph_label_without_description(tmp_path):
    write_oi(tmp_path)
    g = oi_graph()
    bad = LabelGraph("oi-bad", g.nodes, g.edges, g.n_labels, ids=("/m/nope",) + g.ids[1:])
    with pytest.raises(BenchError, match=r"labels whose MID is not in class-descriptions-boxable\.csv: Tree"):
        create_dataset("openimages", "validation", root=tmp_path, graph=bad)


def test_packaged_graph_with_the_official_class_file(tmp_path):
    graph = load_graph("openimages")
    official = Path(kg.__file__).parent / "data" / "openimages" / "class-descriptions-boxable.csv"
    write_oi(tmp_path, rows=[("aa01", "verification", graph.ids[0], 1), ("aa02", "verification", graph.ids[-1], 1)])
    shutil.copy(official, tmp_path / "class-descriptions-boxable.csv")
    ds = create_dataset("openimages", "validation", root=tmp_path)
    assert ds.graph.sha256 == graph.sha256 and len(ds) == 2, "default graph is not the packaged openimages graph"
    for i, positive in enumerate([graph.nodes[0], graph.nodes[-1]]):
        want = torch.from_numpy(expected_extended(graph, {positive}))
        assert torch.equal(ds.targets()[i], want), f"{positive}: extended labels differ from networkx ancestors"
