"""Ψ = h(Ω) of one target set, explained (what ``bench kg closure`` prints): the targets'
ancestors and descendants as the graph store returns them, the prediction they are applied to,
Ψ from ``kg.closure``, and the Cypher that ran."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError
from kg.graph import LabelGraph
from kg.stores import GraphStore


@dataclass
class Explained:
    """One target set's Ψ over the graph's nodes (0/1 arrays ``[n]``) and where it came from."""

    graph: LabelGraph
    targets: list[int]
    ancestors: set[int]
    descendants: set[int]
    prediction: np.ndarray
    psi: np.ndarray
    turn_on: bool
    cypher: list[tuple[str, str, str]]  # (query text, dialect, query name)
    note: str = ""  # where the answer came from when not from the store asked


def explain_closure(
    store: GraphStore | None,
    graph: LabelGraph,
    targets: Sequence[str],
    positive: Sequence[str] | None = None,
    turn_on: bool = False,
) -> Explained:
    """Ψ of ``targets`` given the labels predicted ``positive`` (their ancestors become positive
    too). ``positive=None``: turn-off, the targets with all their ancestors and descendants (the
    largest Ψ); turn-on, nothing. The store is only read: a graph it lacks (or holds another
    version of) is answered from its file in a temporary in-memory store, and ``note`` says so
    (``store=None``: no store at all, the temporary one answers and the caller says why)."""
    target_idx = check_targets(graph, targets)
    stored = store.graphs().get(graph.name) if store is not None else None
    if store is not None and stored is not None and stored.sha256 == graph.sha256:
        return _explain(store, graph, targets, target_idx, positive, turn_on, "")
    from kg.stores import open_store  # a read command never writes to the store: a temporary one answers

    note = ""
    if store is not None:
        what = "is not in" if stored is None else "differs from its copy in"
        note = (
            f"graph {graph.name!r} {what} {store.location}: answered from its graph file in a temporary "
            f"in-memory store (`bench kg load --graph {graph.name}` stores it)"
        )
    with open_store("ladybug", path=":memory:") as temporary:
        temporary.load(graph)
        return _explain(temporary, graph, targets, target_idx, positive, turn_on, note)


def _explain(
    store: GraphStore,
    graph: LabelGraph,
    targets: Sequence[str],
    target_idx: list[int],
    positive: Sequence[str] | None,
    turn_on: bool,
    note: str,
) -> Explained:
    import torch

    from kg.closure import GraphTensors, turn_off_closure, turn_on_closure

    ancestors = store.ancestors(graph.name, list(targets))
    descendants = store.descendants(graph.name, list(targets))
    used = [(store.cypher(q), store.dialect, q) for q in ("ancestors", "descendants")]
    up = {graph.index(x) for xs in ancestors.values() for x in xs}
    down = {graph.index(x) for xs in descendants.values() for x in xs}
    pred = _prediction(graph, positive, target_idx, up, down, turn_on)
    g = GraphTensors(graph)
    pred_t, target_t = torch.from_numpy(pred)[None], g.mask(target_idx)
    if turn_on:
        psi = turn_on_closure(pred_t, target_t, g)[0]
    else:
        psi = turn_off_closure(pred_t, target_t, g, descendants=g.mask(sorted(down)))[0]
    return Explained(graph, target_idx, up, down, pred, psi.numpy(), turn_on, used, note)


def check_targets(graph: LabelGraph, targets: Sequence[str]) -> list[int]:
    """The targets' node indices; an empty set or an unknown label is one line (before any store opens)."""
    if not targets:
        raise BenchError("{targets} is empty; name one or more labels, e.g. cat,dog", options=["targets"])
    return graph.indices(list(targets))


def _prediction(
    graph: LabelGraph, positive: Sequence[str] | None, targets: list[int], up: set[int], down: set[int], turn_on: bool
) -> np.ndarray:
    """The positive nodes as a 0/1 prediction over the extended label space."""
    chosen = ([] if turn_on else sorted(set(targets) | up | down)) if positive is None else graph.indices(positive)
    onehot = np.zeros((1, graph.n), dtype=np.float32)
    onehot[0, chosen] = 1.0
    pred = graph.extend_labels(onehot)[0] > 0
    for t in targets:
        if pred[t] == turn_on:
            state, attack, need = (
                ("already positive", "turn-on", "negative") if turn_on else ("not positive", "turn-off", "positive")
            )
            raise BenchError(
                f"target {graph.nodes[t]!r} is {state}: a {attack} attack needs its targets {need} "
                "(name the positive labels with {positive})",
                options=["positive"],
            )
    return pred
