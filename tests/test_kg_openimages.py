"""Open Images hierarchy: checked against a direct parse of the official JSON and CSV here."""

from __future__ import annotations

import csv
import hashlib
import json
import re

import networkx as nx
import pytest

from bench.errors import BenchError
from kg.catalog import PACKAGED
from kg.graph import LabelGraph
from kg.openimages import DATA, DESCRIPTIONS, HIERARCHY, build_openimages_graph

ROOT = "/m/0bl9f"


def parse_reference():
    """(classes [(mid, name)], subcategory edges in file order) by plain recursion."""
    with open(DESCRIPTIONS, newline="", encoding="utf-8") as f:
        classes = [(mid, name) for mid, name in csv.reader(f)]
    edges: list[tuple[str, str]] = []

    def walk(node):
        for child in node.get("Subcategory", []):
            if node["LabelName"] != ROOT and (node["LabelName"], child["LabelName"]) not in edges:
                edges.append((node["LabelName"], child["LabelName"]))
            walk(child)

    walk(json.loads(HIERARCHY.read_text(encoding="utf-8")))
    return classes, edges


@pytest.fixture(scope="module")
def reference():
    return parse_reference()


@pytest.fixture(scope="module")
def dag():
    return build_openimages_graph()


@pytest.fixture(scope="module")
def tree():
    return build_openimages_graph(tree=True)


def test_dag_matches_the_official_files(dag, reference):
    classes, edges = reference
    assert (dag.n, dag.n_labels) == (601, 601), f"expected 601 classes, all labels: {dag!r}"
    assert list(zip(dag.ids, dag.nodes, strict=True)) == classes, "nodes must be the CSV's classes in file order"
    ours = {(dag.ids[p], dag.ids[c]) for p, c in dag.edges}
    assert ours == set(edges), f"edges differ from the JSON's Subcategory links: {ours ^ set(edges)}"
    assert len(ours) == 557 and ROOT not in dag.ids, "root links excluded: 647 links - 90 from the root"
    parents: dict[str, set[str]] = {}
    for p, c in edges:
        parents.setdefault(c, set()).add(p)
    multi = {c for c, ps in parents.items() if len(ps) > 1}
    assert {dag.ids[v] for v in range(dag.n) if len(dag.parents(v)) > 1} == multi, "multi-parent classes differ"
    assert len(multi) == 45, f"the official hierarchy has 45 classes with several parents, got {len(multi)}"
    tomato = dag.index("Tomato")
    assert {dag.nodes[p] for p in dag.parents(tomato)} == {"Fruit", "Vegetable"}, "Tomato keeps both parents in the DAG"


def test_tree_picks_the_deepest_parent(dag, tree, reference):
    _, edges = reference
    g = nx.DiGraph(edges)
    assert tree.is_tree and set(tree.edges) <= set(dag.edges), "the tree keeps one DAG parent per class"
    assert len(tree.edges) == 601 - len(tree.roots) and len(tree.roots) == len(dag.roots) == 90

    def depth(mid):  # longest path from a root, via networkx on the ancestors' subgraph
        return nx.dag_longest_path_length(g.subgraph(nx.ancestors(g, mid) | {mid}))

    first = {e: i for i, e in enumerate(edges)}
    choices = tree.meta["parent_choices"]
    assert len(choices) == 45, "every multi-parent class has a recorded choice"
    for v in range(tree.n):
        options = [dag.ids[p] for p in dag.parents(v)]
        if len(options) < 2:
            continue
        expected = min(options, key=lambda p: (-depth(p), len(nx.descendants(g, p)), first[(p, dag.ids[v])]))
        (chosen,) = tree.parents(v)
        assert tree.ids[chosen] == expected, f"{tree.nodes[v]}: chose {tree.nodes[chosen]}, rule gives {expected}"
        assert choices[tree.nodes[v]]["chosen"] == tree.nodes[chosen], f"{tree.nodes[v]}: meta disagrees with the edge"
    assert tree.nodes[tree.parents(tree.index("Teddy bear"))[0]] == "Bear", "deepest parent of Teddy bear is Bear"


def test_packaged_graphs_and_provenance(dag, tree):
    for graph in (dag, tree):
        shipped = LabelGraph.load(PACKAGED / f"{graph.name}.json")
        assert shipped.sha256 == graph.sha256, f"kg/graphs/{graph.name}.json is stale"
    provenance = (DATA / "PROVENANCE.md").read_text(encoding="utf-8")
    for path in (HIERARCHY, DESCRIPTIONS):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"`{path.name}` | `{digest}`" in provenance, f"PROVENANCE.md must record the sha256 of {path.name}"


@pytest.mark.parametrize(
    "hierarchy,descriptions,message",
    [
        ("{not json", None, "does not parse"),
        ('{"Subcategory": []}', None, "without 'LabelName'"),
        (
            '{"LabelName": "/m/0bl9f", "Subcategory": [{"LabelName": "/m/a", "Subcategory": [{"LabelName": '
            '"/m/zz"}]}]}',
            "/m/a,A\n",
            "MIDs without a class description: /m/zz",
        ),
        (None, "/m/a,A\n/m/b,a\n", "display name 'a' is used by /m/a and /m/b"),
        (None, "/m/a\n", "line 1: expected 'MID,DisplayName'"),
    ],
)
def test_bad_files(tmp_path, hierarchy, descriptions, message):
    h, d = HIERARCHY, DESCRIPTIONS
    if hierarchy is not None:
        h = tmp_path / "h.json"
        h.write_text(hierarchy, encoding="utf-8")
    if descriptions is not None:
        d = tmp_path / "d.csv"
        d.write_text(descriptions, encoding="utf-8")
    with pytest.raises(BenchError, match=re.escape(message)):
        build_openimages_graph(h, d)


def test_missing_files(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        build_openimages_graph(tmp_path / "none.json")
    with pytest.raises(BenchError, match="do not exist"):
        build_openimages_graph(descriptions=tmp_path / "none.csv")
