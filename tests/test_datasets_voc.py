"""VOC loader on a tiny VOCdevkit the test writes: labels by hand, ancestors against networkx."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from bench.datasets import UndecodableImage, batches, create_dataset
from bench.datasets.voc import VOC_CLASSES
from bench.errors import BenchError
from kg.catalog import load_graph
from kg.graph import LabelGraph
from tests.dags import expected_extended

# Hand-written annotations: image id → [(class, difficult)].
OBJECTS = {
    "000001": [("dog", 0), ("person", 1)],
    "000002": [("car", 0), ("car", 1), ("bus", 0)],
    "000003": [("cat", 1)],
    "000004": [("sheep", 0), ("cow", 0), ("tvmonitor", 0)],
    "000005": [("aeroplane", 0)],
}
SPLIT_IDS = {"train": ["000001", "000002"], "test": ["000003", "000004", "000005"]}
# Expected positives per image under each difficult rule, computed by hand.
POSITIVE = {
    "000001": {"dog", "person"},
    "000002": {"car", "bus"},
    "000003": {"cat"},
    "000004": {"sheep", "cow", "tvmonitor"},
    "000005": {"aeroplane"},
}
NON_DIFFICULT = {**POSITIVE, "000001": {"dog"}, "000003": set()}


def small_voc_graph() -> LabelGraph:
    """The 20 VOC classes in a shuffled order plus abstract nodes (a DAG: 'pet' has two parents' worth)."""
    labels = list(reversed(VOC_CLASSES))
    abstract = ["vehicle", "animal", "mammal", "pet", "furniture"]
    nodes = labels + abstract
    ix = {n: i for i, n in enumerate(nodes)}
    edges = [("vehicle", c) for c in ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train")]
    edges += [("animal", "bird"), ("animal", "mammal"), ("animal", "person")]
    edges += [("mammal", c) for c in ("cat", "cow", "dog", "horse", "sheep")]
    edges += [("pet", "cat"), ("pet", "dog")]
    edges += [("furniture", c) for c in ("chair", "diningtable", "sofa")]
    return LabelGraph("voc-test", tuple(nodes), tuple((ix[p], ix[c]) for p, c in edges), n_labels=20)


def write_voc(root, year=2007, ids=OBJECTS, splits=SPLIT_IDS, size=(48, 32)):
    base = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for k, (image_id, objs) in enumerate(ids.items()):
        xml = "".join(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
            f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
            for name, d in objs
        )
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>{xml}</annotation>"
        )
        Image.new("RGB", size, (40 * k, 255, 0)).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
    for split, members in splits.items():
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in members))
    return base


@pytest.fixture
def voc_root(tmp_path):
    write_voc(tmp_path)
    return tmp_path


@pytest.mark.parametrize("difficult, table", [("positive", POSITIVE), ("negative", NON_DIFFICULT)])
def test_labels_match_hand_computed_with_ancestors(voc_root, difficult, table):
    graph = small_voc_graph()
    for split, ids in SPLIT_IDS.items():
        ds = create_dataset("voc", split, root=voc_root, image_size=16, graph=graph, difficult=difficult)
        assert [ds.image_id(i) for i in range(len(ds))] == ids, f"{split}: image order differs from the split file"
        targets = ds.targets()
        for i, image_id in enumerate(ids):
            want = expected_extended(graph, table[image_id])
            assert torch.equal(targets[i], torch.from_numpy(want)), (
                f"{image_id} ({difficult}): got {[graph.nodes[j] for j in torch.nonzero(targets[i]).flatten()]}, "
                f"want {[graph.nodes[j] for j in np.nonzero(want)[0]]}"
            )
            assert torch.equal(ds[i][1], targets[i]), f"{image_id}: __getitem__ target differs from targets()"


def test_image_is_resized_center_cropped_in_unit_range(tmp_path):
    base = write_voc(tmp_path, ids={"000001": [("dog", 0)]}, splits={"test": ["000001"]})
    # 60x20 image: red | green | blue thirds. Resize(10) -> 30x10, CenterCrop(10) keeps the green middle.
    im = np.zeros((20, 60, 3), dtype=np.uint8)
    im[:, :20, 0] = 255
    im[:, 20:40, 1] = 255
    im[:, 40:, 2] = 255
    Image.fromarray(im).save(base / "JPEGImages" / "000001.jpg", quality=100)
    image, _ = create_dataset("voc", "test", root=tmp_path, image_size=10, graph=small_voc_graph())[0]
    assert image.shape == (3, 10, 10) and image.dtype == torch.float32, f"got {tuple(image.shape)} {image.dtype}"
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0, "pixels leave [0, 1] (normalised?)"
    centre = image[:, 2:8, 2:8].mean((1, 2))
    assert centre[1] > 0.9 and centre[0] < 0.1 and centre[2] < 0.1, (
        f"centre crop is not the green third: {centre.tolist()}"
    )


@pytest.mark.parametrize("sub", ["", "VOCdevkit", "VOCdevkit/VOC2007"])
def test_root_may_point_at_any_level(voc_root, sub):
    ds = create_dataset("voc", "test", root=voc_root / sub if sub else voc_root, graph=small_voc_graph())
    assert len(ds) == 3, f"root {sub or '.'}: {len(ds)} images"
    assert ds.image_size == 224, "VOC's default image size is the paper's 224"


def test_voc2012_and_the_packaged_graph(tmp_path):
    write_voc(tmp_path, year=2012, splits={"val": ["000004", "000005"]})
    ds = create_dataset("voc", "val", root=tmp_path, year=2012)
    graph = load_graph("voc")
    assert ds.graph.sha256 == graph.sha256, "default graph is not the packaged voc graph"
    for i, image_id in enumerate(["000004", "000005"]):
        want = expected_extended(graph, POSITIVE[image_id])
        assert torch.equal(ds.targets()[i], torch.from_numpy(want)), f"{image_id}: extended labels differ from networkx"


def test_missing_root_names_path_and_layout(tmp_path):
    with pytest.raises(BenchError, match=r"does not exist; expected VOCdevkit/VOC<year>/ with Annotations") as err:
        create_dataset("voc", "test", root=tmp_path / "nowhere", graph=small_voc_graph())
    assert str(tmp_path / "nowhere") in str(err.value), f"path missing from: {err.value}"


def test_missing_file_is_named(voc_root):
    (voc_root / "VOCdevkit/VOC2007/JPEGImages/000004.jpg").unlink()
    (voc_root / "VOCdevkit/VOC2007/JPEGImages/000005.jpg").unlink()
    with pytest.raises(BenchError, match=r"JPEGImages/000004\.jpg is missing and 1 more"):
        create_dataset("voc", "test", root=voc_root, graph=small_voc_graph())
    with pytest.raises(BenchError, match=r"ImageSets/Main/val\.txt is missing"):
        create_dataset("voc", "val", root=voc_root, graph=small_voc_graph())


def test_bad_names_suggest_close_ones(voc_root):
    with pytest.raises(BenchError, match=r"unknown VOC split 'tset' \(did you mean 'test'"):
        create_dataset("voc", "tset", root=voc_root)
    (voc_root / "VOCdevkit/VOC2007/Annotations/000005.xml").write_text(
        "<annotation><object><name>aeroplan</name></object></annotation>"
    )
    with pytest.raises(BenchError, match=r"unknown VOC class in .*000005\.xml: 'aeroplan' \(did you mean 'aeroplane'"):
        create_dataset("voc", "test", root=voc_root, graph=small_voc_graph())


def test_undecodable_image_is_skipped_counted_and_reported_once(voc_root, caplog):
    (voc_root / "VOCdevkit/VOC2007/JPEGImages/000004.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    ds = create_dataset("voc", "test", root=voc_root, image_size=16, graph=small_voc_graph())
    with pytest.raises(UndecodableImage, match=r"000004\.jpg does not decode"):
        ds[1]
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        got = [(int(i), t) for _, targets, idx in batches(ds, batch_size=2) for i, t in zip(idx, targets)]
    assert [i for i, _ in got] == [0, 2], f"batches yielded indices {[i for i, _ in got]}, want [0, 2]"
    assert all(torch.equal(t, ds.targets()[i]) for i, t in got), "a batch target does not belong to its index"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 1 image(s)" in warnings[0] and "000004.jpg" in warnings[0], (
        f"warnings: {warnings}"
    )
