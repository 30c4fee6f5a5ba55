"""The closures a sweep needs from a graph store: for each target combination Ω, the proper
ancestors and descendants of its members as ``[C, n]`` masks (``closure_masks``), with the graph
loaded under its stored name (``stored_graph_name``) and a store held by another sweep waited
for (``STORE_WAIT``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from bench.errors import BenchError, StoreBusy
from kg.catalog import load_graph
from kg.graph import LabelGraph
from kg.stores import GraphStore, open_graph_store

STORE_WAIT = 60.0  # seconds to wait for a graph store held by another sweep


class Labelled(Protocol):
    """A target combination as the stores take it: its members' names."""

    @property
    def labels(self) -> tuple[str, ...]: ...


def stored_graph_name(graph: LabelGraph) -> str:
    """The catalog's name when the graph is the catalog's, else the name with its hash (so a
    restricted or edited graph never replaces the catalog's copy in a shared store)."""
    try:
        same = load_graph(graph.name).sha256 == graph.sha256
    except BenchError:
        same = False
    return graph.name if same else f"{graph.name}-{graph.sha256[:12]}"


def open_waiting(kind: str, path: str | Path | None = None, wait: float = STORE_WAIT) -> GraphStore:
    """``open_graph_store``, retried for up to ``wait`` seconds while another process holds the store."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return open_graph_store(kind, path)
        except StoreBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def closure_masks(
    graph: LabelGraph, combos: Sequence[Labelled], kind: str = "ladybug", path: str | Path | None = None
) -> tuple[Tensor, Tensor]:
    """``[C, n]`` masks of the proper ancestors and descendants of each combination's members,
    from the graph store ``kind`` (a Ladybug store's file: ``path``): the graph is loaded
    idempotently, then one round trip for all."""
    ancestors = torch.zeros(len(combos), graph.n, dtype=torch.bool)
    descendants = torch.zeros_like(ancestors)
    if not combos:
        return ancestors, descendants
    name = stored_graph_name(graph)
    with open_waiting(kind, path) as store:
        store.load(graph if name == graph.name else replace(graph, name=name))
        masks = store.combination_masks(name, [c.labels for c in combos])
    n = masks.ancestors.shape[1]
    ancestors[:, :n] = torch.from_numpy(masks.ancestors)
    descendants[:, :n] = torch.from_numpy(masks.descendants)
    return ancestors, descendants
