"""Consistent target sets h(Ω, G) and consistency checks, batched on tensors.

Definitions (``../shared/paper/notes.md`` §1b–1d, the official ``scripts/tree_loss.py``):

* **Turn-off closure** Ψ = h(Ω): the targets, their descendants that are positive, and each
  positive ancestor of the targets left without a positive child (repeated upwards).
* **Turn-on closure**: the targets, plus the negative nodes on one path up (while no parent
  is positive, the first parent) and one path down (while no child is positive, the first
  child), so that the result is consistent again.
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


def _check(pred: Tensor, g: GraphTensors, *others: Tensor) -> None:
    if pred.dim() != 2 or pred.shape[1] != g.n:
        raise BenchError(f"predictions of shape {tuple(pred.shape)} do not fit a graph of {g.n} nodes")
    for t in others:
        if t is not None and t.shape != pred.shape:
            raise BenchError(f"mask of shape {tuple(t.shape)} does not match predictions {tuple(pred.shape)}")


def descendants_of(nodes: Tensor, g: GraphTensors) -> Tensor:
    """``[B, n]`` mask of proper descendants of the masked nodes."""
    return (_f(nodes) @ g.reach) > 0


def ancestors_of(nodes: Tensor, g: GraphTensors) -> Tensor:
    """``[B, n]`` mask of proper ancestors of the masked nodes."""
    return (_f(nodes) @ g.reach.T) > 0


def turn_off_closure(
    pred: Tensor,
    targets: Tensor,
    g: GraphTensors,
    ancestors: Tensor | None = None,
    descendants: Tensor | None = None,
) -> Tensor:
    """Ψ = h(Ω) for switching the targets OFF, per image.

    Args:
        pred: ``[B, n]`` bool, the clean prediction (logit > 0).
        targets: ``[B, n]`` bool, Ω for each row.
        g: the graph's tensors.
        ancestors, descendants: ``[B, n]`` bool masks of Ω's proper ancestors / descendants,
            as the graph store returns them; computed from ``g`` when omitted.

    Returns:
        ``[B, n]`` bool: the nodes whose prediction must flip to 0 (always includes Ω).
    """
    pred, targets = pred.bool(), targets.bool()
    _check(pred, g, targets, ancestors, descendants)
    if descendants is None:
        descendants = descendants_of(targets, g)
    if ancestors is None:
        ancestors = ancestors_of(targets, g)
    psi = targets | (descendants.bool() & pred)
    candidates = ancestors.bool() & pred & g.has_children & ~psi
    adj_t = g.adj.T
    for _ in range(g.n):
        on = pred & ~psi
        childless = (_f(on) @ adj_t) == 0  # no positive child left
        new = candidates & ~psi & childless
        if not bool(new.any()):
            break
        psi = psi | new
    return psi


def turn_on_closure(pred: Tensor, targets: Tensor, g: GraphTensors) -> Tensor:
    """Ψ for switching the targets ON: targets + the negative nodes needed above and below.

    Upwards, while a node of Ψ has parents and none is positive (in the prediction or in Ψ),
    its first (lowest-index) parent joins; then downwards, while a node of Ψ has children
    and none is positive, its first child joins. Nodes already positive never join (they
    need no flip). On a tree this is the official ``compute_tree_on_global_loss``; on a DAG
    the choice of path is deterministic but one of several consistent ones.
    """
    pred, targets = pred.bool(), targets.bool()
    _check(pred, g, targets)
    psi = targets & ~pred
    # Upwards to a fixed point first, then downwards: an ancestor path added for one target
    # can give another target the positive child it needs, whatever the targets' order.
    for step, relation in ((g.adj, g.first_parent), (g.adj.T, g.first_child)):
        has_next = g.has_parents if relation is g.first_parent else g.has_children
        for _ in range(g.n):
            on = pred | psi
            need = psi & has_next & ((_f(on) @ step) == 0)
            new = ((_f(need) @ relation) > 0) & ~on
            if not bool(new.any()):
                break
            psi = psi | new
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
