"""Offline dataset ``stamps``: multi-label images composited from Tux Paint clip art.

Each image pastes 1–4 objects of different labels (``stamps_art.CATALOGUE``) at random
scales, positions and horizontal flips on a plain, gradient, horizon or striped
background. An object is kept only where it overlaps earlier objects by at most a quarter
of the smaller box, so every pasted object stays visible and the labels are exactly the
objects pasted. Labels are then extended with the ``stamps`` knowledge graph (WordNet,
built from ``kg/labels/stamps.csv`` like VOC's).

Everything is a pure function of the configuration (seed, size, split sizes), the
generator version and the clip-art bytes: image ``i`` of a split draws from its own
``numpy`` generator seeded with ``(seed, split, i)``. The arrays are cached under
``$BENCH_DATA/datasets/stamps/<config-hash>/`` and rebuilt only when missing or when the
configuration changes.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.datasets.base import MultiLabelDataset, register_dataset
from bench.datasets.labels import class_columns, extended_targets, graph_for
from bench.datasets.stamps_art import CATALOGUE, art_digest, load_sprites, require_stamps
from bench.datasets.transforms import check_size, uint8_to_tensor
from bench.errors import BenchError, InvalidValue, unknown
from bench.fileio import atomic_write, sha256_file, write_json
from bench.paths import data_dir
from bench.progress import progress_bar
from kg.graph import LabelGraph

GENERATOR_VERSION = 1
SPLITS = ("train", "test")
LABELS: tuple[str, ...] = tuple(CATALOGUE)

OBJECT_COUNTS = (1, 2, 3, 4)
COUNT_PROBS = (0.3, 0.35, 0.25, 0.1)
# Object size as sqrt(box area) / image side, by how many objects share the image.
SCALE = {1: (0.45, 0.70), 2: (0.36, 0.55), 3: (0.30, 0.45), 4: (0.27, 0.40)}
MAX_SIDE = 0.9  # longest side of an object / image side
MAX_OVERLAP = 0.25  # box intersection / smaller box area
PLACEMENT_TRIES = 25
MAX_OBJECTS = max(OBJECT_COUNTS)
OBJECT_FIELDS = ("label", "stamp", "x", "y", "w", "h", "flip")


@dataclass(frozen=True)
class StampsConfig:
    """What a ``stamps`` build depends on (with the generator version and the clip art)."""

    seed: int = 0
    size: int = 128
    n_train: int = 6000
    n_test: int = 1000

    def __post_init__(self) -> None:
        check_size(self.size)
        for field in ("seed", "n_train", "n_test"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 0:
                raise InvalidValue(field, getattr(self, field), "must be a non-negative integer")

    def count(self, split: str) -> int:
        return {"train": self.n_train, "test": self.n_test}[split]

    def key(self, digest: str) -> str:
        canon = json.dumps(
            {**asdict(self), "version": GENERATOR_VERSION, "labels": LABELS, "art": digest}, sort_keys=True
        )
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def cache_root(root: str | Path | None = None) -> Path:
    return Path(root).expanduser() if root is not None else data_dir() / "datasets" / "stamps"


# ---------------------------------------------------------------------------- drawing
@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    return ys[..., None], xs[..., None]


def _pale_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.5, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255.0


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``[size, size, 3]`` float32 background: plain, gradient, horizon or stripes."""
    ys, xs = _grid(size)
    c1, c2 = _pale_colour(rng), _pale_colour(rng)
    kind = int(rng.integers(4))
    if kind == 0:
        return np.broadcast_to(c1, (size, size, 3)).copy()
    if kind == 1:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * np.pi)
        t = np.cos(a) * xs + np.sin(a) * ys
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 2:  # sky over ground, soft horizon
        t = 1.0 / (1.0 + np.exp(-(ys - rng.uniform(0.45, 0.8)) / 0.02))
    else:  # low-contrast stripes
        a, period = rng.uniform(0, np.pi), rng.uniform(0.08, 0.2)
        t = 0.35 * (np.sin(2 * np.pi * (np.cos(a) * xs + np.sin(a) * ys) / period) > 0)
    return c1 + (c2 - c1) * t.astype(np.float32)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / min(aw * ah, bw * bh)


def render_sprite(sprite: Image.Image, w: int, h: int, flip: bool) -> np.ndarray:
    """A clip-art sprite resized to ``w × h`` (and mirrored): RGBA uint8 ``[h, w, 4]``."""
    im = sprite.resize((w, h), Image.Resampling.BILINEAR)
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(im)


def paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Alpha-composite an RGBA ``patch`` onto a float ``canvas`` in place at ``(x, y)``."""
    h, w = patch.shape[:2]
    alpha = patch[..., 3:4].astype(np.float32) / 255.0
    region = canvas[y : y + h, x : x + w]
    region *= 1.0 - alpha
    region += patch[..., :3].astype(np.float32) * alpha


def compose(
    rng: np.random.Generator, sprites: list[list[Image.Image]], size: int
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """One image (``[size, size, 3]`` uint8) and its pasted objects ``(label, stamp, x, y, w, h, flip)``."""
    canvas = background(rng, size)
    k = int(rng.choice(OBJECT_COUNTS, p=COUNT_PROBS))
    lo, hi = SCALE[k]
    boxes: list[tuple[int, int, int, int]] = []
    objects: list[tuple[int, ...]] = []
    for label in rng.choice(len(sprites), size=k, replace=False):
        stamp = int(rng.integers(len(sprites[label])))
        sprite = sprites[label][stamp]
        w0, h0 = sprite.size
        for _ in range(PLACEMENT_TRIES):
            f = min(rng.uniform(lo, hi) * size / np.sqrt(w0 * h0), MAX_SIDE * size / max(w0, h0))
            w, h = max(1, round(w0 * f)), max(1, round(h0 * f))
            box = (int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1)), w, h)
            if all(_overlap(box, b) <= MAX_OVERLAP for b in boxes):
                break
        else:
            continue  # no room left: the object (and its label) is left out
        flip = bool(rng.random() < 0.5)
        paste(canvas, render_sprite(sprite, w, h, flip), box[0], box[1])
        boxes.append(box)
        objects.append((int(label), stamp, *box, int(flip)))
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), objects


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index])


# ---------------------------------------------------------------------------- building
def _save(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:  # np.save on a name would append ".npy"
            np.save(fh, array, allow_pickle=False)

    atomic_write(path, write)


CACHE_FILES = tuple(f"{s}-{part}.npy" for s in SPLITS for part in ("images", "labels", "objects"))


def _manifest_ok(folder: Path, config: StampsConfig) -> bool:
    """A finished build of ``config`` whose files have the sizes and array headers it wrote
    (a cut file or a damaged header means the cache is rebuilt)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    files = manifest.get("files", {})
    if manifest.get("config") != asdict(config) or set(files) != set(CACHE_FILES):
        return False
    for name, expected in files.items():
        path = folder / name
        try:
            if path.stat().st_size != expected["bytes"]:
                return False
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if list(shape) != expected["shape"] or str(dtype) != expected["dtype"]:
            return False
    return True


def verify_stamps(folder: Path) -> list[str]:
    """The cache files whose SHA-256 differs from the one recorded when they were written."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return [
        name for name, expected in manifest.get("files", {}).items() if sha256_file(folder / name) != expected["sha256"]
    ]


def _file_record(path: Path) -> dict:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return {
        "bytes": path.stat().st_size,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "sha256": sha256_file(path),
    }


def check_room(folder: Path, config: StampsConfig) -> None:
    """Refuse, before writing anything, a build whose images would not fit on the disk."""
    need = (config.n_train + config.n_test) * config.size * config.size * 3
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > 0.9 * free:
        raise BenchError(
            f"stamps with {config.n_train + config.n_test:,} images at {config.size} px needs about "
            f"{need / 1e9:,.1f} GB in {folder.parent}, and {free / 1e9:,.1f} GB are free: pick fewer images "
            "({n_train}, {n_test}), a smaller {image_size}, or another {root}",
            options=["n_train", "n_test", "image_size", "root"],
        )


def build_stamps(
    config: StampsConfig = StampsConfig(),
    root: str | Path | None = None,
    art_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    build: bool = True,
) -> Path:
    """Generate (or find cached) the ``stamps`` arrays; returns the cache folder (``build=False``:
    find only, a missing cache is one line naming the command that builds it).

    Per split ``S``: ``S-images.npy`` ``[N, size, size, 3]`` uint8, ``S-labels.npy``
    ``[N, len(LABELS)]`` uint8 (the pasted labels, in ``LABELS`` order) and
    ``S-objects.npy`` ``[N, 4, 7]`` int16 (``OBJECT_FIELDS``, rows of ``-1`` when unused),
    plus ``manifest.json`` written last.
    """
    art = require_stamps(Path(art_dir) if art_dir is not None else None)
    digest = art_digest(art)
    folder = cache_root(root) / config.key(digest)
    if not force and _manifest_ok(folder, config):
        return folder
    if not build:
        flags = {"size": "--image-size", "seed": "--seed", "n_train": "--n-train", "n_test": "--n-test"}
        options = "".join(
            f" {flag} {getattr(config, field)}"
            for field, flag in flags.items()
            if getattr(config, field) != getattr(StampsConfig, field)
        )
        raise BenchError(
            f"stamps is not built yet with these settings in {folder.parent}: bench data build stamps{options}"
        )
    check_room(folder, config)
    sprites = [[Image.fromarray(a) for a in per_label] for per_label in load_sprites(art, config.size).values()]
    started = time.perf_counter()
    counts: dict[str, dict[str, int]] = {}
    with progress_bar("[bold]stamps[/] {task.description}", enabled=progress) as bar:
        for split in SPLITS:
            n = config.count(split)
            task = bar.add_task(split, total=n)
            labels = np.zeros((n, len(LABELS)), dtype=np.uint8)
            objects = np.full((n, MAX_OBJECTS, len(OBJECT_FIELDS)), -1, dtype=np.int16)

            def fill(tmp: Path, split=split, n=n, labels=labels, objects=objects, task=task) -> None:
                shape = (n, config.size, config.size, 3)
                images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                for i in range(n):
                    images[i], objs = compose(image_rng(config.seed, split, i), sprites, config.size)
                    for j, obj in enumerate(objs):
                        objects[i, j] = obj
                        labels[i, obj[0]] = 1
                    bar.advance(task)
                images.flush()
                del images

            atomic_write(folder / f"{split}-images.npy", fill)
            _save(folder / f"{split}-labels.npy", labels)
            _save(folder / f"{split}-objects.npy", objects)
            counts[split] = {"images": n, "objects": int((objects[..., 0] >= 0).sum())}
    write_json(
        folder / "manifest.json",
        {
            "dataset": "stamps",
            "config": asdict(config),
            "generator_version": GENERATOR_VERSION,
            "labels": list(LABELS),
            "object_fields": list(OBJECT_FIELDS),
            "clip_art": {"dir": str(art), "sha256": digest, "files": {k: list(v) for k, v in CATALOGUE.items()}},
            "counts": counts,
            "files": {name: _file_record(folder / name) for name in CACHE_FILES},
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    return folder


# ---------------------------------------------------------------------------- dataset
class StampsDataset(MultiLabelDataset):
    """A split of ``stamps``: uint8 images cached in ``root``, targets in the graph's extended order."""

    name = "stamps"

    def __init__(self, folder: Path, split: str, graph: LabelGraph) -> None:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        self.root, self.split, self.graph = folder, split, graph
        self.image_size = int(manifest["config"]["size"])
        self._images: np.ndarray | None = None
        pasted = np.load(folder / f"{split}-labels.npy")
        positives = np.zeros((len(pasted), graph.n_labels), dtype=np.float32)
        positives[:, class_columns(graph, manifest["labels"], "stamps")] = pasted
        self._targets = extended_targets(graph, positives)

    @property
    def images(self) -> np.ndarray:
        """``[N, s, s, 3]`` uint8, memory-mapped (opened again in each DataLoader worker)."""
        if self._images is None:
            self._images = np.load(self.root / f"{self.split}-images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return uint8_to_tensor(self.images[index]), self._targets[index]

    def image_id(self, index: int) -> str:
        return f"stamps/{self.split}/{index:06d}"

    def targets(self) -> torch.Tensor:
        return self._targets.clone()


@register_dataset("stamps")
def stamps(
    split: str = "test",
    root: str | Path | None = None,
    image_size: int | None = None,
    seed: int = 0,
    n_train: int = StampsConfig.n_train,
    n_test: int = StampsConfig.n_test,
    graph: LabelGraph | str | None = None,
    art_dir: str | Path | None = None,
    progress: bool = True,
    build: bool = True,
) -> StampsDataset:
    """The clip-art dataset; built on first use unless ``build=False`` (``root``: cache folder,
    default ``$BENCH_DATA/datasets/stamps``)."""
    if split not in SPLITS:
        raise unknown("stamps split", split, SPLITS)
    config = StampsConfig(seed=seed, size=image_size or StampsConfig.size, n_train=n_train, n_test=n_test)
    folder = build_stamps(config, root=root, art_dir=art_dir, progress=progress, build=build)
    return StampsDataset(folder, split, graph_for("stamps", graph))
