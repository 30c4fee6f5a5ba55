"""NUS-WIDE (81 concepts) in its released layout, as a multi-label dataset.

Layout under ``root``::

    Concepts81.txt                                   one concept name a line
    ImageList/TrainImagelist.txt, TestImagelist.txt  one image a line, Windows-style
    ImageList/Imagelist.txt                          (split "all")
    Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt   one 0/1 a line
    Groundtruth/AllLabels/Labels_<concept>.txt       (split "all")
    Flickr/<folder>/<image>.jpg

Image-list lines are Windows paths, ``actor\\0001_2124494179.jpg`` or, in some copies,
``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg``: the last two parts name the file
under ``Flickr/``. The i-th line of every label file belongs to the i-th listed image. NUS-WIDE
is distributed as Flickr URLs, so local copies usually lack some images: listed images
that are not under ``Flickr/`` are left out with one warning that counts them.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import numpy as np

from bench.datasets.base import register_dataset
from bench.datasets.imagefiles import ImageFilesDataset, dataset_root, log, require_files
from bench.datasets.labels import class_columns, extended_targets, graph_for
from bench.errors import BenchError, unknown
from kg.graph import LabelGraph

SPLITS = ("train", "test", "all")
LAYOUT = (
    "Concepts81.txt, ImageList/{Train,Test}Imagelist.txt, "
    "Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt and Flickr/<folder>/<image>.jpg"
)


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]


def _layout(split: str, concepts: list[str]) -> tuple[Path, list[Path]]:
    """The split's image list and its per-concept label files (relative paths)."""
    if split == "all":
        return Path("ImageList/Imagelist.txt"), [Path(f"Groundtruth/AllLabels/Labels_{c}.txt") for c in concepts]
    s = split.capitalize()
    return Path(f"ImageList/{s}Imagelist.txt"), [
        Path(f"Groundtruth/TrainTestLabels/Labels_{c}_{s}.txt") for c in concepts
    ]


def read_label_file(path: Path, n: int) -> np.ndarray:
    """One 0/1 per line, exactly ``n`` lines."""
    values = path.read_text(encoding="utf-8", errors="replace").split()
    if len(values) != n:
        raise BenchError(f"label file {path} has {len(values)} values but the image list has {n} images")
    try:
        out = np.array(values, dtype=np.int64)
    except ValueError:
        raise BenchError(f"label file {path} holds something other than 0/1 values") from None
    if not np.isin(out, (0, 1)).all():
        raise BenchError(f"label file {path} holds values other than 0 and 1")
    return out.astype(np.float32)


@register_dataset("nus")
def nus(
    split: str = "test",
    root: str | Path | None = None,
    image_size: int | None = None,
    graph: LabelGraph | str | None = None,
) -> ImageFilesDataset:
    """A NUS-WIDE split: ``train`` (161,789 listed images), ``test`` (107,859) or ``all``."""
    if split not in SPLITS:
        raise unknown("NUS-WIDE split", split, SPLITS)
    base = dataset_root("nus", root, LAYOUT)
    require_files(base, ["Concepts81.txt"], f"NUS-WIDE folder {base}")
    concepts = _lines(base / "Concepts81.txt")
    image_list, label_files = _layout(split, concepts)
    require_files(base, [image_list, *label_files], f"NUS-WIDE folder {base}")

    listed = ["/".join(PureWindowsPath(line).parts[-2:]) for line in _lines(base / image_list)]
    positives = np.stack([read_label_file(base / f, len(listed)) for f in label_files], axis=1)
    present = np.array([(base / "Flickr" / rel).is_file() for rel in listed], dtype=bool)
    if not present.any():
        raise BenchError(f"none of the {len(listed)} images in {base / image_list} is under {base / 'Flickr'}")
    if not present.all():
        first = listed[int(np.argmin(present))]
        log.warning(
            "NUS-WIDE %s: %d of %d listed images are not under %s and are left out (first: %s)",
            split,
            int((~present).sum()),
            len(listed),
            base / "Flickr",
            first,
        )
    g = graph_for("nus", graph)
    in_graph = np.zeros((int(present.sum()), g.n_labels), dtype=np.float32)
    in_graph[:, class_columns(g, concepts, "NUS-WIDE")] = positives[present]
    kept = [rel for rel, ok in zip(listed, present) if ok]
    return ImageFilesDataset(
        name="nus",
        split=split,
        graph=g,
        root=base,
        files=[base / "Flickr" / rel for rel in kept],
        ids=kept,
        targets=extended_targets(g, in_graph),
        image_size=image_size or 224,
    )
