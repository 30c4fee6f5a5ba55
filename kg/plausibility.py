"""Whether a hierarchy recovered from co-occurrence counts is plausible: its WordNet fit.

Rows in the wrong order still give a tree, but its groups of labels are unrelated. For each
abstract node, the labels below it are scored by their lowest common WordNet hypernym: its
depth, and how many steps it lies below the hypernym common to *all* the dataset's labels
(``whole.n.02`` for VOC, ``entity.n.01`` for NUS-WIDE), and whether the node's count is the
union of its children's. The hierarchy is implausible when most abstract nodes lie within
``SHALLOW_STEPS`` steps of that top, as happens for random label orders (the same figures
for random orders are given alongside). ``kg.graph_import.import_graph`` refuses such a
hierarchy unless told to keep it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kg.cooccurrence import Cooccurrence
from kg.graph import LabelGraph
from kg.hypernyms import Hypernyms, labels_below

SHALLOW_STEPS = 2  # an abstract node whose labels share nothing deeper than this below the top fits badly
MIN_JUDGED = 3  # fewer fitted abstract nodes than this: no verdict
RANDOM_ORDERS = 100  # random label orders for the baseline figures (seeded)


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
    hypernyms = Hypernyms(synsets)
    top = hypernyms.common(range(k))
    top_depth = hypernyms.min_depth.get(top, 0)
    below = labels_below(graph.edges, k)
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
