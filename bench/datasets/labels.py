"""Dataset classes → graph labels: which graph a dataset uses, where each class goes in the
graph's extended label order, and the extended targets (a label's ancestors are positive)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from bench.errors import BenchError
from kg.catalog import load_graph
from kg.graph import LabelGraph


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def graph_for(name: str, graph: LabelGraph | str | None) -> LabelGraph:
    """The graph a dataset is labelled with: ``graph`` (object, name or path) or the one named ``name``."""
    if isinstance(graph, LabelGraph):
        return graph
    return load_graph(graph or name)


def class_columns(graph: LabelGraph, classes: Sequence[str], dataset: str) -> list[int]:
    """Graph node index of each dataset class name (compared without case, spaces or ``_``).

    Every dataset class must be a graph label, and every graph label a dataset class.
    """
    by_name = {_norm(n): i for i, n in enumerate(graph.labels)}
    cols = []
    for c in classes:
        if _norm(c) not in by_name:
            raise BenchError(f"graph {graph.name!r} has no label for {dataset} class {c!r}")
        cols.append(by_name[_norm(c)])
    unused = sorted(set(range(graph.n_labels)) - set(cols))
    if unused:
        names = ", ".join(graph.nodes[i] for i in unused[:5])
        raise BenchError(f"graph {graph.name!r} has labels that {dataset} does not have: {names}")
    return cols


def extended_targets(graph: LabelGraph, positives: np.ndarray) -> torch.Tensor:
    """``[N, n_labels]`` or ``[N, n]`` 0/1 → ``[N, n]`` float targets with ancestors set."""
    return torch.from_numpy(graph.extend_labels(positives.astype(np.float32)))
