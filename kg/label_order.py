"""The order of a co-occurrence file's first rows: which dataset label each row holds.

ML-GCN's co-occurrence counts (``kg.cooccurrence``) carry no names, and the authors' files
are not in their datasets' order (row 0 of their VOC file is ``person``), so the order is an
input: the dataset's own (assumed, and the caller is told so), the authors' (shipped in
``kg/data/authors/label-orders.json`` with where in their code each was read), a file of
names or a list. Names are matched to the dataset's labels ignoring case, spaces, ``_`` and
``-``; the authors' spellings (VOC's ``pot_plant``) work too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from bench.errors import BenchError, did_you_mean

AUTHORS_ORDERS = Path(__file__).resolve().parent / "data" / "authors" / "label-orders.json"


@cache
def authors_orders() -> dict[str, Any]:
    """``kg/data/authors/label-orders.json``: the authors' files' label orders, with provenance."""
    return json.loads(AUTHORS_ORDERS.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LabelOrder:
    """The dataset labels in the order of the file's first rows, and where that order came from."""

    names: tuple[str, ...]
    kind: str  # "dataset" (nobody gave it: assumed), "authors", "file", "list"
    where: str = ""  # the label table, the authors' file, the user's file

    @property
    def source(self) -> str:
        """How a message names the order: "the dataset's (kg/labels/voc.csv)", ..."""
        return {
            "dataset": f"the dataset's ({self.where})",
            "authors": f"the authors' ({self.where})",
            "file": f"the file {self.where}'s",
            "list": "the given",
        }[self.kind]

    @property
    def assumed(self) -> bool:
        return self.kind == "dataset"

    def permutation(self, labels: Sequence[str]) -> list[int]:
        """For each dataset label (in the dataset's order), the file row that holds it."""
        row = {name: i for i, name in enumerate(self.names)}
        return [row[label] for label in labels]


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _match(names: Sequence[str], labels: Sequence[str], dataset: str, where: str) -> tuple[str, ...]:
    """``names`` spelled as the dataset's labels (case, spaces, '_' and '-' ignored; the authors'
    spellings, e.g. VOC's ``pot_plant``, work too); every label once."""
    entry = authors_orders()["datasets"].get(dataset, {})
    spelled = entry.get("authors_spelling")
    by_key = {_key(a): b for a, b in zip(spelled, entry["order"], strict=True)} if spelled else {}
    by_key.update({_key(label): label for label in labels})
    out: list[str] = []
    for name in names:
        label = name if name in labels else by_key.get(_key(name))
        if label is None:
            raise BenchError(
                f"{{labels}} ({where}): {name!r} is not a {dataset} label{did_you_mean(name, labels)}",
                options=["labels"],
            )
        if label in out:
            raise BenchError(f"{{labels}} ({where}): {label!r} is listed twice", options=["labels"])
        out.append(label)
    missing = [label for label in labels if label not in out]
    if missing:
        raise BenchError(
            f"{{labels}} ({where}) names {len(out)} of the {len(labels)} {dataset} labels; missing: "
            + ", ".join(missing[:8])
            + (", ..." if len(missing) > 8 else ""),
            options=["labels"],
        )
    return tuple(out)


def label_order(dataset: str, labels: Sequence[str], spec: str | Sequence[str] | None) -> LabelOrder:
    """The order of the file's first rows from ``spec``: ``None`` (the dataset's order, assumed),
    ``"authors"`` (the authors' file for ``dataset``), a file of names (one a line, ``#``
    comments, commas allowed), a comma list, or a sequence of names."""
    if spec is None:
        return LabelOrder(tuple(labels), "dataset", f"kg/labels/{dataset}.csv")
    if not isinstance(spec, str):
        return LabelOrder(_match(list(spec), labels, dataset, "the list given"), "list")
    if spec.strip().lower() == "authors":
        known = authors_orders()["datasets"]
        if dataset not in known:
            raise BenchError(
                f"{{labels}} authors: the authors' label order is known for {', '.join(sorted(known))}, "
                f"not {dataset!r}; give the file's order as a file of names or a comma list",
                options=["labels"],
            )
        entry, source = known[dataset], authors_orders()["source"]
        where = f"{source['repository'].removeprefix('https://')} {entry['file']}"
        return LabelOrder(
            _match(entry["order"], labels, dataset, "kg/data/authors/label-orders.json"), "authors", where
        )
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BenchError(f"{{labels}} {path}: not a UTF-8 text file of label names", options=["labels"]) from None
        lines = [line.split("#", 1)[0] for line in text.splitlines()]
        names = [x.strip() for line in lines for x in line.split(",") if x.strip()]
        return LabelOrder(_match(names, labels, dataset, str(path)), "file", str(path))
    if "," not in spec:
        raise BenchError(
            f"{{labels}} {spec!r}: no such file; give 'authors', a file of label names (one a line) or a comma list",
            options=["labels"],
        )
    names = [x.strip() for x in spec.split(",") if x.strip()]
    return LabelOrder(_match(names, labels, dataset, "the list given"), "list")


def authors_file(path: str | Path) -> str | None:
    """The dataset whose authors' co-occurrence file ``path`` is (same sha256), or ``None``."""
    digest = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    for dataset, entry in authors_orders()["datasets"].items():
        if entry.get("sha256") == digest:
            return dataset
    return None
