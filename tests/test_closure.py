"""The tensor closures and consistency checks against recursive references written from
docs/knowledge-graphs.md, Closures (the official ``tree_loss.py`` logic, re-derived here node by node)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kg.closure import (
    GraphTensors,
    consistent_at,
    global_consistency,
    local_consistency,
    turn_off_closure,
    turn_on_closure,
)
from kg.closure_official import official_turn_off
from kg.graph import LabelGraph
from tests.dags import consistent_prediction, dags

sys.setrecursionlimit(10_000)


# ----------------------------------------------------------------- references
def ref_child_ok(pred, v, g: LabelGraph) -> bool:
    children = g.children(v)
    if not children:
        return True
    if pred[v]:
        all_off = True
        for c in children:
            if not ref_child_ok(pred, c, g):
                return False
            if pred[c]:
                all_off = False
        return not all_off
    for c in children:
        if not ref_child_ok(pred, c, g):
            return False
        if pred[c] and not any(pred[p] for p in g.parents(c)):
            return False
    return True


def ref_parent_ok(pred, v, g: LabelGraph) -> bool:
    parents = g.parents(v)
    if not parents:
        return True
    if pred[v]:
        all_off = True
        for p in parents:
            if not ref_parent_ok(pred, p, g):
                return False
            if pred[p]:
                all_off = False
        return not all_off
    for p in parents:
        if not ref_parent_ok(pred, p, g):
            return False
        if pred[p] and not any(pred[c] for c in g.children(p)):
            return False
    return True


def ref_local(pred, k, g) -> bool:
    return ref_child_ok(pred, k, g) and ref_parent_ok(pred, k, g)


def ref_turn_off_rule(pred, targets, g: LabelGraph) -> set[int]:
    """The rule in words: targets + positive descendants + every positive node that had a
    positive child and has none left outside Ψ (repeated until nothing changes)."""
    psi = set(targets)
    for t in targets:
        psi |= {d for d in g.descendants(t) if pred[d]}
    had_child = {v for v in range(g.n) if pred[v] and any(pred[c] for c in g.children(v))}
    changed = True
    while changed:
        changed = False
        for v in sorted(had_child - psi):
            if not any(pred[c] and c not in psi for c in g.children(v)):
                psi.add(v)
                changed = True
    return psi


def ref_turn_on_official(pred, targets, g: LabelGraph) -> set[int]:
    """``compute_tree_on_global_loss`` (docs/knowledge-graphs.md, Closures), minus the nodes that were already ON.

    All upward passes run before the downward ones, so the result does not depend on the
    order of the targets (the official loop alternates per target)."""
    x = np.array(pred, dtype=bool)
    x[list(targets)] = True
    out: set[int] = set()

    def up(v):
        x[v] = True
        out.add(v)
        parents = g.parents(v)
        if not parents:
            return
        on = [p for p in parents if x[p]]
        for p in on or [min(parents)]:
            up(p)

    def down(v):
        x[v] = True
        out.add(v)
        children = g.children(v)
        if not children:
            return
        on = [c for c in children if x[c]]
        for c in on or [min(children)]:
            down(c)

    for t in targets:
        up(t)
    for t in targets:
        down(t)
    return {v for v in out if not pred[v]}


# ----------------------------------------------------------------- helpers
def as_row(values, n) -> torch.Tensor:
    row = torch.zeros(1, n, dtype=torch.bool)
    row[0, list(values)] = True
    return row


def random_targets(rng, pred, k_max=3, positive=True):
    pool = np.flatnonzero(pred if positive else ~pred)
    if len(pool) == 0:
        return []
    k = int(rng.integers(1, min(k_max, len(pool)) + 1))
    return sorted(int(v) for v in rng.choice(pool, size=k, replace=False))


# ----------------------------------------------------------------- tests
@settings(max_examples=150, deadline=None)
@given(g=dags(max_nodes=10), seed=st.integers(0, 2**32 - 1))
def test_consistency_matches_recursive_reference_on_random_predictions(g, seed):
    rng = np.random.default_rng(seed)
    preds = rng.random((6, g.n)) < rng.uniform(0.1, 0.9)
    gt = GraphTensors(g)
    local = local_consistency(torch.from_numpy(preds), gt).numpy()
    glob = global_consistency(torch.from_numpy(preds), gt).numpy()
    for b, pred in enumerate(preds):
        expected_local = [ref_local(pred, k, g) for k in range(g.n)]
        assert local[b].tolist() == expected_local, f"local consistency differs for pred {pred.astype(int)}"
        assert glob[b] == all(expected_local), f"global consistency differs for pred {pred.astype(int)}"


@settings(max_examples=60, deadline=None)
@given(g=dags(max_nodes=10), seed=st.integers(0, 2**32 - 1))
def test_consistent_prediction_generator_is_globally_consistent(g, seed):
    pred = consistent_prediction(g, np.random.default_rng(seed))
    assert bool(global_consistency(torch.from_numpy(pred)[None], GraphTensors(g))[0])


@settings(max_examples=150, deadline=None)
@given(g=dags(max_nodes=12), seed=st.integers(0, 2**32 - 1))
def test_turn_off_matches_rule_on_random_dags_and_predictions(g, seed):
    rng = np.random.default_rng(seed)
    gt = GraphTensors(g)
    rows, expected = [], []
    for _ in range(5):
        pred = rng.random(g.n) < 0.6
        targets = random_targets(rng, pred)
        if not targets:
            continue
        rows.append((pred, targets))
        expected.append(ref_turn_off_rule(pred, targets, g))
    if not rows:
        return
    pred_t = torch.from_numpy(np.stack([r[0] for r in rows]))
    tgt_t = torch.cat([as_row(r[1], g.n) for r in rows])
    psi = turn_off_closure(pred_t, tgt_t, gt)
    for b, exp in enumerate(expected):
        got = set(np.flatnonzero(psi[b].numpy()).tolist())
        assert got == exp, f"targets {rows[b][1]}, pred {rows[b][0].astype(int)}: got {sorted(got)}, want {sorted(exp)}"


@settings(max_examples=150, deadline=None)
@given(g=dags(max_nodes=12, tree=True), seed=st.integers(0, 2**32 - 1))
def test_turn_off_matches_official_recursion_on_trees(g, seed):
    rng = np.random.default_rng(seed)
    gt = GraphTensors(g)
    pred = consistent_prediction(g, rng)
    targets = random_targets(rng, pred)
    if not targets:
        return
    psi = turn_off_closure(torch.from_numpy(pred)[None], as_row(targets, g.n), gt)[0]
    got = set(np.flatnonzero(psi.numpy()).tolist())
    assert got == official_turn_off(pred, targets, g), f"targets {targets}, pred {pred.astype(int)}"
    after = pred & ~psi.numpy()
    assert bool(global_consistency(torch.from_numpy(after)[None], gt)[0]), (
        "turning Ψ off left an inconsistent prediction"
    )


@settings(max_examples=100, deadline=None)
@given(g=dags(max_nodes=12), seed=st.integers(0, 2**32 - 1))
def test_turn_off_with_store_masks_equals_computed_masks(g, seed):
    rng = np.random.default_rng(seed)
    gt = GraphTensors(g)
    pred = consistent_prediction(g, rng)
    targets = random_targets(rng, pred)
    if not targets:
        return
    desc = set().union(*(g.descendants(t) for t in targets))
    row = torch.from_numpy(pred)[None]
    a = turn_off_closure(row, as_row(targets, g.n), gt, descendants=as_row(desc, g.n))
    b = turn_off_closure(row, as_row(targets, g.n), gt)
    assert torch.equal(a, b)


@settings(max_examples=150, deadline=None)
@given(g=dags(max_nodes=12), seed=st.integers(0, 2**32 - 1))
def test_turn_on_matches_official_recursion_on_trees_and_is_consistent_on_dags(g, seed):
    rng = np.random.default_rng(seed)
    gt = GraphTensors(g)
    pred = consistent_prediction(g, rng)
    targets = random_targets(rng, pred, positive=False)
    if not targets:
        return
    psi = turn_on_closure(torch.from_numpy(pred)[None], as_row(targets, g.n), gt)[0]
    got = set(np.flatnonzero(psi.numpy()).tolist())
    if g.is_tree:  # one parent per node: the paths are forced, so the sets must agree
        assert got == ref_turn_on_official(pred, targets, g), f"targets {targets}, pred {pred.astype(int)}"
    related = set(targets).union(*(g.ancestors(t) | g.descendants(t) for t in targets))
    assert set(targets) <= got <= related, "Ψ holds the targets and only their relatives"
    after = pred | psi.numpy()
    assert bool(global_consistency(torch.from_numpy(after)[None], gt)[0]), (
        "turning Ψ on left an inconsistent prediction"
    )


def test_closed_form_example_from_a_small_tree():
    # animal → {mammal → {cat, dog}, bird}; vehicle → {car}
    names = ("cat", "dog", "bird", "car", "mammal", "animal", "vehicle")
    idx = {n: i for i, n in enumerate(names)}
    edges = [("animal", "mammal"), ("animal", "bird"), ("mammal", "cat"), ("mammal", "dog"), ("vehicle", "car")]
    g = LabelGraph("toy", names, tuple((idx[p], idx[c]) for p, c in edges), n_labels=4)
    gt = GraphTensors(g)
    pred = gt.mask(["cat", "mammal", "animal", "car", "vehicle"])
    psi = turn_off_closure(pred, gt.mask(["cat"]), gt)
    assert sorted(g.nodes[i] for i in np.flatnonzero(psi[0].numpy())) == ["animal", "cat", "mammal"]
    pred2 = gt.mask(["cat", "dog", "mammal", "animal"])
    psi2 = turn_off_closure(pred2, gt.mask(["cat"]), gt)
    assert sorted(g.nodes[i] for i in np.flatnonzero(psi2[0].numpy())) == ["cat"], "dog keeps mammal ON"
    psi3 = turn_off_closure(pred2, gt.mask(["mammal"]), gt)
    assert sorted(g.nodes[i] for i in np.flatnonzero(psi3[0].numpy())) == ["animal", "cat", "dog", "mammal"]
    assert bool(consistent_at(pred2, gt.mask(["cat"]), gt)[0])
    broken = gt.mask(["cat", "animal"])  # cat ON without its parent mammal
    assert not bool(consistent_at(broken, gt.mask(["cat"]), gt)[0])
    assert bool(consistent_at(broken, gt.mask(["car"]), gt)[0]), "car's part of the graph is fine"
    on = turn_on_closure(gt.mask([]), gt.mask(["mammal"]), gt)
    assert sorted(g.nodes[i] for i in np.flatnonzero(on[0].numpy())) == ["animal", "cat", "mammal"]


ID_FORMS = {
    "list": list,
    "tuple": tuple,
    "tensor": torch.tensor,
    "array": np.array,
    "numpy ints": lambda ids: [np.int64(i) for i in ids],
    "0-d tensors": lambda ids: [torch.tensor(i) for i in ids],
}


@pytest.mark.parametrize("form", list(ID_FORMS))
def test_every_function_taking_node_ids_takes_lists_tensors_and_arrays_alike(form):
    """A tensor's elements hash by identity (``{t[0]} != {t[0].clone()}``): each public function
    that takes node ids must read them by value, as the same ids in a plain list."""
    from bench.attacks.targets import omega_masks
    from kg.catalog import load_graph
    from kg.closure_official import official_turn_on

    g = load_graph("voc")
    ids = [g.index("cat"), g.index("dog"), g.index("car")]
    given_ids = ID_FORMS[form](ids)
    assert g.indices(given_ids) == ids
    assert [g.index(v) for v in given_ids] == ids
    assert [sorted(g.ancestors(v)) for v in given_ids] == [sorted(g.ancestors(v)) for v in ids]
    assert [g.parents(v) for v in given_ids] == [g.parents(v) for v in ids]
    assert torch.equal(GraphTensors(g).mask(given_ids), GraphTensors(g).mask(ids))
    pred = np.zeros(g.n, dtype=bool)
    pred[[*ids, *g.ancestors(ids[0])]] = True
    assert official_turn_off(pred, given_ids, g) == official_turn_off(pred, ids, g)
    assert official_turn_on(pred, given_ids, g) == official_turn_on(pred, ids, g)
    assert all(type(v) is int for v in official_turn_off(pred, given_ids, g)), "plain ints out"
    two = ID_FORMS[form]([ids[:2], ids[1:]]) if form in ("tensor", "array") else [given_ids[:2], given_ids[1:]]
    assert torch.equal(omega_masks(g, two), omega_masks(g, [ids[:2], ids[1:]]))
