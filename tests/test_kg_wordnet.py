"""WordNet hierarchies: checked against networkx graphs built straight from nltk's hypernym
paths, and the refinement rules on small hand-made DAGs whose results are worked out by hand."""

from __future__ import annotations

import gzip
import itertools
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import BenchError
from kg.catalog import LABEL_TABLES, PACKAGED
from kg.graph import LabelGraph
from kg.wordnet import (
    LabelSynset,
    build_wordnet_graph,
    choose_parents,
    drop_childless,
    drop_uninformative_roots,
    prune_chains,
    read_label_table,
    refine,
)
from kg.wordnet_data import LEXNAMES, REQUIRED, prepare_nltk_wordnet, wordnet
from tests.dags import random_dag

VOC = list(read_label_table(LABEL_TABLES / "voc.csv"))
NUS = list(read_label_table(LABEL_TABLES / "nus.csv"))


@pytest.fixture(scope="module")
def wn():
    return wordnet()


@pytest.fixture(scope="module")
def graphs(wn):
    """Fresh builds: (dataset, variant) -> LabelGraph."""
    return {
        (name, tree): build_wordnet_graph(name, table, tree=tree)
        for name, table in (("voc", VOC), ("nus", NUS))
        for tree in (True, False)
    }


def reference_hypernyms(wn, table) -> nx.DiGraph:
    """WordNet's hypernym graph over the labels, from ``Synset.hypernym_paths()`` directly."""
    ref = nx.DiGraph()
    for row in table:
        for path in wn.synset(row.synset).hypernym_paths():
            nx.add_path(ref, [s.name() for s in path])
    return ref


def as_nx(graph: LabelGraph) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(graph.ids)
    g.add_edges_from((graph.ids[p], graph.ids[c]) for p, c in graph.edges)
    return g


# ------------------------------------------------------------- against WordNet
@pytest.mark.parametrize("name,table", [("voc", VOC), ("nus", NUS)])
@pytest.mark.parametrize("tree", [True, False], ids=["tree", "dag"])
def test_graph_agrees_with_wordnet_hypernym_paths(wn, graphs, name, table, tree):
    graph = graphs[(name, tree)]
    ours, ref = as_nx(graph), reference_hypernyms(wn, table)
    labels = [wn.synset(row.synset).name() for row in table]
    assert list(graph.ids[: graph.n_labels]) == labels, f"{name}: labels must come first, in the table's order"
    assert set(ours) <= set(ref), f"{name}: nodes that are no hypernym of any label: {set(ours) - set(ref)}"
    for p, c in ours.edges:
        assert nx.has_path(ref, p, c), f"{name}: edge {p} -> {c} is not a hypernym relation in WordNet"
    for v in set(ours) - set(labels):
        assert nx.descendants(ours, v) & set(labels), f"{name}: abstract node {v} covers no label"
        assert not set(labels) <= nx.ancestors(ref, v) | nx.descendants(ref, v), (
            f"{name}: {v} is an ancestor of every label (uninformative) but was kept"
        )
        assert not (ours.in_degree(v) <= 1 and ours.out_degree(v) == 1), f"{name}: {v} has one child and <= 1 parent"
    kept = sorted(ours)
    if tree:
        assert graph.is_tree, f"{name}: the tree variant has a node with several parents"
        for a, d in itertools.permutations(kept, 2):
            if nx.has_path(ours, a, d):
                assert nx.has_path(ref, a, d), f"{name}: {a} above {d} in our tree but not in WordNet"
    else:
        # Pruning keeps reachability exactly between the nodes it keeps.
        for a, d in itertools.permutations(kept, 2):
            assert nx.has_path(ours, a, d) == nx.has_path(ref, a, d), (
                f"{name}: reachability {a} -> {d} differs from WordNet's ({nx.has_path(ref, a, d)})"
            )


@pytest.mark.parametrize("name", ["voc", "nus"])
def test_parent_choice_is_max_wup(wn, graphs, name):
    graph = graphs[(name, True)]
    choices = graph.meta["parent_choices"]
    assert choices, f"{name}: expected some nodes with several WordNet parents"
    for child, entry in choices.items():
        synset = wn.synset(graph.ids[graph.index(child)])
        wup = {p: synset.wup_similarity(wn.synset(p)) for p in entry["wup"]}
        best = max(wup.values())
        assert wup[entry["chosen"]] == pytest.approx(best), (
            f"{name}/{child}: chose {entry['chosen']} but WUP says {wup}"
        )


@pytest.mark.parametrize("table", sorted(LABEL_TABLES.glob("*.csv")), ids=lambda p: p.stem)
def test_packaged_graphs_are_fresh_builds(wn, graphs, table):
    name = table.stem
    fresh = graphs.get((name, True)) or build_wordnet_graph(name, read_label_table(table))
    shipped = LabelGraph.load(PACKAGED / f"{name}.json")
    assert shipped.sha256 == fresh.sha256, (
        f"kg/graphs/{name}.json is stale: bench kg build --dataset {name} --out kg/graphs/{name}.json"
    )
    assert "entity" not in fresh.nodes, f"{name}: entity.n.01 covers every label and must be removed"
    counts = {"voc": (20, 15), "nus": (81, 37)}
    if name in counts:
        assert (fresh.n_labels, fresh.n - fresh.n_labels) == counts[name], (
            f"{name}: counts changed to {fresh!r} (update the docs)"
        )


def test_node_names_ids_and_aliases(wn, graphs):
    voc = graphs[("voc", True)]
    assert voc.labels == tuple(row.label for row in VOC), "dataset labels must keep the dataset's spelling"
    assert voc.ids[voc.index("tvmonitor")] == "monitor.n.04" and voc.ids[voc.index("pottedplant")] == "pot_plant.n.01"
    for i in range(voc.n_labels, voc.n):
        lemma = wn.synset(voc.ids[i]).lemma_names()[0].lower()
        assert voc.nodes[i] in (lemma, voc.ids[i]), f"abstract node {voc.nodes[i]} is not named after {voc.ids[i]}"
    # An alias name resolves to the canonical synset; a lemma equal to a label name is disambiguated.
    table = [
        LabelSynset("trumpet", "trumpet.n.01"),
        LabelSynset("craft", "boat.n.01"),
        LabelSynset("plane", "airplane.n.01"),
    ]
    g = build_wordnet_graph("mixed", table)
    assert g.ids[0] == "cornet.n.01", f"trumpet.n.01 must become its canonical name, got {g.ids[0]}"
    assert "craft.n.02" in g.nodes and g.ids[g.index("craft.n.02")] == "craft.n.02", (
        f"the abstract craft.n.02 clashes with the label 'craft' and must be named by its synset: {g.nodes}"
    )


def test_labels_that_are_ancestors_are_kept(graphs):
    nus = graphs[("nus", True)]
    for upper, lower in [("animal", "dog"), ("vehicle", "cars"), ("plants", "tree"), ("water", "lake")]:
        assert nus.index(upper) in nus.ancestors(lower), f"nus: label {upper} should be above label {lower}"


# ------------------------------------------------------------ hand-made DAGs
def dag(*edges: str) -> nx.DiGraph:
    """``dag("r>x", "x>l1")``: parent>child pairs."""
    g = nx.DiGraph()
    g.add_edges_from(tuple(e.split(">")) for e in edges)
    return g


def edges_of(g: nx.DiGraph) -> set[str]:
    return {f"{p}>{c}" for p, c in g.edges}


def test_prune_chains_by_hand():
    g = dag("r>x", "x>y", "y>l1", "y>l2", "r>l3")
    assert prune_chains(g, {"l1", "l2", "l3"}) == ["x"], "x has one parent and one child"
    assert edges_of(g) == {"r>y", "y>l1", "y>l2", "r>l3"}
    g = dag("r>x", "x>l1", "x>l2")
    assert prune_chains(g, {"l1", "l2"}) == ["r"], "a root with a single child is redundant too"
    assert edges_of(g) == {"x>l1", "x>l2"}
    g = dag("a>L1", "L1>L2", "a>L3")
    assert prune_chains(g, {"L1", "L2", "L3"}) == [], "dataset labels are never pruned"
    # b is a chain; removing it recreates the existing shortcut a>c, after which nothing else is a chain.
    g = dag("a>b", "b>c", "a>c", "a>d")
    assert prune_chains(g, {"c", "d"}) == ["b"] and edges_of(g) == {"a>c", "a>d"}
    # A chain of chains collapses completely: top>m1>m2>m3>{l1,l2}.
    g = dag("top>m1", "m1>m2", "m2>m3", "m3>l1", "m3>l2", "top>l3")
    prune_chains(g, {"l1", "l2", "l3"})
    assert edges_of(g) == {"top>m3", "m3>l1", "m3>l2", "top>l3"}


def test_drop_uninformative_and_childless_by_hand():
    g = dag("entity>top", "top>a", "top>b", "a>l1", "b>l2", "b>l3")
    assert drop_uninformative_roots(g, {"l1", "l2", "l3"}) == ["entity", "top"]
    assert edges_of(g) == {"a>l1", "b>l2", "b>l3"}
    g = dag("p>q", "q>r", "p>l1")
    assert drop_childless(g, {"l1"}) == ["r", "q"], "childless nodes go, then parents left childless"
    assert edges_of(g) == {"p>l1"}


def test_choose_parents_by_hand():
    g = dag("p1>c", "p2>c", "p3>c", "p1>d", "p2>d")
    score = {("c", "p1"): 0.5, ("c", "p2"): 0.9, ("c", "p3"): 0.9, ("d", "p1"): 0.7, ("d", "p2"): 0.1}
    choices = choose_parents(g, lambda child, parent: score[(child, parent)])
    assert choices == {"c": ("p2", ["p1", "p3"]), "d": ("p1", ["p2"])}, "ties go to the smaller name"
    assert edges_of(g) == {"p2>c", "p1>d"}


def test_refine_prunes_chains_that_parent_choice_creates():
    # m has parents p and q; q also has n. Choosing p for m leaves q with one child (n): a new chain.
    # (``other`` keeps ``root`` from covering every label, which would make it uninformative.)
    g = dag(
        "root>p",
        "root>q",
        "p>m",
        "q>m",
        "q>n",
        "p>l0",
        "m>l1",
        "m>l2",
        "n>l3",
        "n>l4",
        "root>l5",
        "other>l6",
        "other>l7",
    )
    keep = {"l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"}
    log = refine(g, keep, lambda child, parent: {"p": 1.0, "q": 0.0}[parent])
    assert log["uninformative"] == [] and log["parent_choices"] == {"m": ("p", ["q"])}
    assert log["chains"] == ["q"], f"q became a chain after the parent choice: {log}"
    assert edges_of(g) == {
        "root>p",
        "p>m",
        "p>l0",
        "m>l1",
        "m>l2",
        "root>n",
        "n>l3",
        "n>l4",
        "root>l5",
        "other>l6",
        "other>l7",
    }
    # A parent whose only child chose elsewhere is left childless and dropped.
    # A parent whose children all chose elsewhere is left childless and dropped; then ``root``
    # is left with one child and goes as well.
    g = dag(
        "root>a", "root>b", "a>x", "b>x", "a>y", "b>y", "a>l1", "x>l2", "x>l3", "y>l4", "y>l5", "other>l6", "other>l7"
    )
    log = refine(g, {f"l{i}" for i in range(1, 8)}, lambda child, parent: {"a": 1.0, "b": 0.0}[parent])
    assert log["childless"] == ["b"] and log["chains"] == ["root"], f"b covers no label after x and y chose a: {log}"
    assert edges_of(g) == {"a>x", "a>y", "a>l1", "x>l2", "x>l3", "y>l4", "y>l5", "other>l6", "other>l7"}


@settings(max_examples=40)
@given(st.integers(2, 14), st.integers(0, 2**32 - 1), st.sampled_from([0.2, 0.4]))
def test_prune_chains_keeps_reachability_on_random_dags(n, seed, p_edge):
    rng = np.random.default_rng(seed)
    graph = random_dag(rng, n, p_edge=p_edge)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_edges_from(graph.edges)
    keep = set(rng.choice(n, size=max(1, n // 3), replace=False).tolist())
    before = {v: nx.descendants(g, v) for v in g}
    prune_chains(g, keep)
    for v in g:
        assert nx.descendants(g, v) == before[v] & set(g), f"reachability from {v} changed (seed {seed})"
        if v not in keep:
            assert not (g.in_degree(v) <= 1 and g.out_degree(v) == 1), f"chain node {v} left (seed {seed})"
    assert keep <= set(g), "a kept node was removed"


# ------------------------------------------------------------------ bad input
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("# only a comment\n", "has no rows"),
        ("name,synset\ndog,dog.n.01\n", "header must start with 'label,synset'"),
        ("label,synset\n", "no labels"),
        ("label,synset\ndog,dog.n.01\ndog,cat.n.01\n", "label 'dog' repeats line 2"),
        ("label,synset\n,dog.n.01\n", "empty label"),
    ],
)
def test_bad_label_tables(tmp_path, text, message):
    with pytest.raises(BenchError, match=re.escape(message)):
        read_label_table(write(tmp_path, text))


def test_missing_label_table(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        read_label_table(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    "rows,message",
    [
        ([("dog", "")], r"label 'dog' has no synset; its noun senses: dog\.n\.01"),
        ([("qwxz", "")], "label 'qwxz' has no synset; WordNet has no noun"),
        ([("dog", "dog.n.99")], r"no WordNet synset 'dog.n.99'; noun senses of 'dog': dog\.n\.01"),
        ([("run", "run.v.01")], "is not a noun"),
        ([("dog", "dog")], "is not a synset name"),
        ([("dog", "dog.n.01"), ("hound", "dog.n.01")], "map to the same synset dog.n.01"),
    ],
)
def test_bad_synsets(wn, rows, message):
    with pytest.raises(BenchError, match=message):
        build_wordnet_graph("bad", [LabelSynset(label, synset) for label, synset in rows])


def test_missing_wordnet_files_name_the_apt_command(tmp_path):
    with pytest.raises(BenchError, match="apt-get install wordnet-base wordnet-sense-index"):
        prepare_nltk_wordnet(source=tmp_path / "empty", root=tmp_path / "nltk")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in REQUIRED:
        if name != "index.sense":
            (partial / name).write_text("")
    with pytest.raises(BenchError, match=r"missing in .*partial \(index.sense\)"):
        prepare_nltk_wordnet(source=partial, root=tmp_path / "nltk")


def test_lexnames_match_the_manual(wn):
    man = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not man.exists():
        pytest.skip("Debian's lexnames manual page is not installed")
    listed = re.findall(r"^(\d\d)\s+((?:adj|adv|noun|verb)\.\w+)", gzip.decompress(man.read_bytes()).decode(), re.M)
    ours = [tuple(line.split("\t")[:2]) for line in LEXNAMES.splitlines()]
    assert ours == listed, f"lexnames differ from the manual: {set(ours) ^ set(listed)}"
    assert wn.synset("dog.n.01").lexname() == "noun.animal", "nltk reads the lexnames file we wrote"
