"""PASCAL VOC 2007 / 2012 in the ``VOCdevkit`` layout, as a multi-label dataset.

Layout (``root`` may be the folder holding ``VOCdevkit``, ``VOCdevkit`` itself, or ``VOC<year>``)::

    VOCdevkit/VOC2007/Annotations/<id>.xml
    VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt
    VOCdevkit/VOC2007/JPEGImages/<id>.jpg

A class is positive for an image when the image's annotation has an object of that class.
``difficult`` objects: with ``difficult="positive"`` (default) they count like any other
object, which is how ML-GCN (the model the paper attacks on VOC) trains; with
``difficult="negative"`` a class needs at least one non-difficult object (the devkit
marks difficult-only classes ``0``). Targets are then extended with the ``voc`` graph.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from bench.datasets.base import register_dataset
from bench.datasets.imagefiles import ImageFilesDataset, dataset_root, require_files
from bench.datasets.labels import class_columns, extended_targets, graph_for
from bench.errors import BenchError, InvalidValue, unknown
from kg.graph import LabelGraph

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
SPLITS = ("train", "val", "trainval", "test")
DIFFICULT_RULES = ("positive", "negative")
LAYOUT = "VOCdevkit/VOC<year>/ with Annotations/*.xml, ImageSets/Main/<split>.txt and JPEGImages/*.jpg"


def voc_folder(root: str | Path | None, year: int) -> Path:
    """The ``VOC<year>`` folder under ``root`` (or ``$BENCH_DATA/datasets/voc``)."""
    base = dataset_root("voc", root, LAYOUT)
    for folder in (base, base / f"VOC{year}", base / "VOCdevkit" / f"VOC{year}"):
        if (folder / "ImageSets").is_dir() or (folder / "Annotations").is_dir():
            return folder
    raise BenchError(f"{base} holds no VOC{year} folder; expected {LAYOUT}")


def read_annotation(path: Path) -> dict[str, bool]:
    """Classes in one VOC annotation → whether *all* their objects are ``difficult``."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise BenchError(f"annotation {path} does not parse: {exc}") from None
    difficult_only: dict[str, bool] = {}
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise unknown(f"VOC class in {path}:", name, VOC_CLASSES)
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        difficult_only[name] = difficult_only.get(name, True) and difficult
    return difficult_only


@register_dataset("voc")
def voc(
    split: str = "test",
    root: str | Path | None = None,
    image_size: int | None = None,
    year: int = 2007,
    difficult: str = "positive",
    graph: LabelGraph | str | None = None,
) -> ImageFilesDataset:
    """A VOC split (``train``, ``val``, ``trainval``, ``test``; VOC2012 has no public ``test``)."""
    if split not in SPLITS:
        raise unknown("VOC split", split, SPLITS)
    if difficult not in DIFFICULT_RULES:
        raise unknown("difficult rule", difficult, DIFFICULT_RULES)
    if year not in (2007, 2012):
        raise InvalidValue("year", year, "VOC is 2007 or 2012")
    folder = voc_folder(root, year)
    split_file = Path("ImageSets") / "Main" / f"{split}.txt"
    require_files(folder, [split_file], f"VOC{year} folder {folder}")
    ids = [line.split()[0] for line in (folder / split_file).read_text().splitlines() if line.strip()]
    require_files(folder, [Path("Annotations") / f"{i}.xml" for i in ids], f"VOC{year} folder {folder}")
    require_files(folder, [Path("JPEGImages") / f"{i}.jpg" for i in ids], f"VOC{year} folder {folder}")

    g = graph_for("voc", graph)
    positives = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.float32)
    column = {c: j for j, c in enumerate(VOC_CLASSES)}
    for row, image_id in enumerate(ids):
        for name, difficult_only in read_annotation(folder / "Annotations" / f"{image_id}.xml").items():
            if difficult == "positive" or not difficult_only:
                positives[row, column[name]] = 1.0
    in_graph = np.zeros((len(ids), g.n_labels), dtype=np.float32)
    in_graph[:, class_columns(g, VOC_CLASSES, "VOC")] = positives
    return ImageFilesDataset(
        name="voc",
        split=split,
        graph=g,
        root=folder,
        files=[folder / "JPEGImages" / f"{i}.jpg" for i in ids],
        ids=list(ids),
        targets=extended_targets(g, in_graph),
        image_size=image_size or 224,
    )
