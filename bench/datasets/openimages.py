"""Open Images V6 human-verified image-level labels over the 600 boxable classes.

Layout under ``root``::

    class-descriptions-boxable.csv                      MID,DisplayName (no header)
    oidv6-train-annotations-human-imagelabels.csv       ImageID,Source,LabelName,Confidence
    validation-annotations-human-imagelabels.csv        (V6 keeps the V5 names for these two;
    test-annotations-human-imagelabels.csv               oidv6-<split>-... is accepted too)
    <split>/<ImageID>.jpg                               split = train, validation, test

A row with ``Confidence`` 1 makes its class positive; ``Confidence`` 0 (a verified
negative) and classes without a row are negative. Only classes of the ``openimages``
graph (matched by MID, the graph's node ids) are kept, in the graph's order; ancestors of
positives are then set. The split holds the images named in the label CSV that are
present in ``<split>/`` (copies are usually partial; the missing ones are counted once).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import duckdb
import numpy as np

from bench.datasets.base import register_dataset
from bench.datasets.imagefiles import ImageFilesDataset, dataset_root, log, require_files
from bench.datasets.labels import extended_targets, graph_for
from bench.errors import BenchError, one_line, unknown
from kg.graph import LabelGraph

SPLITS = ("train", "validation", "test")
ALIASES = {"val": "validation"}
CLASS_FILE = "class-descriptions-boxable.csv"
HEADER = ["ImageID", "Source", "LabelName", "Confidence"]
LAYOUT = f"{CLASS_FILE}, <split>-annotations-human-imagelabels.csv and <split>/<ImageID>.jpg"


def label_file(base: Path, split: str) -> Path:
    """The split's human-verified label CSV (the V6 download's name first, then the others)."""
    v6 = (
        f"oidv6-{split}-annotations-human-imagelabels.csv"
        if split == "train"
        else f"{split}-annotations-human-imagelabels.csv"
    )
    names = [v6, f"oidv6-{split}-annotations-human-imagelabels.csv", f"{split}-annotations-human-imagelabels.csv"]
    for name in names:
        if (base / name).is_file():
            return base / name
    raise BenchError(f"Open Images folder {base} is incomplete: {base / v6} is missing")


def read_class_descriptions(path: Path) -> dict[str, str]:
    """``MID → DisplayName`` (a header row, as in the V7 file, is skipped)."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    out = {r[0].strip(): r[1].strip() for r in rows if len(r) >= 2 and r[0].startswith(("/m/", "/g/"))}
    if not out:
        raise BenchError(f"{path} holds no MID,DisplayName rows")
    return out


def read_image_labels(path: Path, mids: list[str]) -> list[tuple[str, list[str]]]:
    """Every image of a label CSV with its positive classes among ``mids`` (one scan, by DuckDB)."""
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh), [])
    if [h.strip() for h in header[:4]] != HEADER:
        raise BenchError(f"{path} does not start with the header {','.join(HEADER)} (found {','.join(header)!r})")
    query = (
        "SELECT ImageID, list(DISTINCT LabelName) FILTER (WHERE Confidence = 1 AND list_contains($mids, LabelName)) "
        "FROM read_csv($path, header = true, columns = "
        "{'ImageID': 'VARCHAR', 'Source': 'VARCHAR', 'LabelName': 'VARCHAR', 'Confidence': 'DOUBLE'}) "
        "GROUP BY ImageID ORDER BY ImageID"
    )
    con = duckdb.connect()
    try:
        return [
            (image_id, pos or []) for image_id, pos in con.execute(query, {"mids": mids, "path": str(path)}).fetchall()
        ]
    except duckdb.Error as exc:
        raise BenchError(f"{path} does not parse: {one_line(exc)}") from None
    finally:
        con.close()


@register_dataset("openimages")
def openimages(
    split: str = "test",
    root: str | Path | None = None,
    image_size: int | None = None,
    graph: LabelGraph | str | None = None,
) -> ImageFilesDataset:
    """An Open Images V6 split (``train``, ``validation``/``val``, ``test``), default 448 px as in the paper."""
    split = ALIASES.get(split, split)
    if split not in SPLITS:
        raise unknown("Open Images split", split, SPLITS)
    base = dataset_root("openimages", root, LAYOUT)
    require_files(base, [CLASS_FILE], f"Open Images folder {base}")
    labels_csv = label_file(base, split)
    image_dir = base / split
    if not image_dir.is_dir():
        raise BenchError(f"Open Images folder {base} has no image folder {image_dir}")

    descriptions = read_class_descriptions(base / CLASS_FILE)
    g = graph_for("openimages", graph)
    node_of = {mid: i for i, mid in enumerate(g.ids) if mid in descriptions}
    missing = [g.nodes[i] for i in range(g.n_labels) if g.ids[i] not in descriptions]
    if missing:
        raise BenchError(f"graph {g.name!r} has labels whose MID is not in {CLASS_FILE}: {', '.join(missing[:5])}")

    listed = read_image_labels(labels_csv, sorted(node_of))
    on_disk = {e.name[:-4] for e in os.scandir(image_dir) if e.name.endswith(".jpg")}
    kept = [(image_id, pos) for image_id, pos in listed if image_id in on_disk]
    if not kept:
        raise BenchError(f"none of the {len(listed)} images in {labels_csv.name} is in {image_dir}")
    if len(kept) < len(listed):
        first = next(image_id for image_id, _ in listed if image_id not in on_disk)
        log.warning(
            "Open Images %s: %d of %d images in %s are not in %s and are left out (first: %s.jpg)",
            split,
            len(listed) - len(kept),
            len(listed),
            labels_csv.name,
            image_dir,
            first,
        )
    positives = np.zeros((len(kept), g.n), dtype=np.float32)
    for row, (_, pos) in enumerate(kept):
        positives[row, [node_of[mid] for mid in pos]] = 1.0
    return ImageFilesDataset(
        name="openimages",
        split=split,
        graph=g,
        root=base,
        files=[image_dir / f"{image_id}.jpg" for image_id, _ in kept],
        ids=[image_id for image_id, _ in kept],
        targets=extended_targets(g, positives),
        image_size=image_size or 448,
    )
