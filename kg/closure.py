"""Consistent target sets h(Ω, G) and consistency checks, batched on tensors.

Definitions (the paper, Mahmood & Elhamifar, "Semantic-Aware Multi-Label Adversarial
Attacks", CVPR 2024; its official code's ``scripts/tree_loss.py``, in
github.com/hassan-mahmood/SemanticMLLAttacks; with the cases: docs/knowledge-graphs.md,
Closures):

* **Turn-off closure** Ψ = h(Ω): the targets, their descendants that are positive, and each
  positive node left without a positive child (repeated; on a tree, the ancestors).
* **Turn-on closure**: the targets, plus the negative nodes on one path up (while no parent
  is positive, the first parent) and one path down (while no child is positive, the first
  child), so that the result is consistent again.
* The official code's rules are ``kg.closure_official`` (``closure="official"``); where they
  differ and why: docs/knowledge-graphs.md.
* **Consistency**, per node ``v`` of a 0/1 prediction:
    - child rule C(v): if v is ON and has children, one child is ON; if v is OFF, every ON
      child of v has some ON parent;
    - parent rule P(v): if v is ON and has parents, one parent is ON; if v is OFF, every ON
      parent of v has some ON child.
  *Local* consistency at k = C on k and all its descendants and P on k and all its
  ancestors (the recursive checks started at k). *Global* = C and P at every node.

Everything works on a batch ``[B, n]`` of boolean predictions with a few dense matrix
products per call, no per-image Python recursion. The graph space is the extended label
space of the model (node i = output i).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.errors import BenchError
from kg.graph import LabelGraph


class GraphTensors:
    """Dense matrices of a ``LabelGraph`` on one device.

    ``adj[p, c] = 1`` for an edge p → c; ``reach[a, d] = 1`` when a is a proper ancestor of d;
    ``first_parent`` / ``first_child`` select the lowest-index parent / child (turn-on paths).
    """

    def __init__(self, graph: LabelGraph, device: torch.device | str | None = None) -> None:
        self.graph = graph
        self.n = graph.n
        dev = torch.device(device) if device is not None else torch.device("cpu")
        self.adj = torch.from_numpy(graph.adjacency()).to(dev)
        self.reach = torch.from_numpy(graph.reachability()).to(dev)
        eye = torch.eye(self.n, device=dev)
        self.reach_self = torch.clamp(self.reach + eye, max=1.0)  # ancestor-or-self
        self.has_children = self.adj.sum(1) > 0
        self.has_parents = self.adj.sum(0) > 0
        self.first_parent = torch.zeros_like(self.adj)  # [child, parent]
        self.first_child = torch.zeros_like(self.adj)  # [parent, child]
        for v in range(self.n):
            ps, cs = graph.parents(v), graph.children(v)
            if ps:
                self.first_parent[v, min(ps)] = 1.0
            if cs:
                self.first_child[v, min(cs)] = 1.0

    @property
    def device(self) -> torch.device:
        return self.adj.device

    def to(self, device: torch.device | str) -> GraphTensors:
        if torch.device(device) == self.device:
            return self
        return GraphTensors(self.graph, device)

    def mask(self, names_or_indices, batch: int = 1) -> Tensor:
        """A ``[batch, n]`` boolean mask with the given nodes set."""
        m = torch.zeros(batch, self.n, dtype=torch.bool, device=self.device)
        m[:, self.graph.indices(names_or_indices)] = True
        return m


def _f(x: Tensor) -> Tensor:
    return x.to(torch.float32)


def _check(pred: Tensor, g: GraphTensors, *others: Tensor | None) -> None:
    if pred.dim() != 2 or pred.shape[1] != g.n:
        raise BenchError(f"predictions of shape {tuple(pred.shape)} do not fit a graph of {g.n} nodes")
    for t in others:
        if t is not None and t.shape != pred.shape:
            raise BenchError(f"mask of shape {tuple(t.shape)} does not match predictions {tuple(pred.shape)}")


def descendants_of(nodes: Tensor, g: GraphTensors) -> Tensor:
    """``[B, n]`` mask of proper descendants of the masked nodes."""
    return (_f(nodes) @ g.reach) > 0


def turn_off_closure(pred: Tensor, targets: Tensor, g: GraphTensors, descendants: Tensor | None = None) -> Tensor:
    """Ψ = h(Ω) for switching the targets OFF, per image (docs/knowledge-graphs.md, "Closures").

    Ψ is the targets, their positive descendants, and then, repeatedly, every positive node
    that had a positive child in the clean prediction and has none left outside Ψ (on a tree:
    the positive ancestors left without a positive child; on a DAG also a co-parent of a
    switched-off descendant). It is the smallest set containing Ω and its positive descendants
    whose flip breaks no consistency rule that held before: locally consistent at Ω, and
    globally consistent when the clean prediction was (tests/test_closure_bruteforce.py).

    Args:
        pred: ``[B, n]`` bool, the clean prediction (logit > 0).
        targets: ``[B, n]`` bool, Ω for each row.
        g: the graph's tensors.
        descendants: ``[B, n]`` bool, Ω's proper descendants as the graph store returns them;
            computed from ``g`` when omitted.

    Returns:
        ``[B, n]`` bool: the nodes whose prediction must flip to 0 (always includes Ω).
    """
    pred, targets = pred.bool(), targets.bool()
    _check(pred, g, targets, descendants)
    if descendants is None:
        descendants = descendants_of(targets, g)
    psi = targets | (descendants.bool() & pred)
    adj_t = g.adj.T
    had_child = pred & ((_f(pred) @ adj_t) > 0)  # ON with an ON child in the clean prediction
    for _ in range(g.n):
        childless = (_f(pred & ~psi) @ adj_t) == 0  # no positive child left
        new = had_child & ~psi & childless
        if not bool(new.any()):
            break
        psi = psi | new
    return psi


def turn_on_closure(pred: Tensor, targets: Tensor, g: GraphTensors) -> Tensor:
    """Ψ for switching the targets ON: the targets and the negative nodes they need above and below.

    Upwards first: while some node of Ψ, or a positive ancestor of Ψ, has parents and none of
    them is positive (in the prediction or in Ψ), the lowest-index such node takes its
    lowest-index parent; then downwards the same with children (a positive node needs a
    positive child). One node at a time, by index, so Ψ does not depend on the order of the
    targets; finally each added node whose absence keeps the prediction as consistent is left
    out (highest index first), so no node of Ψ \\ Ω is unneeded. On a tree with one target
    this is the official ``compute_tree_on_global_loss``; ``kg.closure_official`` has the
    official per-target rule (docs/knowledge-graphs.md).
    """
    pred, targets = pred.bool(), targets.bool()
    _check(pred, g, targets)
    psi = targets & ~pred
    for step, relation, related, has_next in (
        (g.adj, g.first_parent, g.reach.T, g.has_parents),  # ON needs an ON parent
        (g.adj.T, g.first_child, g.reach, g.has_children),  # ON needs an ON child
    ):
        for _ in range(g.n + 1):
            on = pred | psi
            scope = psi | (pred & ((_f(psi) @ related) > 0))
            need = scope & has_next & ((_f(on) @ step) == 0)
            todo = need.any(dim=1)
            if not bool(todo.any()):
                break
            first = need.to(torch.int8).argmax(dim=1)  # the lowest-index node in need, per row
            new = (relation[first] > 0) & todo[:, None] & ~on
            psi = psi | new
    return _prune(pred, targets, psi, g)


def _kept_rules(before: tuple[Tensor, Tensor], after: tuple[Tensor, Tensor]) -> Tensor:
    """``[B]``: every node rule that held before still holds."""
    return ((~before[0] | after[0]) & (~before[1] | after[1])).all(dim=1)


def _prune(pred: Tensor, targets: Tensor, psi: Tensor, g: GraphTensors) -> Tensor:
    """Leave out, highest index first, each node of Ψ \\ Ω whose absence keeps every rule that
    held before and local consistency at Ω (a path made unneeded by a shortcut edge)."""
    before = node_rules(pred, g)
    for _ in range(g.n):  # passes until nothing more can go (a removal can free another node)
        changed = False
        for v in reversed(range(g.n)):
            removable = psi[:, v] & ~targets[:, v]
            if not bool(removable.any()):
                continue
            candidate = psi.clone()
            candidate[:, v] = False
            after = pred | candidate
            drop = removable & _kept_rules(before, node_rules(after, g)) & consistent_at(after, targets, g)
            if bool(drop.any()):
                psi, changed = torch.where(drop[:, None], candidate, psi), True
        if not changed:
            break
    return psi


def node_rules(pred: Tensor, g: GraphTensors) -> tuple[Tensor, Tensor]:
    """Per-node child rule C(v) and parent rule P(v), each ``[B, n]`` bool (True = holds)."""
    pred = pred.bool()
    _check(pred, g)
    p = _f(pred)
    n_on_children = p @ g.adj.T
    n_on_parents = p @ g.adj
    orphan = pred & (n_on_parents == 0)  # ON with no ON parent
    off_above_orphan = ~pred & ((_f(orphan) @ g.adj.T) > 0)
    child_ok = ~g.has_children | ((~pred | (n_on_children > 0)) & ~off_above_orphan)
    childless = pred & (n_on_children == 0)  # ON with no ON child
    off_below_childless = ~pred & ((_f(childless) @ g.adj) > 0)
    parent_ok = ~g.has_parents | ((~pred | (n_on_parents > 0)) & ~off_below_childless)
    return child_ok, parent_ok


def local_consistency(pred: Tensor, g: GraphTensors) -> Tensor:
    """``[B, n]`` bool: the prediction is locally consistent at each node k."""
    child_ok, parent_ok = node_rules(pred, g)
    bad_below = (_f(~child_ok) @ g.reach_self.T) > 0  # some v in {k} ∪ desc(k) breaks C
    bad_above = (_f(~parent_ok) @ g.reach_self) > 0  # some v in {k} ∪ anc(k) breaks P
    return ~(bad_below | bad_above)


def consistent_at(pred: Tensor, nodes: Tensor, g: GraphTensors) -> Tensor:
    """``[B]`` bool: locally consistent at every masked node of each row."""
    return (local_consistency(pred, g) | ~nodes.bool()).all(dim=1)


def global_consistency(pred: Tensor, g: GraphTensors) -> Tensor:
    """``[B]`` bool: every node satisfies both rules."""
    child_ok, parent_ok = node_rules(pred, g)
    return (child_ok & parent_ok).all(dim=1)
