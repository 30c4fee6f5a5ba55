"""Where two label graphs of one dataset differ (``bench kg diff``), node by node.

Nodes are matched by the dataset labels below them, whatever they are named: a group of
labels both graphs have a node above, or one only one graph has.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import BenchError
from kg.graph import LabelGraph


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
