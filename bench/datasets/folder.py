"""Your own images: a folder of image files, with an optional CSV of labels, as the dataset
``folder`` (``bench run -d folder --data-root PATH --graph G``).

Layout::

    PATH/labels.csv        optional: image,<label>,<label>,...  one row per image, 0/1 per label
    PATH/<images>          .jpg, .jpeg, .png, .bmp, .webp (in subfolders too)

With ``labels.csv`` the dataset is the images it names, in its order, and its header names the
labels (each a label of the graph, in any order; the graph's labels it leaves out are 0).
Without it, the dataset is every image file under ``PATH`` in path order, with no ground truth:
the protocol attacks what the model predicts, so none is needed.

``graph`` names the hierarchy: a packaged or saved graph (``voc``; ``bench kg build --labels``)
or a CSV of ``parent,child`` pairs over the header's labels (which are then the model's
outputs, in the header's order). The data's identity is the sha256 of its manifest, the lines
``sha256sum`` prints for the files in the dataset's order (``<sha256>  <relative path>``), and
of ``labels.csv``: both go into the run's configuration (``fingerprint``), so a changed image
is a new run.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from bench.datasets.base import register_dataset
from bench.datasets.imagefiles import ImageFilesDataset, dataset_root, require_files
from bench.datasets.labels import extended_targets
from bench.datasets.transforms import check_size
from bench.errors import BenchError, unknown
from bench.fileio import sha256_file
from kg.catalog import load_graph, read_edges_csv
from kg.graph import LabelGraph

LABELS = "labels.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUT = f"image files, and optionally {LABELS} with the header image,<label>,..."


class ImageFolder(ImageFilesDataset):
    """The images of a folder (module docstring); ``fingerprint()`` identifies its bytes."""

    def __init__(self, root: Path, graph: LabelGraph, files: list[str], positives: np.ndarray, size: int) -> None:
        super().__init__(
            "folder", "test", graph, root, [root / f for f in files], files, extended_targets(graph, positives), size
        )
        labels = root / LABELS
        self._labels_sha256 = sha256_file(labels) if labels.is_file() else None

    def manifest(self) -> str:
        """What ``sha256sum`` prints for the dataset's files, in its order, run in the folder."""
        return "".join(f"{sha256_file(path)}  {rel}\n" for path, rel in zip(self.files, self.ids))

    def fingerprint(self) -> dict[str, object]:
        return {
            "images": len(self),
            "manifest_sha256": hashlib.sha256(self.manifest().encode()).hexdigest(),
            "labels_sha256": self._labels_sha256,
        }


def read_labels(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``labels.csv`` → (label names, image paths, ``[N, L]`` 0/1)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchError(f"{path} does not read: {exc}") from None
    if not rows or rows[0][0].strip().lower() != "image" or len(rows[0]) < 2:
        raise BenchError(f"{path}: the first line must be the header image,<label>,<label>,...")
    names = [c.strip() for c in rows[0][1:]]
    if len(set(names)) != len(names):
        raise BenchError(f"{path}: a label is named twice in the header")
    files, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise BenchError(f"{path} line {line}: {len(row)} columns, the header has {len(rows[0])}")
        cells = [c.strip() for c in row[1:]]
        if any(c not in ("0", "1") for c in cells):
            raise BenchError(f"{path} line {line}: a label's value must be 0 or 1")
        files.append(Path(row[0].strip()).as_posix())
        values.append([c == "1" for c in cells])
    if not files:
        raise BenchError(f"{path} names no image")
    if len(set(files)) != len(files):
        raise BenchError(f"{path} names an image twice")
    return names, files, np.array(values, dtype=np.float32).reshape(len(files), len(names))


def folder_graph(graph: LabelGraph | str | None, names: list[str] | None) -> LabelGraph:
    if isinstance(graph, LabelGraph):
        return graph
    if graph is None:
        raise BenchError(
            "dataset folder needs a label graph: a graph's name or a CSV of parent,child pairs ({graph})",
            options=["graph"],
        )
    if Path(graph).suffix.lower() == ".csv":
        if names is None:
            raise BenchError(f"graph {graph} is a CSV of edges: the folder needs {LABELS} to name its labels")
        return read_edges_csv(graph, names)
    return load_graph(graph)


@register_dataset("folder")
def image_folder(
    split: str = "test", root=None, image_size: int | None = None, graph: LabelGraph | str | None = None
) -> ImageFolder:
    """The images under ``root`` (module docstring); one split, ``test``."""
    if split != "test":
        raise BenchError(f"dataset folder has one split, test (got {split!r})")
    base = dataset_root("folder", root, LAYOUT)
    labels = base / LABELS
    if labels.is_file():
        names, files, values = read_labels(labels)
        require_files(base, files, f"{labels}'s image list")
        g = folder_graph(graph, names)
        index = {n: i for i, n in enumerate(g.labels)}
        for name in names:
            if name not in index:
                raise unknown(f"label (of graph {g.name!r}) in {labels}:", name, g.labels)
        positives = np.zeros((len(files), g.n_labels), dtype=np.float32)
        positives[:, [index[n] for n in names]] = values
    else:
        g = folder_graph(graph, None)
        files = sorted(
            p.relative_to(base).as_posix()
            for p in base.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise BenchError(f"{base} holds no image file ({', '.join(IMAGE_SUFFIXES)}) and no {LABELS}")
        positives = np.zeros((len(files), g.n_labels), dtype=np.float32)
    return ImageFolder(base, g, files, positives, check_size(image_size or 224))
