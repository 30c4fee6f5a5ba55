"""A hierarchy recovered from label co-occurrence counts: the authors' own graphs.

The paper's VOC and NUS-WIDE models were trained on the authors' 35- and 116-label
hierarchies, which are not published as graphs; their repository publishes ML-GCN's inputs
for them (``MLGCN/data/voc/voc_adj.pkl``, ``MLGCN/data/nus/nus_adj.pkl``): ``adj``, the
co-occurrence counts of every pair of extended labels over the training images, and ``nums``,
each label's count, with the dataset's labels first and the abstract nodes after them. A
label always co-occurs with its ancestors, so the counts encode the hierarchy:

* a is an ancestor of b when every image with b also has a (``adj[b, a] == nums[b]``) and a
  comes before b in the order (count descending, abstract nodes before labels, index): two
  nodes with the same images are stacked, not made each other's ancestor;
* b's parent is its closest ancestor, the one with the most ancestors of its own;
* an abstract node is named from WordNet: the lowest common hypernym of the synsets of the
  dataset labels below it (``placental``, ``artifact``), numbered when two share a name.

**The order of the file's first rows is an input** (:class:`LabelOrder`): the counts carry
no names, and the authors' VOC file is not in VOC's order (row 0 is ``person``). The orders
of the authors' files ship in ``kg/data/authors/label-orders.json`` with where in their code
each was read; without an order the dataset's own is assumed, and the caller is told so.

**A recovered hierarchy is checked** (:class:`Plausibility`): rows in the wrong order still
give a tree, but its groups of labels are unrelated. For each abstract node, the labels
below it are scored by their lowest common WordNet hypernym: its depth, and how many steps
it lies below the hypernym common to *all* the dataset's labels (``whole.n.02`` for VOC,
``entity.n.01`` for NUS-WIDE), and whether the node's count is the union of its children's.
The hierarchy is implausible when most abstract nodes lie within ``SHALLOW_STEPS`` steps of
that top, as happens for random label orders (the same figures for random orders are given
alongside). ``import_graph`` refuses such a hierarchy unless told to keep it.

``bench kg import`` reads a user's local copy (never downloaded, none of it shipped) and
saves the graph under a name that works everywhere (training, sweeps, export);
``graph_diff`` shows node by node where two graphs of one dataset differ.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, did_you_mean
from kg.graph import LabelGraph

AUTHORS_ORDERS = Path(__file__).resolve().parent / "data" / "authors" / "label-orders.json"
SHALLOW_STEPS = 2  # an abstract node whose labels share nothing deeper than this below the top fits badly
MIN_JUDGED = 3  # fewer fitted abstract nodes than this: no verdict
RANDOM_ORDERS = 100  # random label orders for the baseline figures (seeded)


@dataclass(frozen=True)
class Cooccurrence:
    adj: np.ndarray  # [L, L] pair counts
    nums: np.ndarray  # [L] label counts

    def reordered(self, rows: Sequence[int]) -> Cooccurrence:
        """The counts with row/column ``rows[i]`` moved to position ``i``."""
        index = np.asarray(rows)
        return Cooccurrence(self.adj[np.ix_(index, index)], self.nums[index])


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


# ------------------------------------------------------------------ the file's label order
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


# ------------------------------------------------------------------ WordNet fit of label groups
class _Hypernyms:
    """Each label synset's hypernyms (itself included, all paths, instance hypernyms too) and
    their WordNet depths, for the lowest common hypernym of any group of labels."""

    def __init__(self, synsets: Sequence[str]) -> None:
        from kg.wordnet_data import noun_synset

        self.closure: list[frozenset[str]] = []
        self.min_depth: dict[str, int] = {}
        self.max_depth: dict[str, int] = {}
        for name in synsets:
            if not name:
                self.closure.append(frozenset())
                continue
            seen, stack = {}, [noun_synset(name)]
            while stack:
                s = stack.pop()
                if s.name() not in seen:
                    seen[s.name()] = s
                    stack.extend(s.hypernyms() + s.instance_hypernyms())
            for key, s in seen.items():
                if key not in self.min_depth:
                    self.min_depth[key], self.max_depth[key] = s.min_depth(), s.max_depth()
            self.closure.append(frozenset(seen))

    def common(self, labels: Sequence[int]) -> str:
        """The lowest common hypernym of the labels' synsets (nltk's rule: the deepest by
        ``max_depth``, then the smallest name); ``""`` when none has a synset."""
        sets = [self.closure[u] for u in labels if self.closure[u]]
        if not sets:
            return ""
        shared = frozenset.intersection(*sets)
        return min(shared, key=lambda s: (-self.max_depth[s], s)) if shared else ""


def _labels_below(edges: Sequence[tuple[int, int]], n_labels: int) -> dict[int, list[int]]:
    """For every node with children, the dataset labels among its descendants (sorted)."""
    children: dict[int, list[int]] = {}
    for p, c in edges:
        children.setdefault(p, []).append(c)
    out = {}
    for v in children:
        found, stack = set(), list(children[v])
        while stack:
            u = stack.pop()
            if u < n_labels:
                found.add(u)
            stack.extend(children.get(u, []))
        out[v] = sorted(found)
    return out


def abstract_names(
    graph_edges: Sequence[tuple[int, int]], n: int, labels: Sequence[str], synsets: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Names and synsets of the abstract nodes (n_labels … n−1): the lowest common hypernym of
    the synsets of the dataset labels below each."""
    from kg.wordnet_data import wordnet

    hypernyms, below = _Hypernyms(synsets), _labels_below(graph_edges, len(labels))
    names, ids, used = [], [], set(labels)
    for v in range(len(labels), n):
        common = hypernyms.common(below.get(v, []))
        base = wordnet().synset(common).lemmas()[0].name().lower() if common else "abstract"
        name, k = base, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
        ids.append(common)
    return names, ids


@dataclass(frozen=True)
class NodeFit:
    """How well the labels below one abstract node fit together."""

    node: str
    labels: tuple[str, ...]  # the dataset labels below it
    hypernym: str  # their lowest common WordNet hypernym
    depth: int  # its WordNet depth (entity.n.01 is 0)
    steps: int  # how far below the hypernym common to all the dataset's labels
    nesting: str  # its count vs its children's union: "exact", "approximate", "+N images", "-N images"
    root: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "labels": list(self.labels),
            "hypernym": self.hypernym,
            "depth": self.depth,
            "steps": self.steps,
            "nesting": self.nesting,
            "root": self.root,
        }


@dataclass(frozen=True)
class Plausibility:
    """The abstract nodes' fits, and the same figures for random label orders."""

    fits: tuple[NodeFit, ...]
    top: str  # the lowest hypernym common to all the dataset's labels
    shallow: int  # abstract nodes within SHALLOW_STEPS steps of ``top``
    mean_steps: float
    random_shallow: float  # the same two figures, mean over RANDOM_ORDERS random label orders
    random_mean_steps: float

    @property
    def judged(self) -> bool:
        return len(self.fits) >= MIN_JUDGED

    @property
    def plausible(self) -> bool:
        """Not most abstract nodes within SHALLOW_STEPS steps of the top (or too few to judge)."""
        return not self.judged or 2 * self.shallow <= len(self.fits)

    def worst(self, k: int) -> list[NodeFit]:
        """The ``k`` worst fits: fewest steps below the top, then a count that is not exact, then the most labels."""
        return sorted(self.fits, key=lambda f: (f.steps, f.nesting == "exact", -len(f.labels), f.node))[:k]

    def summary(self) -> str:
        if not self.fits:
            return "no abstract node with labels below it to check"
        n = len(self.fits)
        verdict = (
            "too few to judge" if not self.judged else "plausible" if self.plausible else "implausible (most of them)"
        )
        return (
            f"{self.shallow} of {n} abstract nodes within {SHALLOW_STEPS} steps of {self.top} "
            f"(random label orders: {self.random_shallow:.1f}), mean {self.mean_steps:.1f} steps below it "
            f"(random: {self.random_mean_steps:.1f}): {verdict}"
        )

    def to_meta(self) -> dict[str, Any]:
        return {
            "rule": f"implausible when most abstract nodes' labels share no WordNet hypernym more than "
            f"{SHALLOW_STEPS} steps below {self.top}, the one common to all the dataset's labels",
            "top": self.top,
            "shallow": self.shallow,
            "abstract_nodes": len(self.fits),
            "mean_steps": round(self.mean_steps, 3),
            "random_orders": {
                "n": RANDOM_ORDERS,
                "shallow": round(self.random_shallow, 3),
                "mean_steps": round(self.random_mean_steps, 3),
            },
            "verdict": "plausible"
            if self.plausible and self.judged
            else "implausible"
            if self.judged
            else "not judged",
            "fits": [f.to_dict() for f in self.fits],
        }


def _nesting(v: int, children: Sequence[int], counts: Cooccurrence) -> str:
    """An abstract node is on exactly when one of its children is: its count against the union
    of theirs. Pair counts pin that union for up to two children and bound it for more: at
    least the sum minus every pair (Bonferroni), at most the sum minus the pairs of a maximum
    spanning tree (Hunter). "exact": the count is the pinned union; "approximate": within the
    bounds; "+N images": N more than the union can be (images none of its children has)."""
    nums, adj = counts.nums, counts.adj
    c = list(children)
    total = float(nums[c].sum())
    pairs = float(sum(adj[a, b] for i, a in enumerate(c) for b in c[i + 1 :]))
    low = max(float(nums[c].max()), total - pairs)
    tree, reached = 0.0, {c[0]}  # Prim: the heaviest spanning tree of the pair counts
    while len(reached) < len(c):
        weight, nxt = max((float(adj[a, b]), b) for a in reached for b in c if b not in reached)
        tree, reached = tree + weight, reached | {nxt}
    high = max(low, total - tree)
    count = float(nums[v])
    if count > high:
        return f"+{count - high:g} images"
    if count < low:
        return f"-{low - count:g} images"
    return "exact" if low == high else "approximate"


def assess(graph: LabelGraph, counts: Cooccurrence, synsets: Sequence[str], seed: int = 0) -> Plausibility:
    """The WordNet fit of each abstract node of ``graph`` (recovered from ``counts``, which are
    in the graph's node order; ``synsets`` are its dataset labels')."""
    k = graph.n_labels
    hypernyms = _Hypernyms(synsets)
    top = hypernyms.common(range(k))
    top_depth = hypernyms.min_depth.get(top, 0)
    below = _labels_below(graph.edges, k)
    children: dict[int, list[int]] = {}
    for p, c in graph.edges:
        children.setdefault(p, []).append(c)
    groups = [(v, below[v]) for v in range(k, graph.n) if any(synsets[u] for u in below.get(v, []))]

    def steps(common: str) -> int:
        return hypernyms.min_depth[common] - top_depth if common else 0

    fits = []
    for v, group in groups:
        common = hypernyms.common(group)
        fits.append(
            NodeFit(
                node=graph.nodes[v],
                labels=tuple(graph.nodes[u] for u in group),
                hypernym=common,
                depth=hypernyms.min_depth.get(common, -1),
                steps=steps(common),
                nesting=_nesting(v, children[v], counts),
                root=not graph.parents(v),
            )
        )
    rng = np.random.default_rng(seed)
    shallow_random, mean_random = [], []
    for _ in range(RANDOM_ORDERS if groups else 0):
        perm = rng.permutation(k)
        s = [steps(hypernyms.common([int(perm[u]) for u in group])) for _, group in groups]
        shallow_random.append(sum(x <= SHALLOW_STEPS for x in s))
        mean_random.append(float(np.mean(s)))
    return Plausibility(
        fits=tuple(fits),
        top=top,
        shallow=sum(f.steps <= SHALLOW_STEPS for f in fits),
        mean_steps=float(np.mean([f.steps for f in fits])) if fits else 0.0,
        random_shallow=float(np.mean(shallow_random)) if shallow_random else 0.0,
        random_mean_steps=float(np.mean(mean_random)) if mean_random else 0.0,
    )


# ------------------------------------------------------------------ import
@dataclass(frozen=True)
class Recovered:
    """A recovered graph with the label order it was read in and its WordNet fit."""

    graph: LabelGraph
    order: LabelOrder
    plausibility: Plausibility
    authors_file: str | None  # the dataset whose authors' file this is (by sha256), if it is one

    def require_plausible(self, accept_implausible: bool = False) -> None:
        """``BenchError`` (one line naming ``labels`` and ``accept_implausible``) for an
        implausible hierarchy, unless ``accept_implausible``."""
        p, dataset = self.plausibility, self.graph.meta["dataset"]
        if p.plausible or accept_implausible:
            return
        hint = ""
        if dataset in authors_orders()["datasets"] and self.order.kind != "authors":
            hint = " (the authors' files: {labels} authors)"
        raise BenchError(
            f"implausible hierarchy ({dataset} labels in {self.order.source} order): {p.shallow} of {len(p.fits)} "
            f"abstract nodes are within {SHALLOW_STEPS} steps of {p.top}, the WordNet hypernym of all {dataset} "
            f"labels, as with random orders ({p.random_shallow:.1f} of {len(p.fits)}); give the file's row order "
            f"with {{labels}}{hint} or keep it anyway with {{accept_implausible}}",
            options=["labels", "accept_implausible"],
        )


def recover(
    dataset: str, path: str | Path, name: str, trust: bool = False, labels: str | Sequence[str] | None = None
) -> Recovered:
    """The hierarchy of ``dataset``'s extended labels that a co-occurrence file encodes, with
    the file's first rows in the order ``labels`` gives (see :func:`label_order`), checked
    against WordNet but not refused: see :meth:`Recovered.require_plausible`."""
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
    names, synsets = [row.label for row in table], [row.synset for row in table]
    order = label_order(dataset, names, labels)
    counts = read_cooccurrence(path, trust)
    k, n = len(table), len(counts.nums)
    if n < k:
        raise BenchError(f"{path} has {n} labels, fewer than the {k} labels of {dataset}")
    counts = counts.reordered(order.permutation(names) + list(range(k, n)))  # the dataset's order
    edges = recover_edges(counts, k)
    abstract, ids = abstract_names(edges, n, names, synsets)
    graph = LabelGraph(
        name,
        tuple(names + abstract),
        tuple(edges),
        k,
        ids=tuple(synsets + ids),
        source=f"co-occurrence:{Path(path).name}",
        meta={
            "dataset": dataset,
            "file": str(Path(path).name),
            "file_label_order": list(order.names),
            "file_label_order_source": order.source + (" (assumed)" if order.assumed else ""),
            "abstract_names": "lowest common WordNet hypernym",
        },
    )
    plausibility = assess(graph, counts, synsets)
    graph = replace(graph, meta={**graph.meta, "plausibility": plausibility.to_meta()})
    return Recovered(graph, order, plausibility, authors_file(path))


def import_graph(
    dataset: str,
    path: str | Path,
    name: str,
    trust: bool = False,
    labels: str | Sequence[str] | None = None,
    accept_implausible: bool = False,
) -> LabelGraph:
    """:func:`recover`, refusing an implausible hierarchy unless ``accept_implausible``."""
    recovered = recover(dataset, path, name, trust, labels)
    recovered.require_plausible(accept_implausible)
    return recovered.graph


# ------------------------------------------------------------------ diff
@dataclass(frozen=True)
class NodeDiff:
    """One group of dataset labels: the node above exactly them in each graph (or none)."""

    labels: tuple[str, ...]
    in_a: str | None
    in_b: str | None


def graph_groups(g: LabelGraph) -> dict[tuple[str, ...], str]:
    """Each group of dataset labels that a node has below it, and that node (abstract nodes
    first, then dataset labels with labels below them, e.g. NUS-WIDE's ``animal``)."""
    out: dict[tuple[str, ...], str] = {}
    for v in [*range(g.n_labels, g.n), *range(g.n_labels)]:
        under = tuple(sorted(g.nodes[u] for u in g.descendants(v) if u < g.n_labels and u != v))
        if under:
            out.setdefault(under, g.nodes[v])
    return out


def graph_diff(a: LabelGraph, b: LabelGraph) -> list[NodeDiff]:
    """Nodes matched by the dataset labels below them: the same group in both graphs, or a
    group only one graph has. Both graphs must have the same dataset labels."""
    if set(a.labels) != set(b.labels):
        only = sorted(set(a.labels) ^ set(b.labels))
        raise BenchError(
            f"graphs {a.name!r} and {b.name!r} have other dataset labels ({', '.join(only[:5])}): compare graphs of "
            "one dataset"
        )
    ga, gb = graph_groups(a), graph_groups(b)
    keys = sorted(set(ga) | set(gb), key=lambda k: (-len(k), k))
    return [NodeDiff(k, ga.get(k), gb.get(k)) for k in keys]
