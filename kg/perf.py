"""``bench perf kg``: resolving every target combination of size k through the graph store.

Two ways are timed in one run on a temporary Ladybug store: all combinations in one Cypher
round trip (each label's ancestors and descendants fetched once, the unions taken on arrays:
``GraphStore.combination_masks``, what a sweep uses), and one round trip per combination, on
an evenly spaced sample of at most ``SAMPLE`` combinations (the per-combination time is
linear). Both are checked against the graph's own ancestors and descendants.
"""

from __future__ import annotations

import itertools
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.errors import InvalidValue
from kg.graph import LabelGraph
from kg.stores import open_store

SAMPLE = 1_000
MAX_COMBINATIONS = 2_000_000  # sent in one round trip; the masks and the query's parameters grow with it


@dataclass(frozen=True)
class KgPerf:
    """Seconds for all combinations in one round trip; seconds per combination one at a time."""

    graph: str
    k: int
    combinations: int
    repeats: int
    together: float  # median of ``repeats``
    one_each: float  # seconds per combination, one round trip each
    sampled: int  # combinations timed one at a time
    identical: bool  # both equal the graph's own closure

    @property
    def ratio(self) -> float:
        return self.one_each * self.combinations / self.together


def synthetic_tree(n_labels: int = 20, n_abstract: int = 15, seed: int = 0) -> LabelGraph:
    """A random tree with VOC's shape: ``n_abstract`` abstract nodes above ``n_labels`` leaves."""
    rng = np.random.default_rng(seed)
    top = n_labels
    edges = [(int(rng.integers(top, j)), j) for j in range(top + 1, top + n_abstract)]
    edges += [(int(rng.integers(top, top + n_abstract)), i) for i in range(n_labels)]
    nodes = tuple(f"label{i}" for i in range(n_labels)) + tuple(f"abstract{j}" for j in range(n_abstract))
    return LabelGraph("synthetic", nodes, tuple(edges), n_labels, source="random tree")


def reference_masks(graph: LabelGraph, combos: list[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """``[C, n]`` unions of the members' ancestors and descendants, from the graph in Python."""
    up = np.zeros((len(combos), graph.n), dtype=bool)
    down = np.zeros_like(up)
    for i, combo in enumerate(combos):
        up[i, list(set().union(*(graph.ancestors(x) for x in combo)))] = True
        down[i, list(set().union(*(graph.descendants(x) for x in combo)))] = True
    return up, down


def measure_kg(
    graph: LabelGraph, k: int, repeats: int = 5, track: Callable | None = None, store_kind: str = "ladybug"
) -> KgPerf:
    """Time ``graph``'s combinations of ``k`` labels both ways (``track`` wraps the sample loop)
    on a temporary Ladybug store, or on the Neo4j server of ``NEO4J_URI`` (under a name of its
    own, dropped afterwards)."""
    if repeats < 1:
        raise InvalidValue("repeats", repeats, "must be at least 1")
    if not 1 <= k <= graph.n_labels:
        raise InvalidValue("size", k, f"must be between 1 and the {graph.n_labels} labels of {graph.name!r}")
    count = math.comb(graph.n_labels, k)
    if count > MAX_COMBINATIONS:
        memory = count * (64 + 8 * k + 4 * graph.n)  # the combinations as tuples, the answer's masks both ways
        raise InvalidValue(
            "size",
            k,
            f"makes {count:,} combinations of the {graph.n_labels} labels of {graph.name!r} "
            f"(about {memory / 2**30:,.1f} GiB to hold); at most {MAX_COMBINATIONS:,} are timed",
        )
    combos = list(itertools.combinations(graph.labels, k))
    sample = combos[:: max(len(combos) // SAMPLE, 1)][:SAMPLE]
    with tempfile.TemporaryDirectory(prefix="bench-perf-kg-") as tmp:
        options = {"path": Path(tmp) / "perf.lbug"} if store_kind == "ladybug" else {}
        with open_store(store_kind, **options) as store:
            graph = replace(graph, name=f"bench_perf_{graph.name}")
            store.load(graph)
            try:
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    together = store.combination_masks(graph.name, combos)
                    times.append(time.perf_counter() - start)
                start = time.perf_counter()
                singles = [store.combination_masks(graph.name, [c]) for c in (track or iter)(sample)]
                one_each = (time.perf_counter() - start) / len(sample)
            finally:
                store.drop(graph.name)
    up, down = reference_masks(graph, combos)
    n = together.ancestors.shape[1]
    identical = (
        not up[:, n:].any()
        and not down[:, n:].any()
        and np.array_equal(together.ancestors, up[:, :n])
        and np.array_equal(together.descendants, down[:, :n])
    )
    at = {c: i for i, c in enumerate(combos)}
    for combo, single in zip(sample, singles):
        m = single.ancestors.shape[1]
        identical &= np.array_equal(single.ancestors[0], up[at[combo], :m]) and not up[at[combo], m:].any()
        identical &= np.array_equal(single.descendants[0], down[at[combo], :m]) and not down[at[combo], m:].any()
    return KgPerf(graph.name, k, len(combos), repeats, statistics.median(times), one_each, len(sample), bool(identical))
