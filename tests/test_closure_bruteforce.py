"""The closures' definitions proved by brute force on every small graph: every DAG on 4 nodes
(all 64 edge sets over a fixed topological order, so every shape), every prediction and every
target set of 1–2 labels; the references below are independent of ``kg.closure`` (per-node
rules of docs/knowledge-graphs.md (Closures) in plain Python, exhaustive search over candidate sets).

Definitions (docs/knowledge-graphs.md, "Closures"):

* turn-off Ψ = the smallest set containing Ω and its positive descendants whose flip breaks no
  node rule that held before; hence locally consistent at Ω and globally consistent whenever
  the clean prediction was;
* turn-on Ψ = Ω plus negative nodes on upward and downward paths; whenever the clean
  prediction is consistent its flip is globally consistent and locally consistent at Ω, and
  no node of Ψ \\ Ω can be left out (inclusion-minimal); with one target on a tree it is the
  official ``compute_tree_on_global_loss``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from kg.closure import GraphTensors, turn_off_closure, turn_on_closure
from kg.closure_official import official_closure, official_turn_off, official_turn_on
from kg.graph import LabelGraph
from tests.test_closure import ref_local

N = 4


def all_dags(n: int) -> list[LabelGraph]:
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return [
        LabelGraph("bf", tuple(f"n{i}" for i in range(n)), tuple(p for k, p in enumerate(pairs) if mask >> k & 1), n)
        for mask in range(1 << len(pairs))
    ]


def child_rule(pred, v: int, g: LabelGraph) -> bool:
    """C(v): ON with children ⇒ an ON child; OFF ⇒ every ON child has an ON parent."""
    children = g.children(v)
    if pred[v]:
        return not children or any(pred[c] for c in children)
    return all(any(pred[p] for p in g.parents(c)) for c in children if pred[c])


def parent_rule(pred, v: int, g: LabelGraph) -> bool:
    """P(v): ON with parents ⇒ an ON parent; OFF ⇒ every ON parent has an ON child."""
    parents = g.parents(v)
    if pred[v]:
        return not parents or any(pred[p] for p in parents)
    return all(any(pred[c] for c in g.children(p)) for p in parents if pred[p])


def rules(pred, g: LabelGraph) -> set[tuple[str, int]]:
    return {
        (kind, v)
        for v in range(g.n)
        for kind, ok in (("C", child_rule(pred, v, g)), ("P", parent_rule(pred, v, g)))
        if ok
    }


def flipped(pred, nodes, value: bool):
    out = np.array(pred, dtype=bool)
    out[list(nodes)] = value
    return out


def cases():
    for g in all_dags(N):
        for bits in range(1 << N):
            pred = np.array([bits >> i & 1 for i in range(N)], dtype=bool)
            yield g, pred


def consistent_on(g: LabelGraph, pred, nodes, omega) -> bool:
    """Switching ``nodes`` on leaves a globally consistent prediction, locally consistent at Ω."""
    after = flipped(pred, nodes, True)
    return len(rules(after, g)) == 2 * g.n and all(ref_local(after, t, g) for t in omega)


def closure_of(fn, g: LabelGraph, pred, omega) -> set[int]:
    row = torch.zeros(1, g.n, dtype=torch.bool)
    row[0, list(omega)] = True
    return {int(v) for v in np.flatnonzero(fn(torch.from_numpy(pred)[None], row, GraphTensors(g))[0].numpy())}


def test_turn_off_is_the_smallest_set_that_breaks_no_rule():
    checked = consistent = 0
    for g, pred in cases():
        held = rules(pred, g)
        is_consistent = len(held) == 2 * g.n
        positives = [int(v) for v in np.flatnonzero(pred)]
        for k in (1, 2):
            for omega in itertools.combinations(positives, k):
                psi = closure_of(turn_off_closure, g, pred, omega)
                base = set(omega) | {d for t in omega for d in g.descendants(t) if pred[d]}
                where = f"edges {g.edges}, prediction {pred.astype(int)}, Ω {omega}: Ψ {sorted(psi)}"
                assert base <= psi <= set(positives), f"{where}: Ψ holds Ω and its positive descendants, positives only"
                rest = [v for v in positives if v not in base]
                valid = [
                    base | set(extra)
                    for r in range(len(rest) + 1)
                    for extra in itertools.combinations(rest, r)
                    if held <= rules(flipped(pred, base | set(extra), False), g)
                ]
                smallest = min(len(s) for s in valid)
                assert [s for s in valid if len(s) == smallest] == [psi], (
                    f"{where}: the smallest valid sets are {valid}"
                )
                after = flipped(pred, psi, False)
                if is_consistent:
                    consistent += 1
                    assert all(ref_local(after, t, g) for t in omega), f"{where}: not locally consistent at Ω"
                    assert len(rules(after, g)) == 2 * g.n, f"{where}: a consistent prediction became inconsistent"
                checked += 1
    assert checked > 3000 and consistent > 500, f"{checked} cases, {consistent} with a consistent prediction"


def test_turn_on_is_consistent_and_inclusion_minimal():
    checked = 0
    for g, pred in cases():
        if len(rules(pred, g)) != 2 * g.n:
            continue
        negatives = [int(v) for v in np.flatnonzero(~pred)]
        for k in (1, 2):
            for omega in itertools.combinations(negatives, k):
                psi = closure_of(turn_on_closure, g, pred, omega)
                where = f"edges {g.edges}, prediction {pred.astype(int)}, Ω {omega}: Ψ {sorted(psi)}"
                assert set(omega) <= psi <= set(negatives), f"{where}: Ψ holds Ω and negative nodes only"

                assert consistent_on(g, pred, psi, omega), f"{where}: not consistent after the flip"
                for v in psi - set(omega):
                    assert not consistent_on(g, pred, psi - {v}, omega), f"{where}: {v} is not needed"
                if g.is_tree and k == 1:
                    assert psi == official_turn_on(pred, list(omega), g), f"{where}: differs from the official rule"
                checked += 1
    assert checked > 1000, f"{checked} cases"


def graph(edges, n) -> LabelGraph:
    return LabelGraph("case", tuple(f"n{i}" for i in range(n)), tuple(edges), n)


# The cases of docs/knowledge-graphs.md: (edges, clean ON, Ω, ours, official)
TURN_OFF_CASES = [
    (((2, 1), (2, 0), (1, 0)), {0, 1, 2}, {1}, {0, 1, 2}, {0, 1}),  # Tiara / Fashion accessory / Clothing
    (((1, 0), (1, 3), (2, 0), (2, 3)), {0, 1, 3}, {0}, {0}, {0, 1, 3}),  # Goggles / Glasses / Personal care
    (((1, 2), (1, 3), (2, 0)), {0, 1, 3}, {3}, {1, 3}, {0, 1, 3}),  # inconsistent clean prediction
    (((0, 1), (0, 2)), {1, 2}, {2}, {2}, {1, 2}),  # a tree, inconsistent clean prediction
]
TURN_ON_CASES = [
    (((0, 1), (0, 2), (2, 3)), set(), {0, 3}, {0, 2, 3}, {0, 1, 2, 3}),
    (((1, 3), (2, 0), (2, 3)), set(), {0, 3}, {0, 2, 3}, {0, 2, 3}),
    (((0, 1), (1, 2)), {1}, {2}, {0, 2}, {0, 2}),  # inconsistent clean prediction: up through the ON parent
]


@pytest.mark.parametrize(("edges", "on", "omega", "ours", "official"), TURN_OFF_CASES + TURN_ON_CASES)
def test_documented_cases(edges, on, omega, ours, official):
    n = 1 + max(max(e) for e in edges)
    g = graph(edges, n)
    pred = np.array([v in on for v in range(n)])
    turn_on = (edges, on, omega, ours, official) in TURN_ON_CASES
    assert closure_of(turn_on_closure if turn_on else turn_off_closure, g, pred, omega) == ours, "this benchmark's rule"
    rule = official_turn_on if turn_on else official_turn_off
    assert rule(pred, sorted(omega), g) == official, "the official rule"
    row = torch.zeros(1, n, dtype=torch.bool)
    row[0, list(omega)] = True
    batched = official_closure(torch.from_numpy(pred)[None], row, g, turn_on)[0]
    assert set(np.flatnonzero(batched.numpy()).tolist()) == official, "closure='official' on tensors"
