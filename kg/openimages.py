"""The Open Images V6 class hierarchy (Supp. §5: "the officially provided semantic hierarchy
for 600 boxable classes"), as a DAG and as the single-parent tree the paper attacks.

* Nodes: the 601 classes of ``class-descriptions-boxable.csv`` in file order, named by
  display name (unique, also case-insensitively), ids = MIDs. All of them are dataset
  labels (``n_labels = 601``); the hierarchy's root ``/m/0bl9f`` ("Entity") is not a class
  and is left out, so its 90 children are roots.
* Edges: ``Subcategory`` links only (``Part`` is part-of, not is-a), parent → child.
  A class listed under several parents keeps all of them in the DAG (45 classes).
* Tree: each of those keeps one parent. The paper picked one at random (unseeded); here
  the rule mirrors the WordNet graphs' maximum-WUP rule. On the hierarchy itself,
  WUP(child, parent) = 2·depth(parent) / (depth(child) + depth(parent)) for a direct
  parent, so the highest WUP is the **deepest parent** (longest path from a root); ties go
  to the parent with fewer descendants (the more specific), then to the one listed first
  in the hierarchy file. The choices are recorded in ``meta["parent_choices"]``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.fileio import read_json
from kg.graph import LabelGraph

DATA = Path(__file__).resolve().parent / "data" / "openimages"
HIERARCHY = DATA / "bbox_labels_600_hierarchy.json"
DESCRIPTIONS = DATA / "class-descriptions-boxable.csv"
ROOT_MID = "/m/0bl9f"
SOURCE = "openimages-v6 (bbox_labels_600_hierarchy.json, Subcategory)"


def read_descriptions(path: str | Path = DESCRIPTIONS) -> list[tuple[str, str]]:
    """``(MID, DisplayName)`` rows of the official class-description CSV, in file order."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except FileNotFoundError:
        raise BenchError(f"Open Images class descriptions {path} do not exist") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BenchError(f"Open Images class descriptions {path} do not parse: {exc}") from None
    out = []
    for n, row in enumerate(rows, 1):
        if len(row) != 2 or not row[0].startswith("/m/") or not row[1].strip():
            raise BenchError(
                f"Open Images class descriptions {path} line {n}: expected 'MID,DisplayName', got {','.join(row)!r}"
            )
        out.append((row[0], row[1].strip()))
    seen: dict[str, str] = {}
    for mid, name in out:
        if name.lower() in seen:
            raise BenchError(
                f"Open Images class descriptions {path}: "
                f"display name {name!r} is used by {seen[name.lower()]} and {mid}"
            )
        seen[name.lower()] = mid
    return out


def read_subcategory_edges(path: str | Path = HIERARCHY) -> list[tuple[str, str]]:
    """``(parent MID, child MID)`` for every ``Subcategory`` link, in file order, once each.

    The root ``/m/0bl9f`` is not a class: links from it are left out.
    """
    path = Path(path)
    tree = read_json(path, "Open Images hierarchy")
    edges: dict[tuple[str, str], None] = {}
    todo = [tree]
    try:
        while todo:
            node = todo.pop()
            parent = node["LabelName"]
            children = node.get("Subcategory", [])
            for child in children:
                if parent != ROOT_MID:
                    edges[(parent, child["LabelName"])] = None
            todo.extend(reversed(children))  # depth-first in file order
    except (KeyError, TypeError, AttributeError) as exc:
        raise BenchError(f"Open Images hierarchy {path} does not parse: a node without 'LabelName' ({exc})") from None
    return list(edges)


def build_openimages_graph(
    hierarchy: str | Path = HIERARCHY, descriptions: str | Path = DESCRIPTIONS, tree: bool = False
) -> LabelGraph:
    """The Open Images hierarchy as a ``LabelGraph``: the DAG, or with ``tree=True`` one parent per class."""
    classes = read_descriptions(descriptions)
    index = {mid: i for i, (mid, _) in enumerate(classes)}
    edges = read_subcategory_edges(hierarchy)
    unknown_mids = sorted({m for e in edges for m in e if m not in index})
    if unknown_mids:
        raise BenchError(
            f"Open Images hierarchy {hierarchy}: MIDs without a class description: {', '.join(unknown_mids[:5])}"
        )
    names = tuple(name for _, name in classes)
    graph = LabelGraph(
        name="openimages",
        nodes=names,
        edges=tuple((index[p], index[c]) for p, c in edges),
        n_labels=len(names),
        ids=tuple(mid for mid, _ in classes),
        source=SOURCE,
        meta={"builder": "kg.openimages.build_openimages_graph", "variant": "dag", "part_links": "ignored"},
    )
    return single_parent_tree(graph, edge_order=[(index[p], index[c]) for p, c in edges]) if tree else graph


def single_parent_tree(dag: LabelGraph, edge_order: list[tuple[int, int]] | None = None) -> LabelGraph:
    """One parent per node: the deepest, then the one with fewer descendants, then the first listed.

    ``edge_order`` is the order the parent links appear in the source file (default: the
    graph's sorted edges).
    """
    order = edge_order if edge_order is not None else list(dag.edges)
    first_seen = {e: i for i, e in enumerate(order)}
    level = [0] * dag.n  # longest path from a root
    for v in dag.topological_order:
        for c in dag.children(v):
            level[c] = max(level[c], level[v] + 1)
    n_desc = [len(dag.descendants(v)) for v in range(dag.n)]
    keep: list[tuple[int, int]] = []
    choices: dict[str, dict[str, Any]] = {}
    for child in range(dag.n):
        parents = dag.parents(child)
        if len(parents) <= 1:
            keep.extend((p, child) for p in parents)
            continue
        ranked = sorted(parents, key=lambda p: (-level[p], n_desc[p], first_seen[(p, child)]))
        keep.append((ranked[0], child))
        choices[dag.nodes[child]] = {
            "chosen": dag.nodes[ranked[0]],
            "candidates": {dag.nodes[p]: {"depth": level[p], "descendants": n_desc[p]} for p in ranked},
        }
    meta = dict(dag.meta)
    meta.update(
        variant="tree",
        parent_rule="deepest parent (= max WUP on the hierarchy), then fewer descendants, then first in file",
        parent_choices=choices,
    )
    return LabelGraph(
        name=f"{dag.name}-tree",
        nodes=dag.nodes,
        edges=tuple(keep),
        n_labels=dag.n_labels,
        ids=dag.ids,
        source=dag.source,
        meta=meta,
    )
