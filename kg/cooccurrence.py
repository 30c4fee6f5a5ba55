"""A hierarchy recovered from label co-occurrence counts: the authors' own graphs.

The paper's VOC and NUS-WIDE models were trained on the authors' 35- and 116-label
hierarchies, which are not published as graphs; their repository publishes ML-GCN's inputs
for them (``MLGCN/data/voc/voc_adj.pkl``, ``MLGCN/data/nus/nus_adj.pkl``): ``adj``, the
co-occurrence counts of every pair of extended labels over the training images, and ``nums``,
each label's count, with the dataset's labels first (in the dataset's order) and the abstract
nodes after them. A label always co-occurs with its ancestors, so the counts encode the
hierarchy:

* a is an ancestor of b when every image with b also has a (``adj[b, a] == nums[b]``) and a
  comes before b in the order (count descending, abstract nodes before labels, index): two
  nodes with the same images are stacked, not made each other's ancestor;
* b's parent is its closest ancestor, the one with the most ancestors of its own;
* an abstract node is named from WordNet: the lowest common hypernym of the synsets of the
  dataset labels below it (``placental``, ``artifact``), numbered when two share a name.

``bench kg import`` reads a user's local copy (never downloaded, nothing of it shipped) and
saves the graph under a name that works everywhere (training, sweeps, export);
``graph_diff`` shows node by node where two graphs of one dataset differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from kg.graph import LabelGraph


@dataclass(frozen=True)
class Cooccurrence:
    adj: np.ndarray  # [L, L] pair counts
    nums: np.ndarray  # [L] label counts


def read_cooccurrence(path: str | Path, trust: bool = False) -> Cooccurrence:
    """``adj`` and ``nums`` from ML-GCN's ``*_adj.pkl`` (numpy arrays only, unless ``trust``) or a ``.npz``."""
    from bench.untrusted import load_array_pickle

    path = Path(path).expanduser()
    if not path.is_file():
        raise BenchError(f"co-occurrence file {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            blob = {k: npz[k] for k in npz.files}
    else:
        blob = load_array_pickle(path, "co-occurrence pickle", trust)
    if not isinstance(blob, dict) or not {"adj", "nums"} <= set(blob):
        raise BenchError(f"{path} holds no 'adj' and 'nums' (ML-GCN's co-occurrence layout)")
    adj, nums = np.asarray(blob["adj"], dtype=np.float64), np.asarray(blob["nums"], dtype=np.float64).ravel()
    if adj.shape != (len(nums), len(nums)):
        raise BenchError(f"{path}: 'adj' has shape {adj.shape}, 'nums' {len(nums)} labels")
    return Cooccurrence(adj, nums)


def recover_edges(counts: Cooccurrence, n_labels: int) -> list[tuple[int, int]]:
    """(parent, child) edges of the hierarchy the counts encode (see the module docstring)."""
    adj, nums = counts.adj, counts.nums
    n = len(nums)
    unseen = [int(v) for v in np.flatnonzero(nums <= 0)]
    if unseen:
        raise BenchError(f"nodes {unseen} never occur in the counts: their place in the hierarchy cannot be recovered")
    rank = {v: r for r, v in enumerate(sorted(range(n), key=lambda v: (-nums[v], v < n_labels, v)))}
    ancestors = {b: {a for a in range(n) if a != b and adj[b, a] >= nums[b] and rank[a] < rank[b]} for b in range(n)}
    edges = []
    for b in range(n):
        if ancestors[b]:
            parent = max(ancestors[b], key=lambda a: (len(ancestors[a]), rank[a]))
            edges.append((parent, b))
    return edges


def abstract_names(
    graph_edges: Sequence[tuple[int, int]], n: int, labels: Sequence[str], synsets: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Names and synsets of the abstract nodes (n_labels … n−1): the lowest common hypernym of
    the synsets of the dataset labels below each."""
    from kg.wordnet_data import noun_synset

    children: dict[int, list[int]] = {}
    for p, c in graph_edges:
        children.setdefault(p, []).append(c)

    def below(v: int) -> list[int]:
        out, stack = [], list(children.get(v, []))
        while stack:
            u = stack.pop()
            if u < len(labels):
                out.append(u)
            stack.extend(children.get(u, []))
        return sorted(out)

    names, ids, used = [], [], set(labels)
    for v in range(len(labels), n):
        leaves = [noun_synset(synsets[u]) for u in below(v) if synsets[u]]
        common = leaves[0] if leaves else None
        for s in leaves[1:]:
            found = common.lowest_common_hypernyms(s)
            common = found[0] if found else None
            if common is None:
                break
        base = common.lemmas()[0].name().lower() if common is not None else "abstract"
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
        ids.append(common.name() if common is not None else "")
    return names, ids


def import_graph(dataset: str, path: str | Path, name: str, trust: bool = False) -> LabelGraph:
    """The hierarchy of ``dataset``'s extended labels that a co-occurrence file encodes."""
    from kg.catalog import LABEL_TABLES
    from kg.wordnet import read_label_table

    table_path = LABEL_TABLES / f"{dataset}.csv"
    if not table_path.exists():
        known = sorted(p.stem for p in LABEL_TABLES.glob("*.csv"))
        raise BenchError(
            f"no label table for dataset {dataset!r} (known: {', '.join(known)}): "
            "the file's first labels are the dataset's"
        )
    table = read_label_table(table_path)
    counts = read_cooccurrence(path, trust)
    k, n = len(table), len(counts.nums)
    if n < k:
        raise BenchError(f"{path} has {n} labels, fewer than the {k} labels of {dataset}")
    edges = recover_edges(counts, k)
    labels, synsets = [row.label for row in table], [row.synset for row in table]
    names, ids = abstract_names(edges, n, labels, synsets)
    return LabelGraph(
        name,
        tuple(labels + names),
        tuple(edges),
        k,
        ids=tuple(synsets + ids),
        source=f"co-occurrence:{Path(path).name}",
        meta={"dataset": dataset, "file": str(Path(path).name), "abstract_names": "lowest common WordNet hypernym"},
    )


@dataclass(frozen=True)
class NodeDiff:
    """One group of dataset labels: the abstract node above exactly them in each graph (or none)."""

    labels: tuple[str, ...]
    in_a: str | None
    in_b: str | None


def graph_diff(a: LabelGraph, b: LabelGraph) -> list[NodeDiff]:
    """Abstract nodes matched by the dataset labels below them: the same group in both graphs,
    or a group only one graph has. Both graphs must have the same dataset labels."""
    if set(a.labels) != set(b.labels):
        only = sorted(set(a.labels) ^ set(b.labels))
        raise BenchError(
            f"graphs {a.name!r} and {b.name!r} have other dataset labels ({', '.join(only[:5])}): compare graphs of "
            "one dataset"
        )

    def groups(g: LabelGraph) -> dict[tuple[str, ...], str]:
        out = {}
        for v in range(g.n_labels, g.n):
            under = tuple(sorted(g.nodes[u] for u in g.descendants(v) if u < g.n_labels))
            out.setdefault(under, g.nodes[v])
        return out

    ga, gb = groups(a), groups(b)
    keys = sorted(set(ga) | set(gb), key=lambda k: (-len(k), k))
    return [NodeDiff(k, ga.get(k), gb.get(k)) for k in keys]
