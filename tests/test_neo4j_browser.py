"""Neo4j Browser: the labels the Neo4j loader adds for reading (``DatasetLabel`` / ``Abstract``
beside ``Label``), the style file ``neo4j/style.grass`` that colours them, and the ready queries
of docs/graph-stores.md ("Exploring in Neo4j Browser"), run as written against the real server
and checked against networkx. The style-file checks need no server; the rest are marked
``neo4j`` (tests/conftest.py) and use graphs named ``semattack_test_*``, dropped afterwards."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import networkx as nx
import pytest

from kg.catalog import load_graph
from kg.graph import LabelGraph
from kg.stores import open_store

ROOT = Path(__file__).resolve().parents[1]
GRASS = ROOT / "neo4j" / "style.grass"
DOCS = ROOT / "docs" / "graph-stores.md"
PREFIX = "semattack_test_"
OURS = {"Label", "DatasetLabel", "Abstract", "Graph"}  # the node labels the Neo4j loader sets
BANDS = {"Fragile": "#d62728", "Contested": "#ff7f0e", "Robust": "#17becf", "Untargeted": "#9e9e9e"}


def parse_grass(text: str) -> dict[str, dict[str, str]]:
    """Selector -> properties, the way Neo4j Browser 5 reads a grass file: no comments, quotes
    only around values, one ``name: value`` per ``;``."""
    rules: dict[str, dict[str, str]] = {}
    quoted: list[str] = []

    def hide(match: re.Match) -> str:  # a quoted value may hold braces: '{name}'
        quoted.append(match[1])
        return f"\0{len(quoted) - 1}\0"

    text = re.sub(r"'([^']*)'", hide, text)
    for selector, body in re.findall(r"([^{}\s]+)\s*\{([^{}]*)\}", text):
        props = {}
        for item in filter(str.strip, body.split(";")):
            name, value = item.split(":", 1)
            props[name.strip()] = re.sub(r"\0(\d+)\0", lambda m: quoted[int(m[1])], value.strip())
        rules[selector] = props
    return rules


def node_labels_styled() -> set[str]:
    return {s.split(".", 1)[1] for s in parse_grass(GRASS.read_text(encoding="utf-8")) if s.startswith("node.")}


def named(graph: LabelGraph, name: str) -> LabelGraph:
    return dataclasses.replace(graph, name=PREFIX + name)


# ------------------------------------------------------------- the style file
def test_the_style_file_parses_as_neo4j_browser_reads_it():
    text = GRASS.read_text(encoding="utf-8")
    assert "/*" not in text and "//" not in text, "Browser's grass parser has no comments: they become selectors"
    assert '"' not in text, "captions in single quotes: Browser's second grass parser honours only those"
    rules = parse_grass(text)
    assert len(rules) == text.count("{") - text.count("'{"), "every rule parsed (no stray braces)"
    assert rules["relationship"].get("caption"), "a style without a base relationship caption crashes Browser 5.24"
    assert {"node", "relationship", "relationship.IS_A"} <= set(rules)
    for selector, props in rules.items():
        for name, value in props.items():
            if "color" in name:
                assert re.fullmatch(r"#[0-9A-Fa-f]{6}", value), f"{selector} {name}: {value!r} is not #RRGGBB"


def test_the_style_colours_the_kinds_of_node_and_the_bands_apart():
    rules = parse_grass(GRASS.read_text(encoding="utf-8"))
    assert rules["node.DatasetLabel"]["color"].lower() == "#2e9d46", "green, as in bench kg view"
    assert rules["node.Abstract"]["color"].lower() == "#2f6fd0", "blue, as in bench kg view"
    for band, colour in BANDS.items():
        assert rules[f"node.{band}"]["color"].lower() == colour, f"{band} colour"
    colours = [rules[f"node.{x}"]["color"].lower() for x in ("DatasetLabel", "Abstract", *BANDS)]
    assert len(set(colours)) == len(colours), f"two kinds share a colour: {colours}"
    for label in ("Label", "DatasetLabel", "Abstract", "Outcome", *BANDS):
        assert rules[f"node.{label}"]["caption"] == "{name}", f"{label} caption"
    assert rules["relationship.IS_A"]["caption"] == "IS_A" and rules["relationship.IS_A"]["shaft-width"] == "1px"
    order = list(rules)
    assert order.index("node.Label") < order.index("node.DatasetLabel"), "later rules win: Label first"
    assert order.index("node.Outcome") < min(order.index(f"node.{b}") for b in BANDS), "Outcome before its bands"


# ------------------------------------------------------------ against Neo4j
@pytest.fixture(scope="module")
def neo4j_store():
    with open_store("neo4j") as s:
        yield s
        for name in s.graphs():
            if name.startswith(PREFIX):
                s.drop(name)


def labels_of(store, graph_name: str) -> list[dict]:
    return store.query(
        "MATCH (n) WHERE n.graph = $g OR (n:Graph AND n.name = $g) "
        "RETURN n.name AS name, n.is_label AS is_label, labels(n) AS labels",
        {"g": graph_name},
    )


@pytest.mark.neo4j
def test_voc_nodes_carry_label_and_exactly_one_kind(neo4j_store):
    voc = named(load_graph("voc"), "browser_voc")
    neo4j_store.load(voc)

    def count(label: str) -> int:
        return neo4j_store.query(f"MATCH (n:{label}) WHERE n.graph = $g RETURN count(n) AS n", {"g": voc.name})[0]["n"]

    assert (count("DatasetLabel"), count("Abstract"), count("Label")) == (20, 15, 35), "VOC: 20 labels, 15 abstract"
    rows = labels_of(neo4j_store, voc.name)
    nodes = [r for r in rows if "Graph" not in r["labels"]]
    assert len(nodes) == voc.n and len(rows) == voc.n + 1, "the graph's nodes and one Graph record"
    for r in nodes:
        kind = {"DatasetLabel"} if r["is_label"] else {"Abstract"}
        assert set(r["labels"]) == {"Label"} | kind, f"{r['name']}: labels {r['labels']}"
    used = {x for r in rows for x in r["labels"]}
    assert used == OURS, f"labels set by the Neo4j loader: {used}"
    in_db = {r["label"] for r in neo4j_store.query("CALL db.labels() YIELD label RETURN label")}
    assert used <= in_db, f"db.labels() lacks {used - in_db}"
    assert used <= node_labels_styled(), f"style.grass does not style {used - node_labels_styled()}"


@pytest.mark.neo4j
def test_nodes_stored_before_the_kinds_existed_get_them_when_the_store_opens(neo4j_store):
    voc = named(load_graph("voc"), "browser_old")
    neo4j_store.load(voc)
    neo4j_store._write([("MATCH (n:Label {graph: $g}) REMOVE n:DatasetLabel, n:Abstract", {"g": voc.name})])
    assert all(set(r["labels"]) <= {"Label", "Graph"} for r in labels_of(neo4j_store, voc.name)), "as stored before"
    with open_store("neo4j"):
        pass
    kinds = {
        r["name"]: set(r["labels"]) - {"Label"} for r in labels_of(neo4j_store, voc.name) if r["name"] in voc.nodes
    }
    expected = {x: {"DatasetLabel"} if i < voc.n_labels else {"Abstract"} for i, x in enumerate(voc.nodes)}
    assert kinds == expected, f"after reopening: {kinds}"


@pytest.mark.neo4j
def test_replacing_and_dropping_a_graph_leave_nothing_behind(neo4j_store):
    graph = named(load_graph("voc"), "browser_replace")
    neo4j_store.load(graph)
    changed = dataclasses.replace(graph, edges=graph.edges[:-1])  # one IS_A edge fewer
    assert neo4j_store.load(changed) == "replaced"
    rows = labels_of(neo4j_store, graph.name)
    assert len(rows) == graph.n + 1, f"{len(rows)} nodes after a replacement, {graph.n} + 1 expected"
    edges = neo4j_store.query("MATCH (:Label {graph: $g})-[r]->() RETURN count(r) AS n", {"g": graph.name})
    assert edges[0]["n"] == len(changed.edges), "edges of the replacement only"
    assert neo4j_store.drop(graph.name)
    assert labels_of(neo4j_store, graph.name) == [], "a dropped graph left nodes (of some label) behind"


# ------------------------------------------------------- the docs' ready queries
def ready_queries() -> dict[str, str]:
    """The Cypher of docs/graph-stores.md, section "Exploring in Neo4j Browser", by letter."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Exploring in Neo4j Browser", 1)[1].split("\n## ", 1)[0]
    block = section.split("```cypher\n", 1)[1].split("```", 1)[0]
    queries = {}
    for chunk in block.strip().split("\n\n"):
        letter = re.match(r"// \((\w)\)", chunk)
        assert letter, f"a query without a '// (x)' heading: {chunk[:60]!r}"
        queries[letter[1]] = chunk
    assert sorted(queries) == ["a", "b", "c", "d"], f"queries {sorted(queries)}"
    return queries


def edge_names(graph: LabelGraph) -> set[tuple[str, str]]:
    """(child, parent) names of every IS_A edge."""
    return {(graph.nodes[c], graph.nodes[p]) for p, c in graph.edges}


@pytest.mark.neo4j
def test_the_ready_queries_of_the_docs_answer_as_networkx(neo4j_store):
    queries = ready_queries()
    voc = load_graph("voc")
    test_voc = named(voc, "browser_docs")
    neo4j_store.load(test_voc)
    a = queries["a"].replace("'voc'", "$graph").replace("RETURN p", "RETURN [n IN nodes(p) | n.name] AS names")
    rows = neo4j_store.query(a, {"graph": test_voc.name})
    assert {tuple(r["names"]) for r in rows} == edge_names(voc) and len(rows) == len(voc.edges), "(a)"

    g = voc.to_networkx()  # parent -> child
    for targets in (["cat", "dog"], ["person"], ["bus", "chair", "sheep"]):
        rows = neo4j_store.query(
            queries["b"].replace("RETURN x, e", "RETURN x.name AS node, [n IN nodes(e) | n.name] AS edge"),
            {"graph": test_voc.name, "targets": targets},
        )
        idx = [voc.index(t) for t in targets]
        closure = set(idx).union(*(nx.ancestors(g, i) | nx.descendants(g, i) for i in idx))
        names = {voc.nodes[i] for i in closure}
        assert {r["node"] for r in rows} == names, f"(b) nodes of {targets}"
        expected = {(c, p) for c, p in edge_names(voc) if c in names and p in names}
        assert {tuple(r["edge"]) for r in rows if r["edge"]} == expected, f"(b) edges of {targets}"
        if targets == ["cat", "dog"]:
            assert (len(names), len(expected)) == (6, 5), "the docs: 6 nodes, 5 edges"

    for node in ("vehicle", "organism", "cat"):
        rows = neo4j_store.query(queries["c"], {"graph": test_voc.name, "node": node})
        below = sorted(i for i in nx.descendants(g, voc.index(node)) if i < voc.n_labels)
        assert [r["label"] for r in rows] == [voc.nodes[i] for i in below], f"(c) labels under {node}"

    one, other = named(load_graph("openimages"), "browser_oi"), named(load_graph("openimages-tree"), "browser_oit")
    for graph in (one, other):
        neo4j_store.load(graph)
    rows = neo4j_store.query(queries["d"], {"graph": one.name, "other": other.name})
    got = {(r["only_in"], r["child"], r["parent"]) for r in rows}
    expected = {(one.name, *e) for e in edge_names(one) - edge_names(other)}
    expected |= {(other.name, *e) for e in edge_names(other) - edge_names(one)}
    assert got == expected and len(rows) == len(expected), "(d)"
    assert len(expected) == 46 and not edge_names(other) - edge_names(one), "the docs: 46 edges dropped, none added"
    for g in (test_voc, one, other):
        neo4j_store.drop(g.name)
