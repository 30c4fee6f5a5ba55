"""The paper's protocol: combination enumeration, eligible images and the Open Images sampling,
each checked against a brute-force loop written here (consistency by the per-node rules of
docs/knowledge-graphs.md, combinations by nested loops)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import BenchError
from bench.sweep.config import sweep_config
from bench.sweep.inputs import SweepModel
from bench.sweep.planning import (
    CleanPredictions,
    SamplingRules,
    all_combinations,
    eligible_images,
    plan_combinations,
    sample_combinations,
    shard_of,
)
from bench.sweep.presets import FAST, SweepOptions
from kg.graph import LabelGraph
from tests.dags import consistent_prediction, dags, random_dag


def brute_consistent(graph: LabelGraph, pred: np.ndarray) -> bool:
    """Notes §1b, node by node: ON needs an ON child (if any) and an ON parent (if any); OFF
    needs every ON child to keep another ON parent and every ON parent another ON child."""
    for v in range(graph.n):
        kids, parents = graph.children(v), graph.parents(v)
        if pred[v]:
            if kids and not any(pred[c] for c in kids):
                return False
            if parents and not any(pred[p] for p in parents):
                return False
        else:
            if any(pred[c] and not any(pred[p] for p in graph.parents(c)) for c in kids):
                return False
            if any(pred[p] and not any(pred[c] for c in graph.children(p)) for p in parents):
                return False
    return True


def predictions(graph: LabelGraph, rng: np.random.Generator, m: int) -> CleanPredictions:
    """A mix of consistent predictions and random ones, as logits ±1."""
    rows = [consistent_prediction(graph, rng) if rng.random() < 0.7 else rng.random(graph.n) < 0.4 for _ in range(m)]
    pred = np.array(rows, dtype=bool).reshape(m, graph.n)
    consistent = torch.tensor([brute_consistent(graph, p) for p in pred])
    logits = torch.from_numpy(np.where(pred, 1.0, -1.0)).float()
    return CleanPredictions(logits, torch.arange(m), tuple(f"img{i}" for i in range(m)), consistent)


@settings(max_examples=40)
@given(
    graph=dags(min_nodes=2, max_nodes=8), seed=st.integers(0, 2**32 - 1), limit=st.integers(1, 4), k=st.integers(1, 3)
)
def test_enumeration_and_eligibility_match_a_brute_force_loop(graph, seed, limit, k):
    rng = np.random.default_rng(seed)
    clean = predictions(graph, rng, 25)
    labels = list(range(graph.n_labels))
    planned = plan_combinations(clean, graph, [k], limit)
    expected = list(itertools.combinations(labels, k))
    assert [c.members for c in planned] == expected, "every k-combination of the dataset's labels, itertools order"
    assert [c.combo_id for c in planned] == list(range(len(expected))), "combination ids are enumeration positions"
    pred = clean.positive.numpy()
    for c in planned:
        eligible = [
            i for i in range(len(clean)) if brute_consistent(graph, pred[i]) and all(pred[i, v] for v in c.members)
        ]
        assert c.eligible == len(eligible), f"{c.labels}: eligible count {c.eligible} != brute force {len(eligible)}"
        assert list(c.images) == eligible[:limit], f"{c.labels}: attacked images are not the first {limit} eligible"
        assert c.labels == tuple(graph.nodes[v] for v in c.members), "labels name the members"
        assert c.record().attacked == len(c.images) and c.record().eligible == c.eligible, "record keeps the counts"
    assert all(c.eligible == 0 for c in planned if not c.images), "combinations without images are kept, count 0"


def test_abstract_nodes_only_on_request_and_sizes_in_order():
    graph = random_dag(np.random.default_rng(3), 7, p_edge=0.3)
    clean = predictions(graph, np.random.default_rng(4), 30)
    own = plan_combinations(clean, graph, [2, 1], 3)
    every = plan_combinations(clean, graph, [1], 3, include_abstract=True)
    assert [c.size for c in own] == sorted(c.size for c in own), "sizes ascending, whatever order they were given"
    assert len(own) == graph.n_labels + math.comb(graph.n_labels, 2), "all 1- and 2-combinations of the labels"
    assert {c.members[0] for c in every} == set(range(graph.n)), "--include-abstract draws from every node"


def test_chunked_eligibility_equals_one_chunk(monkeypatch):
    graph = random_dag(np.random.default_rng(5), 9, p_edge=0.25)
    graph = LabelGraph(graph.name, graph.nodes, graph.edges, graph.n)
    clean = predictions(graph, np.random.default_rng(6), 40)
    combos = all_combinations(range(graph.n), 2)
    whole = eligible_images(clean.positive, clean.consistent, combos, 3)
    monkeypatch.setattr("bench.sweep.planning.ELIGIBILITY_CELLS", 40 * 2 * 5)  # five combinations per chunk
    chunked = eligible_images(clean.positive, clean.consistent, combos, 3)
    assert torch.equal(whole[0], chunked[0]), "counts do not depend on the chunking"
    assert all(torch.equal(a, b) for a, b in zip(whole[1], chunked[1])), "chosen images do not depend on the chunking"


def test_demo_sample_prefers_full_combinations_and_shards_partition():
    graph = random_dag(np.random.default_rng(8), 10, p_edge=0.2)
    clean = predictions(graph, np.random.default_rng(9), 60)
    full = plan_combinations(clean, graph, [1, 2], 4)
    sample = plan_combinations(clean, graph, [1, 2], 4, per_size=2, seed=1)
    by_labels = {c.labels: c for c in full}
    for k in (1, 2):
        picked = [c for c in sample if c.size == k]
        pool = [c for c in full if c.size == k and c.eligible > 0]
        assert len(picked) == min(2, len(pool)), f"size {k}: the sample has min(2, available) combinations"
        n_full = sum(1 for c in pool if c.eligible >= 4)
        assert sum(1 for c in picked if c.eligible >= 4) == min(2, n_full), f"size {k}: full combinations first"
        for c in picked:
            assert by_labels[c.labels].images == c.images, "a sampled combination keeps its eligible images"
    assert plan_combinations(clean, graph, [1, 2], 4, per_size=2, seed=1) == sample, "the sample is seeded"
    parts = [shard_of(full, i, 3) for i in range(3)]
    ids = sorted(c.combo_id for part in parts for c in part)
    assert ids == [c.combo_id for c in full], "three shards cover every combination exactly once"
    assert all(c.combo_id % 3 == i for i, part in enumerate(parts) for c in part), "shard i takes combo_id % n == i"


def test_bad_sizes_are_refused_where_sizes_and_graph_meet_and_too_many_combinations():
    """|Ω| ≥ 1 where sizes are given (``SweepOptions``), |Ω| ≤ the labels where they meet the
    graph (``sweep_config``); a direct ``plan_combinations`` of a size larger than the labels
    plans what there is: no combination."""
    graph = random_dag(np.random.default_rng(1), 5)
    model = SweepModel(torch.nn.Identity(), "m", {}, "m.pt", 8)
    too_many = SweepOptions(sizes=(graph.n_labels + 1,))
    with pytest.raises(BenchError, match=rf"\|Ω\| = {graph.n_labels + 1} is larger than the {graph.n_labels} labels"):
        sweep_config("toy", model, graph, FAST, too_many)
    with pytest.raises(BenchError, match="sizes start at 1"):
        SweepOptions(sizes=(0,))
    clean = predictions(graph, np.random.default_rng(2), 5)
    assert plan_combinations(clean, graph, [graph.n_labels + 1], 2) == []
    with pytest.raises(BenchError, match="too many"):
        all_combinations(range(200), 4)


# ---------------------------------------------------------------------- Open Images sampling
def sampling_case(seed: int):
    """A label-only DAG (all nodes are labels, as Open Images) and 400 mostly consistent predictions."""
    rng = np.random.default_rng(seed)
    dag = random_dag(rng, 16, p_edge=0.15, tree=bool(seed % 2))
    graph = LabelGraph("oi-like", dag.nodes, dag.edges, dag.n)
    return graph, predictions(graph, rng, 400)


def feasible(graph, clean, combo, rules) -> bool:
    pred = clean.positive.numpy() & clean.consistent.numpy()[:, None]
    k = len(combo)
    rows = [i for i in range(len(pred)) if all(pred[i, v] for v in combo) and pred[i].sum() > k]
    return len(rows) > rules.min_images


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_sampled_combinations_respect_every_rule(seed, k):
    graph, clean = sampling_case(seed)
    rules = SamplingRules(min_label_images=20, min_images=8, max_tries=3000)
    combos = sample_combinations(clean.positive, clean.consistent, graph, k, seed=seed, rules=rules)
    pred = clean.positive.numpy() & clean.consistent.numpy()[:, None]
    frequent = {v for v in range(graph.n) if pred[:, v].sum() >= rules.min_label_images}
    leaves = {v for v in frequent if not graph.children(v) and graph.parents(v)}
    used = [v for c in combos for v in c]
    assert len(used) == len(set(used)), "each label is in at most one combination"
    for c in combos:
        assert len(set(c)) == k and list(c) == sorted(c), f"{c}: k distinct labels, sorted"
        assert set(c) <= frequent, f"{c}: every label has at least {rules.min_label_images} consistent positives"
        assert sum(v in leaves for v in c) == math.ceil(k / 2), f"{c}: ⌈k/2⌉ leaves with a parent, the rest not"
        assert feasible(graph, clean, c, rules), (
            f"{c}: more than {rules.min_images} images with all k and > k positives"
        )
    rest_leaves = sorted(leaves - set(used))
    rest_others = sorted(frequent - leaves - set(used))
    for a in itertools.combinations(rest_leaves, math.ceil(k / 2)):
        for b in itertools.combinations(rest_others, k - math.ceil(k / 2)):
            assert not feasible(graph, clean, a + b, rules), f"{a + b} was left although it qualifies"
    again = sample_combinations(clean.positive, clean.consistent, graph, k, seed=seed, rules=rules)
    assert again == combos, "the sampling is seeded"


def test_sampled_plan_counts_eligible_images_like_all():
    graph, clean = sampling_case(4)
    rules = SamplingRules(min_label_images=20, min_images=8)
    sampled = plan_combinations(clean, graph, [2], 5, mode="sampled", seed=4, rules=rules)
    every = {c.members: c for c in plan_combinations(clean, graph, [2], 5, include_abstract=True)}
    assert sampled, "the case has sampled combinations"
    for c in sampled:
        ref = every[c.members]
        assert (c.eligible, c.images) == (ref.eligible, ref.images), f"{c.labels}: same eligible images as in 'all'"


@pytest.mark.bitwise
def test_bench_attack_and_bench_run_choose_the_same_images():
    """One eligibility path: ``bench attack`` (``first_eligible``) takes the images the sweep's
    plan takes for the same combination, leaving out inconsistent predictions."""
    from torch import nn

    from bench.sweep.planning import clean_predictions, first_eligible, plan_combinations
    from tests.sweep_fixtures import ToyDataset, ToyNet, toy_graph

    graph = toy_graph()
    pet = graph.index("pet")

    class Inconsistent(nn.Module):
        """The toy model, with 'pet' switched off on the brighter images (cat ON, pet OFF)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = ToyNet(graph.n)

        def forward(self, x):
            z = self.inner(x)
            bright = x.flatten(1).mean(1) > 0.501
            return torch.where(bright[:, None] & (torch.arange(graph.n) == pet), torch.full_like(z, -5.0), z)

    model, data = Inconsistent().eval(), ToyDataset("test", graph)
    clean = clean_predictions(model, data, graph)
    plan = {c.labels: c for c in plan_combinations(clean, graph, (1,), 3)}
    cat = plan[("cat",)]
    has_cat = [int(i) for i in torch.nonzero(clean.positive[:, graph.index("cat")]).flatten()]
    assert any(not bool(clean.consistent[i]) for i in has_cat), "the scenario has inconsistent predictions with cat"
    omega = torch.zeros(graph.n, dtype=torch.bool)
    omega[graph.index("cat")] = True
    chosen, logits = first_eligible(model, data, graph, omega, 3)
    assert chosen == [int(clean.indices[r]) for r in cat.images], "the same images as the sweep's plan"
    assert torch.equal(logits, clean.logits[list(cat.images)]), "with their clean logits"
