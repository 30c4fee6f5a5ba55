"""NUS-WIDE loader on a tiny copy in the released layout: labels by hand, ancestors against networkx."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from bench.datasets import create_dataset
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.graph import LabelGraph
from tests.dags import expected_extended

CONCEPTS = ["animal", "dog", "cat", "sky", "water"]
# Each split: (image-list line, {positive concepts}); the lines use both Windows forms.
SPLITS = {
    "Train": [
        (r"dog\0001_100.jpg", {"animal", "dog"}),
        (r"C:\ImageData\Flickr\sky\0002_200.jpg", {"sky"}),
        (r"cat\0003_300.jpg", {"animal", "cat", "water"}),
    ],
    "Test": [
        (r"water\0004_400.jpg", {"water", "sky"}),
        (r"dog\0005_500.jpg", set()),
        (r"cat\0006_600.jpg", {"cat"}),
    ],
}


def nus_graph() -> LabelGraph:
    """The five concepts (a shuffled order) and two abstract nodes; 'animal' is a label with children."""
    nodes = ["water", "cat", "sky", "dog", "animal", "nature", "pet"]
    ix = {n: i for i, n in enumerate(nodes)}
    edges = [
        ("animal", "dog"),
        ("animal", "cat"),
        ("pet", "dog"),
        ("pet", "cat"),
        ("nature", "sky"),
        ("nature", "water"),
    ]
    return LabelGraph("nus-test", tuple(nodes), tuple((ix[p], ix[c]) for p, c in edges), n_labels=5)


def write_nus(root, concepts=CONCEPTS, splits=SPLITS, skip_images=()):
    (root / "ImageList").mkdir(parents=True)
    (root / "Groundtruth" / "TrainTestLabels").mkdir(parents=True)
    (root / "Concepts81.txt").write_text("".join(f"{c}\n" for c in concepts))
    for split, rows in splits.items():
        (root / "ImageList" / f"{split}Imagelist.txt").write_text("".join(f"{line}\r\n" for line, _ in rows))
        for c in concepts:
            values = "".join(f"{int(c in pos)}\n" for _, pos in rows)
            (root / "Groundtruth" / "TrainTestLabels" / f"Labels_{c}_{split}.txt").write_text(values)
        for k, (line, _) in enumerate(rows):
            rel = "/".join(line.split("\\")[-2:])
            if rel in skip_images:
                continue
            (root / "Flickr" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (30, 20), (10 * k, 80, 200)).save(root / "Flickr" / rel)
    return root


@pytest.mark.parametrize("split", ["train", "test"])
def test_labels_match_hand_computed_with_ancestors(tmp_path, split):
    write_nus(tmp_path)
    graph = nus_graph()
    ds = create_dataset("nus", split, root=tmp_path, image_size=12, graph=graph)
    rows = SPLITS[split.capitalize()]
    assert len(ds) == len(rows), f"{len(ds)} images, want {len(rows)}"
    for i, (line, positives) in enumerate(rows):
        assert ds.image_id(i) == "/".join(line.split("\\")[-2:]), f"image id {ds.image_id(i)} for line {line!r}"
        want = torch.from_numpy(expected_extended(graph, positives))
        image, target = ds[i]
        assert torch.equal(target, want), f"{line}: got {target.tolist()}, want {want.tolist()}"
        assert image.shape == (3, 12, 12) and 0 <= float(image.min()) <= float(image.max()) <= 1, (
            f"{line}: bad image tensor"
        )


def test_missing_images_are_left_out_with_one_warning(tmp_path, caplog):
    write_nus(tmp_path, skip_images={"dog/0005_500.jpg"})
    graph = nus_graph()
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        ds = create_dataset("nus", "test", root=tmp_path, graph=graph)
    assert [ds.image_id(i) for i in range(len(ds))] == ["water/0004_400.jpg", "cat/0006_600.jpg"], "wrong images kept"
    want = torch.from_numpy(np.stack([expected_extended(graph, {"water", "sky"}), expected_extended(graph, {"cat"})]))
    assert torch.equal(ds.targets(), want), "labels are no longer aligned with their images after leaving one out"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 3 listed images" in warnings[0] and "dog/0005_500.jpg" in warnings[0], (
        f"{warnings}"
    )


def test_missing_and_malformed_files(tmp_path):
    write_nus(tmp_path)
    (tmp_path / "Groundtruth/TrainTestLabels/Labels_sky_Test.txt").unlink()
    with pytest.raises(BenchError, match=r"Labels_sky_Test\.txt is missing"):
        create_dataset("nus", "test", root=tmp_path, graph=nus_graph())
    (tmp_path / "Groundtruth/TrainTestLabels/Labels_cat_Train.txt").write_text("0\n1\n")
    with pytest.raises(BenchError, match=r"Labels_cat_Train\.txt has 2 values but the image list has 3 images"):
        create_dataset("nus", "train", root=tmp_path, graph=nus_graph())
    (tmp_path / "Concepts81.txt").unlink()
    with pytest.raises(BenchError, match=r"Concepts81\.txt is missing"):
        create_dataset("nus", "train", root=tmp_path, graph=nus_graph())


def test_graph_must_fit_the_concepts(tmp_path):
    write_nus(tmp_path, concepts=CONCEPTS[:4])
    with pytest.raises(BenchError, match=r"has labels that NUS-WIDE does not have: water"):
        create_dataset("nus", "test", root=tmp_path, graph=nus_graph())


def test_packaged_graph_concepts(tmp_path):
    graph = load_graph("nus")
    concepts = list(graph.labels)
    rows = [(r"a\1.jpg", {concepts[0], concepts[-1]}), (r"b\2.jpg", set(concepts[10:13]))]
    write_nus(tmp_path, concepts=concepts, splits={"Test": rows})
    ds = create_dataset("nus", "test", root=tmp_path)
    assert ds.graph.sha256 == graph.sha256 and ds.image_size == 224, "default graph / size are not nus's"
    for i, (_, positives) in enumerate(rows):
        assert torch.equal(ds.targets()[i], torch.from_numpy(expected_extended(graph, positives))), f"row {i}"
