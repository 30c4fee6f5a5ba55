"""Random label graphs for property tests (hypothesis strategies and plain generators) and graph references."""

from __future__ import annotations

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from kg.graph import LabelGraph


def random_dag(rng: np.random.Generator, n: int, p_edge: float = 0.3, tree: bool = False) -> LabelGraph:
    """A DAG on ``n`` nodes: edges only from a lower to a higher position of a random order.

    With ``tree=True`` every node gets at most one parent (a forest).
    """
    order = rng.permutation(n)
    edges = []
    for j in range(1, n):
        lower = order[:j]
        if tree:
            if rng.random() < 0.85:
                edges.append((int(rng.choice(lower)), int(order[j])))
        else:
            for i in lower:
                if rng.random() < p_edge:
                    edges.append((int(i), int(order[j])))
    n_labels = int(rng.integers(1, n + 1))
    return LabelGraph("random", tuple(f"n{i}" for i in range(n)), tuple(edges), n_labels)


@st.composite
def dags(draw, min_nodes: int = 1, max_nodes: int = 12, tree: bool | None = None) -> LabelGraph:
    n = draw(st.integers(min_nodes, max_nodes))
    seed = draw(st.integers(0, 2**32 - 1))
    is_tree = draw(st.booleans()) if tree is None else tree
    p_edge = draw(st.sampled_from([0.15, 0.3, 0.5]))
    return random_dag(np.random.default_rng(seed), n, p_edge=p_edge, tree=is_tree)


def consistent_prediction(graph: LabelGraph, rng: np.random.Generator) -> np.ndarray:
    """A globally consistent 0/1 prediction: some leaves ON with all their ancestors."""
    pred = np.zeros(graph.n, dtype=bool)
    for leaf in graph.leaves:
        if rng.random() < 0.5:
            pred[leaf] = True
            pred[list(graph.ancestors(leaf))] = True
    return pred


def expected_extended(graph: LabelGraph, positives: set[str]) -> np.ndarray:
    """Independent reference: the labels and all their networkx ancestors."""
    g = graph.to_networkx()
    on = {graph.index(p) for p in positives}
    for v in list(on):
        on |= nx.ancestors(g, v)
    out = np.zeros(graph.n, dtype=np.float32)
    out[list(on)] = 1
    return out
