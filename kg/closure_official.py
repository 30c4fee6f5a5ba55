"""The official code's closures (``scripts/tree_loss.py`` of the GMLA repository, docs/knowledge-graphs.md, Closures),
for reproducing its numbers: ``closure="official"`` in ``pair_targets`` and ``bench run``.

Row by row and recursive, as the official code is; ``kg.closure`` is this benchmark's
definition. Where the two differ (DAGs, inconsistent predictions, several targets switched
on) is written down in docs/knowledge-graphs.md, with the cases.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bench.errors import unknown
from kg.graph import LabelGraph

CLOSURES = ("bench", "official")


def check_closure(name: str) -> str:
    """``name`` if it is a closure rule (``bench``, ``official``); one line with the closest otherwise."""
    if name not in CLOSURES:
        raise unknown("closure", name, CLOSURES)
    return name


def official_turn_off(pred: np.ndarray, targets: list[int], g: LabelGraph) -> set[int]:
    """``compute_tree_off_loss``: switch each target off, then recursively its parents
    (``process_parent``) and children (``process_child``), on a copy of the prediction."""
    targets = g.indices(targets)
    x = np.array(pred, dtype=bool)
    out: set[int] = set()
    x[targets] = False

    def turn_off(i: int) -> None:
        out.add(i)
        x[i] = False
        for p in g.parents(i):
            process_parent(p)
        for c in g.children(i):
            process_child(c)

    def process_parent(p: int) -> None:
        children = g.children(p)
        if x[p]:
            if not any(x[c] for c in children):
                turn_off(p)
        elif any(x[c] for c in children):
            for c in children:
                if x[c]:
                    turn_off(c)
        for q in g.parents(p):
            process_parent(q)

    def process_child(c: int) -> None:
        if x[c]:
            out.add(c)
        x[c] = False
        for d in g.children(c):
            process_child(d)

    for t in targets:
        turn_off(t)
    return out


def official_turn_on(pred: np.ndarray, targets: list[int], g: LabelGraph) -> set[int]:
    """``compute_tree_on_global_loss``, target by target: up through the ON parents (else the
    first parent), then down through the ON children (else the first child); the nodes that
    were already ON need no flip and are left out."""
    x = np.array(pred, dtype=bool)
    out: set[int] = set()

    def walk(v: int, nexts) -> None:
        x[v] = True
        out.add(v)
        following = nexts(v)
        if not following:
            return
        on = [u for u in following if x[u]]
        for u in on or [min(following)]:
            walk(u, nexts)

    for t in g.indices(targets):
        walk(t, g.parents)
        walk(t, g.children)
    return {v for v in out if not pred[v]}


def official_closure(pred: Tensor, targets: Tensor, g: LabelGraph, turn_on: bool = False) -> Tensor:
    """``[B, n]`` bool Ψ of each row by the official rules (targets in ascending index order)."""
    rule = official_turn_on if turn_on else official_turn_off
    out = torch.zeros_like(pred, dtype=torch.bool)
    p, t = pred.bool().cpu().numpy(), targets.bool().cpu().numpy()
    for row in range(p.shape[0]):
        chosen = sorted(rule(p[row], [int(v) for v in np.flatnonzero(t[row])], g))
        out[row, chosen] = True
    return out.to(pred.device)
