"""A ``LabelGraph`` as text for other tools: JSON (this project's format), GraphML, Cypher.

* ``json``: the graph file ``LabelGraph.save`` writes (nodes in extended label order,
  edges by name, ``meta``).
* ``graphml``: via networkx; nodes ``0..n-1`` in extended label order with ``name``,
  ``id`` (synset / MID) and ``label`` (a dataset label, not an abstract node); edges
  parent → child. ``meta`` is left out (GraphML has no nested values).
* ``cypher``: one parameter-free ``CREATE`` statement, safe to paste into Neo4j Browser,
  in the graph stores' schema (``cypher/schema_*.cypher``): a ``(:Graph {name, sha256,
  source, n_nodes, n_labels, n_edges, depth})`` node, ``(:Label {key, graph, name, idx,
  source_id, is_label})`` nodes (``key`` = graph + ':' + name) and
  ``(child)-[:IS_A]->(parent)`` relationships. Every string is a single-quoted literal with
  ``\\``, ``'`` and control characters escaped. The script also runs in Ladybug/Kùzu once
  the stores' node and relationship tables exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bench.registry import Registry
from kg.graph import LabelGraph

EXPORTERS: Registry[Callable[[LabelGraph], str]] = Registry("export format")


def register_format(name: str):
    """Decorator: ``@register_format("dot")`` on a function ``LabelGraph -> str``."""
    return EXPORTERS.register(name)


def export_graph(graph: LabelGraph, fmt: str) -> str:
    """The graph in format ``fmt`` (``json``, ``graphml``, ``cypher``); unknown formats suggest close ones."""
    return EXPORTERS.get(fmt)(graph)


@register_format("json")
def to_json(graph: LabelGraph) -> str:
    return json.dumps(graph.to_dict(), indent=2, ensure_ascii=False) + "\n"


@register_format("graphml")
def to_graphml(graph: LabelGraph) -> str:
    import networkx as nx

    g = graph.to_networkx()
    g.graph.update(name=graph.name, source=graph.source, n_labels=graph.n_labels, sha256=graph.sha256)
    return "\n".join(nx.generate_graphml(g, encoding="utf-8", prettyprint=True)) + "\n"


def cypher_string(text: str) -> str:
    """``text`` as a single-quoted Cypher string literal."""
    out = []
    for ch in text:
        if ch in ("\\", "'"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or ch in "\u2028\u2029":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "'" + "".join(out) + "'"


@register_format("cypher")
def to_cypher(graph: LabelGraph) -> str:
    q = cypher_string
    header = (
        f"// semattack-bench label graph {graph.name!r} ({graph.source or 'unknown source'}): "
        f"{graph.n} nodes, {len(graph.edges)} IS_A relationships, sha256 {graph.sha256}\n"
        "// One CREATE statement: paste it into Neo4j Browser or pipe it to cypher-shell.\n"
    )
    record = (
        f"  (:Graph {{name: {q(graph.name)}, sha256: {q(graph.sha256)}, source: {q(graph.source)}, "
        f"n_nodes: {graph.n}, n_labels: {graph.n_labels}, n_edges: {len(graph.edges)}, depth: {graph.depth}}})"
    )
    nodes = [
        f"  (n{i}:Label {{key: {q(graph.name + ':' + node)}, graph: {q(graph.name)}, name: {q(node)}, idx: {i}, "
        f"source_id: {q(graph.ids[i])}, is_label: {'true' if i < graph.n_labels else 'false'}}})"
        for i, node in enumerate(graph.nodes)
    ]
    rels = [f"  (n{c})-[:IS_A]->(n{p})" for p, c in graph.edges]
    return header + "CREATE\n" + ",\n".join([record, *nodes, *rels]) + ";\n"
