"""The offline clip-art dataset: determinism, labels = objects pasted, graph and catalogue agree."""

from __future__ import annotations

import json
import pickle

import networkx as nx
import numpy as np
import pytest
import torch

from bench.datasets import create_dataset
from bench.datasets import stamps as st
from bench.datasets.stamps_art import CATALOGUE, STAMPS_DIR, label_table, load_sprites, require_stamps
from bench.errors import BenchError
from kg.catalog import load_graph

SMALL = st.StampsConfig(seed=7, size=64, n_train=24, n_test=16)
FILES = [f"{s}-{part}.npy" for s in st.SPLITS for part in ("images", "labels", "objects")]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return st.build_stamps(SMALL, root=tmp_path_factory.mktemp("stamps"), progress=False)


def test_same_seed_gives_identical_bytes(built, tmp_path):
    again = st.build_stamps(SMALL, root=tmp_path, progress=False)
    assert again.name == built.name, "the same config hashes to another folder"
    for name in FILES:
        assert (again / name).read_bytes() == (built / name).read_bytes(), (
            f"{name} differs between two builds with one seed"
        )
    other = st.build_stamps(st.StampsConfig(seed=8, size=64, n_train=24, n_test=16), root=tmp_path, progress=False)
    assert other != again, "another seed reuses the same cache folder"
    assert (other / "train-images.npy").read_bytes() != (again / "train-images.npy").read_bytes(), "seed has no effect"


def test_cached_build_is_reused(built, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("compose called: the cache was not reused")

    monkeypatch.setattr(st, "compose", boom)
    assert st.build_stamps(SMALL, root=built.parent, progress=False) == built, "cache folder changed"


def test_labels_are_exactly_the_visible_pasted_objects(built):
    """Independent check: re-render each recorded object and find its opaque pixels in the image."""
    sprites = load_sprites(STAMPS_DIR, SMALL.size)
    per_label = list(sprites.values())
    from PIL import Image

    for split in st.SPLITS:
        images = np.load(built / f"{split}-images.npy")
        labels = np.load(built / f"{split}-labels.npy")
        objects = np.load(built / f"{split}-objects.npy")
        assert images.shape == (SMALL.count(split), 64, 64, 3) and images.dtype == np.uint8, f"{split}: {images.shape}"
        for i in range(len(images)):
            objs = [o for o in objects[i] if o[0] >= 0]
            assert 1 <= len(objs) <= 4, f"{split}[{i}]: {len(objs)} objects"
            pasted = np.zeros(len(st.LABELS), dtype=np.uint8)
            pasted[[o[0] for o in objs]] = 1
            assert np.array_equal(labels[i], pasted), f"{split}[{i}]: labels {labels[i]} != objects {pasted}"
            assert len({o[0] for o in objs}) == len(objs), f"{split}[{i}]: a label pasted twice"
            covered = np.zeros((64, 64), dtype=bool)
            for label, stamp, x, y, w, h, flip in reversed(objs):  # last pasted is on top
                assert x >= 0 and y >= 0 and x + w <= 64 and y + h <= 64, f"{split}[{i}]: object outside the image"
                patch = st.render_sprite(Image.fromarray(per_label[label][stamp]), int(w), int(h), bool(flip))
                opaque = (patch[..., 3] == 255) & ~covered[y : y + h, x : x + w]
                assert opaque.sum() >= 0.2 * (patch[..., 3] == 255).sum(), (
                    f"{split}[{i}]: {st.LABELS[label]} mostly hidden"
                )
                region = images[i, y : y + h, x : x + w]
                assert np.array_equal(region[opaque], patch[..., :3][opaque]), (
                    f"{split}[{i}]: pixels of {st.LABELS[label]} are not where the objects table says"
                )
                covered[y : y + h, x : x + w] |= patch[..., 3] > 0


def test_targets_follow_the_graph_with_networkx_ancestors(built):
    graph = load_graph("stamps")
    ds = create_dataset(
        "stamps", "train", root=built.parent, image_size=64, seed=7, n_train=24, n_test=16, progress=False
    )
    assert ds.graph.sha256 == graph.sha256 and len(ds) == 24 and ds.image_size == 64, "wrong graph, size or length"
    g = graph.to_networkx()
    objects = np.load(built / "train-objects.npy")
    for i in range(len(ds)):
        on = {graph.index(st.LABELS[o[0]]) for o in objects[i] if o[0] >= 0}
        for v in list(on):
            on |= nx.ancestors(g, v)
        want = torch.zeros(graph.n)
        want[list(on)] = 1
        image, target = ds[i]
        assert torch.equal(target, want), f"train[{i}]: extended target differs from the networkx ancestors"
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32, f"train[{i}]: {tuple(image.shape)}"
        raw = torch.from_numpy(np.load(built / "train-images.npy")[i]).permute(2, 0, 1).float() / 255
        assert torch.equal(image, raw), f"train[{i}]: image is not ToTensor of the cached pixels"
    assert ds.image_id(3) == "stamps/train/000003", ds.image_id(3)


def test_catalogue_label_table_and_graph_agree():
    graph = load_graph("stamps")
    table = label_table()
    assert list(CATALOGUE) == list(table), "catalogue and kg/labels/stamps.csv list different labels or orders"
    assert set(graph.labels) == set(table), f"graph labels differ: {set(graph.labels) ^ set(table)}"
    assert graph.depth >= 4, f"stamps hierarchy depth {graph.depth} < 4"
    assert all(graph.ids[graph.index(lab)] == syn for lab, syn in table.items()), "graph synsets differ from the table"
    paths = [p for files in CATALOGUE.values() for p in files]
    assert len(paths) == len(set(paths)), "a stamp file is listed twice"
    require_stamps()  # every listed file exists in the installed package


def test_manifest_describes_the_build(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["config"] == {"seed": 7, "size": 64, "n_train": 24, "n_test": 16}, manifest["config"]
    assert manifest["labels"] == list(st.LABELS) and manifest["counts"]["test"]["images"] == 16, "manifest content"


def test_missing_clip_art_says_how_to_install(tmp_path):
    with pytest.raises(BenchError, match=r"install it with `sudo apt-get install tuxpaint-stamps-default`"):
        create_dataset("stamps", "test", root=tmp_path, art_dir=tmp_path / "none", n_train=2, n_test=2, progress=False)
    with pytest.raises(BenchError, match=r"unknown stamps split 'tests' \(did you mean 'test'"):
        create_dataset("stamps", "tests", root=tmp_path)
    with pytest.raises(BenchError, match=r"`n_train` -1: must be a non-negative integer"):
        st.StampsConfig(n_train=-1)


def test_pickles_without_the_pixels_for_dataloader_workers(built):
    ds = create_dataset(
        "stamps", "test", root=built.parent, image_size=64, seed=7, n_train=24, n_test=16, progress=False
    )
    ds[0]  # opens the memory map
    blob = pickle.dumps(ds)
    assert len(blob) < 64 * 64 * 3 * 16, f"pickled dataset is {len(blob)} bytes: the image array went along"
    clone = pickle.loads(blob)
    for i in (0, 15):
        assert all(torch.equal(a, b) for a, b in zip(clone[i], ds[i])), f"item {i} differs after pickling"
