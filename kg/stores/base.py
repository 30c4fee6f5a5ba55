"""The graph-store interface: label graphs in a graph database, queried in Cypher.

A store keeps several label graphs side by side (every node carries its graph's name; edges
stay inside one graph) and remembers each graph's sha256, so loading is idempotent: the same
graph again changes nothing, a changed graph replaces the old copy in one transaction.
Queries answer the questions the consistent target set h(Ω, G) asks of the knowledge graph:
the parents, children, ancestors and descendants of labels, and, for every combination Ω of
k labels at once, the union of its members' ancestors and descendants.

Subclasses supply three primitives (a read, an all-or-nothing write, a raw read-only query);
everything else, the Cypher included (``cypher/``), is shared.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

import cypher
from bench.errors import BenchError, unknown
from cypher import MAX_DEPTH
from kg.graph import LabelGraph

Row = dict[str, Any]
Step = tuple[str, Mapping[str, Any]]


class Node(NamedTuple):
    """A node of a stored graph: its index in the extended label order and its name."""

    idx: int
    name: str


@dataclass(frozen=True)
class CombinationClosure:
    """One target combination Ω: its members, and the union of their proper ancestors and of
    their proper descendants (each sorted by index). A run's record of a target set is
    another thing: ``results.schema.Combination``."""

    members: tuple[Node, ...]
    ancestors: tuple[Node, ...]
    descendants: tuple[Node, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.members)


@dataclass(frozen=True)
class CombinationMasks:
    """Combinations as arrays: ``members[i]`` the node indices of combination i (in the order
    given), ``ancestors``/``descendants`` ``[C, n]`` bool over node indices, ``names[j]`` the
    name of node j (empty for nodes no combination reaches)."""

    members: list[tuple[int, ...]]
    ancestors: np.ndarray
    descendants: np.ndarray
    names: list[str]


@dataclass(frozen=True)
class StoredGraph:
    """What a store records about a loaded graph."""

    name: str
    sha256: str
    source: str
    n_nodes: int
    n_labels: int
    n_edges: int
    depth: int


@dataclass(frozen=True)
class StoredContent:
    """A stored graph read back from its nodes and ``IS_A`` edges: the counts, and the sha256
    of that content computed as ``LabelGraph.sha256`` computes it (``""`` when what is stored
    is no label graph: indices with gaps, a label after an abstract node, a cycle, ...)."""

    n_nodes: int
    n_edges: int
    sha256: str

    def matches(self, record: StoredGraph) -> bool:
        """Whether this is the content ``record`` was written for (sha256 and counts)."""
        return (self.sha256, self.n_nodes, self.n_edges) == (record.sha256, record.n_nodes, record.n_edges)


# Clauses that reach files, the network or the database's state, which a read-only
# transaction does not stop in every store (Ladybug runs COPY … TO inside one).
FORBIDDEN_CLAUSES = ("COPY", "EXPORT", "IMPORT", "LOAD", "INSTALL", "ATTACH")
FORBIDDEN_PROCEDURES = re.compile(r"\bCALL\s+(apoc|dbms|gds)\.", re.I)  # Neo4j's file, admin and algorithm procedures
_STRINGS_AND_COMMENTS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|//[^\n]*|/\*.*?\*/", re.S)


def check_user_query(text: str) -> None:
    """Refuse a user's Cypher that copies, exports, loads or attaches anything (strings,
    backquoted names, comments and property names are not looked at)."""
    code = _STRINGS_AND_COMMENTS.sub(" ", text)
    for match in re.finditer(r"(?<![.\w$])([A-Za-z_]+)\b", code):
        word = match.group(1).upper()
        if word in FORBIDDEN_CLAUSES:
            raise BenchError(f"bench kg query is read-only: {word} is refused (it reaches files or the store's state)")
    procedure = FORBIDDEN_PROCEDURES.search(code)
    if procedure:
        raise BenchError(f"bench kg query is read-only: CALL {procedure.group(1)}.* procedures are refused")


def _nodes(values: Iterable[Mapping[str, Any]]) -> tuple[Node, ...]:
    """``[{idx, name}, ...]`` from a query (distinct already) → nodes sorted by index."""
    return tuple(sorted(Node(v["idx"], v["name"]) for v in values))


def _rebuilt(name: str, rows: Sequence[Row]) -> LabelGraph | None:
    """The label graph ``graph_content`` rows describe (``None`` if they describe none): the
    stored nodes in index order, their parents' indices, the labels first."""
    n_labels = sum(bool(r["is_label"]) for r in rows)
    if [r["idx"] for r in rows] != list(range(len(rows))):
        return None
    if any(bool(r["is_label"]) != (i < n_labels) for i, r in enumerate(rows)):
        return None
    try:
        return LabelGraph(
            name,
            tuple(str(r["name"]) for r in rows),
            tuple((p, r["idx"]) for r in rows for p in r["parents"]),
            n_labels,
            ids=tuple(r["source_id"] or "" for r in rows),
        )
    except (BenchError, TypeError, ValueError):
        return None


def _distinct(labels: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(str(x) for x in labels))


class WriteConflict(BenchError):
    """A write transaction rolled back because another one stored the same keys first."""


class GraphStore(ABC):
    """A graph database holding label graphs; a context manager (``with open_store() as s:``)."""

    dialect: ClassVar[str]
    """Which variant of the ``cypher/`` files this store runs (``ladybug`` or ``neo4j``)."""
    schema: ClassVar[tuple[str, ...]] = (
        "schema_label",
        "schema_is_a",
        "schema_graph",
        "schema_outcome",
        "schema_outcome_of",
        "schema_node_kinds",
    )

    # ------------------------------------------------------------- primitives
    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store lives (a path or a URI), for messages."""

    @abstractmethod
    def _read(self, text: str, params: Mapping[str, Any]) -> list[Row]:
        """Run one read query (one round trip); Cypher errors raise ``BenchError``."""

    @abstractmethod
    def _write(self, steps: Sequence[Step]) -> None:
        """Run the steps in one transaction: all of them or none."""

    @abstractmethod
    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run a user's Cypher in a read-only transaction; rows as dicts."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cypher(self, name: str) -> str:
        """The text of query ``name`` as this store runs it."""
        return cypher.query(name, self.dialect)

    def _create_schema(self) -> None:
        """Create the tables / constraints the queries need, if missing (``IF NOT EXISTS``)."""
        for name in self.schema:
            self._write([(self.cypher(name), {})])

    # ---------------------------------------------------------------- loading
    def graphs(self) -> dict[str, StoredGraph]:
        """The stored graphs by name."""
        rows = self._read(self.cypher("graphs"), {})
        return {r["name"]: StoredGraph(**r) for r in rows}

    def content(self, name: str) -> StoredContent:
        """Read graph ``name`` back and recompute its node and edge counts and its sha256, to
        check the stored copy against its record (``.matches(graphs()[name])``) or a graph
        file (``.sha256 == graph.sha256``). An absent graph: 0 nodes, 0 edges."""
        rows = self._read(self.cypher("graph_content"), {"graph": name})
        graph = _rebuilt(name, rows)
        return StoredContent(len(rows), sum(len(r["parents"]) for r in rows), graph.sha256 if graph else "")

    def read_graph(self, name: str) -> LabelGraph:
        """Stored graph ``name`` as a ``LabelGraph``, with its recorded ``source`` (not the graph
        file's ``meta``)."""
        graph = _rebuilt(name, self._read(self.cypher("graph_content"), {"graph": name}))
        record = self.graphs().get(name)
        if graph is None or record is None:
            raise BenchError(f"graph {name!r} in {self.location} is absent or damaged: load it with `bench kg load`")
        return dataclasses.replace(graph, source=record.source)

    def load(self, graph: LabelGraph) -> str:
        """Store ``graph``: ``"unchanged"`` if the same content is there, ``"replaced"`` if
        another version was (in one transaction, other graphs untouched), ``"repaired"`` if
        the record says this version but the nodes and edges read back differ from it (edited
        by hand: reloaded the same way), else ``"loaded"``.

        Two loads of one graph at once (two processes on one Neo4j server): the transaction
        that loses rolls back whole (``WriteConflict``) and is decided again, once, against
        what the other stored."""
        try:
            return self._load(graph)
        except WriteConflict:
            return self._load(graph)

    def _load(self, graph: LabelGraph) -> str:
        if ":" in graph.name or not graph.name:
            raise BenchError(f"graph name {graph.name!r} cannot be stored: it must be non-empty and have no ':'")
        if graph.depth > MAX_DEPTH:
            raise BenchError(
                f"graph {graph.name!r} has depth {graph.depth}; "
                f"the stores' queries follow at most {MAX_DEPTH} IS_A edges"
            )
        stored = self.graphs().get(graph.name)
        same = stored is not None and stored.sha256 == graph.sha256
        if same and stored is not None and self.content(graph.name).matches(stored):
            return "unchanged"
        steps: list[Step] = self._drop_steps(graph.name) if stored is not None else []
        key = [f"{graph.name}:{name}" for name in graph.nodes]
        nodes = [
            {
                "key": key[i],
                "graph": graph.name,
                "name": name,
                "idx": i,
                "source_id": graph.ids[i],
                "is_label": i < graph.n_labels,
            }
            for i, name in enumerate(graph.nodes)
        ]
        edges = [{"child": key[c], "parent": key[p]} for p, c in graph.edges]
        if nodes:
            steps.append((self.cypher("load_nodes"), {"nodes": nodes}))
        if edges:
            steps.append((self.cypher("load_edges"), {"edges": edges}))
        record = {
            "graph": graph.name,
            "sha256": graph.sha256,
            "source": graph.source,
            "n_nodes": graph.n,
            "n_labels": graph.n_labels,
            "n_edges": len(graph.edges),
            "depth": graph.depth,
        }
        steps.append((self.cypher("load_graph"), record))
        self._write(steps)
        return "repaired" if same else "replaced" if stored is not None else "loaded"

    def _drop_steps(self, name: str) -> list[Step]:
        return [
            (self.cypher("drop_outcomes"), {"graph": name, "run": ""}),  # every run's results on its nodes
            (self.cypher("drop_labels"), {"graph": name}),
            (self.cypher("drop_graph"), {"graph": name}),
        ]

    def drop(self, name: str) -> bool:
        """Remove a graph; ``False`` if it was not stored."""
        if name not in self.graphs():
            return False
        self._write(self._drop_steps(name))
        return True

    # ------------------------------------------------------------ annotations
    def annotate(self, graph_name: str, run_id: str, outcomes: Sequence[Mapping[str, Any]]) -> int:
        """Hang a run's per-label results off the graph's nodes (``Outcome`` nodes, keyed by
        run): the run's earlier ones are replaced in the same transaction, other runs' stay.

        ``outcomes``: dicts with ``label`` (a node name), ``attack``, ``eps``, ``tau``, the
        ``label_rates`` numbers and ``band`` (``results.annotate``). Returns how many were stored."""
        if graph_name not in self.graphs():
            raise BenchError(f"graph {graph_name!r} is not loaded in {self.location}")
        missing = sorted({o["label"] for o in outcomes} - set(self.node_names(graph_name)))
        if missing:
            raise BenchError(f"run {run_id!r} names labels that graph {graph_name!r} lacks: {', '.join(missing[:5])}")
        rows = [
            {
                **{k: v for k, v in o.items() if k != "label"},
                "key": f"{graph_name}:{run_id}:{o['attack']}:{o['eps']!r}:{o['tau']!r}:{o['label']}",
                "label_key": f"{graph_name}:{o['label']}",
                "graph": graph_name,
                "run_id": run_id,
                "name": o["label"],
            }
            for o in outcomes
        ]
        steps: list[Step] = [(self.cypher("drop_outcomes"), {"graph": graph_name, "run": run_id})]
        if rows:
            steps.append((self.cypher("annotate"), {"outcomes": rows}))
        self._write(steps)
        return len(rows)

    def node_names(self, graph_name: str) -> list[str]:
        """The names of a stored graph's nodes, in extended label order (empty if not stored)."""
        return [r["name"] for r in self._read(self.cypher("nodes"), {"graph": graph_name})]

    def annotated_graphs(self, run_id: str) -> list[str]:
        """The graphs that hold run ``run_id``'s outcomes."""
        return [r["graph"] for r in self._read(self.cypher("outcome_graphs"), {"run": run_id})]

    def outcomes(self, graph_name: str, run_id: str) -> list[Row]:
        """A run's annotations on a graph, by (attack, ε, τ, node index); empty if none."""
        return self._read(self.cypher("outcomes"), {"graph": graph_name, "run": run_id})

    # ---------------------------------------------------------------- queries
    def parents(self, graph_name: str, labels: Iterable[str]) -> dict[str, list[str]]:
        """Direct parents of each label, sorted by index."""
        return self._related("parents", graph_name, labels)

    def children(self, graph_name: str, labels: Iterable[str]) -> dict[str, list[str]]:
        """Direct children of each label, sorted by index."""
        return self._related("children", graph_name, labels)

    def ancestors(self, graph_name: str, labels: Iterable[str]) -> dict[str, list[str]]:
        """Proper ancestors of each label, sorted by index."""
        return self._related("ancestors", graph_name, labels)

    def descendants(self, graph_name: str, labels: Iterable[str]) -> dict[str, list[str]]:
        """Proper descendants of each label, sorted by index."""
        return self._related("descendants", graph_name, labels)

    def _related(self, query_name: str, graph_name: str, labels: Iterable[str]) -> dict[str, list[str]]:
        labels = _distinct(labels)
        if not labels:
            return {}
        rows = self._read(self.cypher(query_name), {"graph": graph_name, "labels": labels})
        found = {r["label"]: _nodes(r["nodes"]) for r in rows}
        self._check_found(graph_name, labels, found)
        return {label: [n.name for n in found[label]] for label in labels}

    def combinations(self, graph_name: str, labels: Iterable[str], k: int) -> list[CombinationClosure]:
        """Every combination of ``k`` of the labels (in the order given), resolved in one query."""
        labels = _distinct(labels)
        if not 1 <= k <= len(labels):
            raise BenchError(f"combinations of size {k} need 1 <= k <= {len(labels)} (the number of labels given)")
        return self.resolve_combinations(graph_name, list(itertools.combinations(labels, k)))

    def resolve_combinations(self, graph_name: str, combos: Sequence[Sequence[str]]) -> list[CombinationClosure]:
        """Members, ancestors and descendants of each given combination, in one round trip."""
        if not combos:
            return []
        masks = self.combination_masks(graph_name, combos)
        names = masks.names
        out = []
        for i, members in enumerate(masks.members):
            out.append(
                CombinationClosure(
                    tuple(Node(int(j), names[int(j)]) for j in members),
                    tuple(Node(int(j), names[int(j)]) for j in np.flatnonzero(masks.ancestors[i])),
                    tuple(Node(int(j), names[int(j)]) for j in np.flatnonzero(masks.descendants[i])),
                )
            )
        return out

    def combination_masks(self, graph_name: str, combos: Sequence[Sequence[str]]) -> CombinationMasks:
        """Each combination's members and the union of their proper ancestors and descendants,
        as ``[C, n]`` masks over the graph's nodes: one Cypher round trip (``closure``) fetches
        each distinct label's ancestors and descendants once; the unions are taken on arrays."""
        members = [_distinct(c) for c in combos]
        labels = _distinct(itertools.chain.from_iterable(members))
        rows = self._read(self.cypher("closure"), {"graph": graph_name, "labels": labels}) if labels else []
        found = {r["label"]: r for r in rows}
        self._check_found(graph_name, labels, found)
        up_nodes = {label: _nodes(r["up"]) for label, r in found.items()}
        down_nodes = {label: _nodes(r["down"]) for label, r in found.items()}
        reached = [Node(r["idx"], label) for label, r in found.items()]
        reached += [x for nodes in (*up_nodes.values(), *down_nodes.values()) for x in nodes]
        n = 1 + max((x.idx for x in reached), default=-1)
        names = [""] * n
        for x in reached:
            names[x.idx] = x.name
        position = {label: k for k, label in enumerate(labels)}
        up = np.zeros((len(labels), n), dtype=bool)
        down = np.zeros_like(up)
        for label in found:
            up[position[label], [x.idx for x in up_nodes[label]]] = True
            down[position[label], [x.idx for x in down_nodes[label]]] = True
        ancestors = np.zeros((len(members), n), dtype=bool)
        descendants = np.zeros_like(ancestors)
        for k in sorted({len(m) for m in members}):
            rows_k = [i for i, m in enumerate(members) if len(m) == k]
            at = np.array([[position[x] for x in members[i]] for i in rows_k], dtype=np.int64).reshape(len(rows_k), k)
            ancestors[rows_k] = up[at].any(axis=1)
            descendants[rows_k] = down[at].any(axis=1)
        index = [tuple(found[x]["idx"] for x in m) for m in members]
        return CombinationMasks(index, ancestors, descendants, names)

    def _check_found(self, graph_name: str, labels: Sequence[str], found: Iterable[str]) -> None:
        found = set(found)
        missing = [x for x in labels if x not in found]
        if not missing:
            return
        if graph_name not in self.graphs():
            raise BenchError(
                f"graph {graph_name!r} is not loaded in {self.location}; load it with `bench kg load --graph "
                f"{graph_name}`"
            )
        raise unknown(f"label in graph {graph_name!r}:", missing[0], self.node_names(graph_name))
