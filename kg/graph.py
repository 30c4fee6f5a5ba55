"""``LabelGraph``: a label hierarchy (a DAG, parent → child) over an extended label set.

Node order is the *extended label order* a model is trained on: the dataset's own labels
first (``nodes[:n_labels]``), abstract nodes after. Edges point from parent to child.
The same object serves every stage: extraction writes it, graph stores load it, the
tensor closure and the consistency checks read its matrices.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError, unknown
from bench.fileio import read_json, write_json

FORMAT = "semattack-bench/label-graph"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class LabelGraph:
    """A label hierarchy.

    Attributes:
        name: dataset / graph name (``voc``, ``nus``, ``openimages``, ``stamps``, ...).
        nodes: node names in extended label order.
        edges: ``(parent, child)`` index pairs.
        n_labels: how many of the first nodes are the dataset's own labels.
        ids: per node, the WordNet synset (``dog.n.01``) or Open Images MID; ``""`` if none.
        source: where the hierarchy comes from (``wordnet-3.0``, ``openimages-v6``, ...).
        meta: free-form provenance (parent choices, pruned nodes, ...), not hashed.
    """

    name: str
    nodes: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    n_labels: int
    ids: tuple[str, ...] = ()
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.nodes)
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "ids", tuple(self.ids) if self.ids else ("",) * n)
        object.__setattr__(self, "edges", tuple(sorted({(int(p), int(c)) for p, c in self.edges})))
        if len(set(self.nodes)) != n:
            dup = sorted({x for x in self.nodes if self.nodes.count(x) > 1})
            raise BenchError(f"graph {self.name!r} has duplicate node names: {', '.join(dup[:5])}")
        if len(self.ids) != n:
            raise BenchError(f"graph {self.name!r}: {len(self.ids)} ids for {n} nodes")
        if not 0 <= self.n_labels <= n:
            raise BenchError(f"graph {self.name!r}: n_labels={self.n_labels} outside 0..{n}")
        for p, c in self.edges:
            if not (0 <= p < n and 0 <= c < n) or p == c:
                raise BenchError(f"graph {self.name!r}: bad edge ({p}, {c})")
        _ = self.topological_order  # raises on a cycle

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def labels(self) -> tuple[str, ...]:
        """The dataset's own labels (the first ``n_labels`` nodes)."""
        return self.nodes[: self.n_labels]

    @property
    def abstract_nodes(self) -> tuple[str, ...]:
        return self.nodes[self.n_labels :]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.nodes)}

    def index(self, name: str | int) -> int:
        """Index of a node by name (or pass an index through: an int, or a 0-d tensor or array
        of one); unknown names suggest close ones."""
        if getattr(name, "ndim", None) == 0:  # a 0-d tensor or array: its value, not its identity
            name = name.item()  # type: ignore[union-attr]
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < self.n:
                raise BenchError(f"node index {name} outside 0..{self.n - 1} in graph {self.name!r}")
            return int(name)
        try:
            return self._index[name]
        except KeyError:
            raise unknown(f"label in graph {self.name!r}:", name, self.nodes) from None

    def indices(self, names: Iterable[str | int]) -> list[int]:
        """Indices of nodes by name or index: a list, a tuple, a tensor or an array of them."""
        if hasattr(names, "tolist"):  # a tensor or an array: compare values, never element objects
            names = names.tolist()
        return [self.index(x) for x in names]

    @cached_property
    def _parents(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for p, c in self.edges:
            out[c].append(p)
        return tuple(tuple(x) for x in out)

    @cached_property
    def _children(self) -> tuple[tuple[int, ...], ...]:
        out: list[list[int]] = [[] for _ in range(self.n)]
        for p, c in self.edges:
            out[p].append(c)
        return tuple(tuple(x) for x in out)

    def parents(self, node: str | int) -> tuple[int, ...]:
        return self._parents[self.index(node)]

    def children(self, node: str | int) -> tuple[int, ...]:
        return self._children[self.index(node)]

    def _walk(self, start: int, step: Sequence[Sequence[int]]) -> set[int]:
        seen: set[int] = set()
        todo = deque(step[start])
        while todo:
            v = todo.popleft()
            if v not in seen:
                seen.add(v)
                todo.extend(step[v])
        return seen

    def ancestors(self, node: str | int) -> set[int]:
        """Proper ancestors (indices)."""
        return self._walk(self.index(node), self._parents)

    def descendants(self, node: str | int) -> set[int]:
        """Proper descendants (indices)."""
        return self._walk(self.index(node), self._children)

    @cached_property
    def roots(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n) if not self._parents[i])

    @cached_property
    def leaves(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.n) if not self._children[i])

    @property
    def is_tree(self) -> bool:
        """Every node has at most one parent (a forest)."""
        return all(len(p) <= 1 for p in self._parents)

    @cached_property
    def topological_order(self) -> tuple[int, ...]:
        indeg = [len(p) for p in self._parents]
        todo = deque(i for i in range(self.n) if indeg[i] == 0)
        order: list[int] = []
        while todo:
            v = todo.popleft()
            order.append(v)
            for c in self._children[v]:
                indeg[c] -= 1
                if indeg[c] == 0:
                    todo.append(c)
        if len(order) != self.n:
            raise BenchError(f"graph {self.name!r} has a cycle")
        return tuple(order)

    @cached_property
    def depth(self) -> int:
        """Number of edges on the longest root-to-leaf path."""
        level = [0] * self.n
        for v in self.topological_order:
            for c in self._children[v]:
                level[c] = max(level[c], level[v] + 1)
        return max(level, default=0)

    # ---------------------------------------------------------------- matrices
    def adjacency(self) -> np.ndarray:
        """Dense 0/1 matrix ``A[parent, child]`` (float32), the official code's ``tree``."""
        a = np.zeros((self.n, self.n), dtype=np.float32)
        if self.edges:
            p, c = np.asarray(self.edges).T
            a[p, c] = 1.0
        return a

    def reachability(self) -> np.ndarray:
        """``R[a, d] = 1`` when ``a`` is a proper ancestor of ``d`` (float32)."""
        r = np.zeros((self.n, self.n), dtype=np.float32)
        for v in reversed(self.topological_order):
            for c in self._children[v]:
                r[v, c] = 1.0
                r[v] = np.maximum(r[v], r[c])
        return r

    def extend_labels(self, y: np.ndarray) -> np.ndarray:
        """Ground truth over dataset labels ``[N, n_labels]`` (or ``[N, n]``) → extended ``[N, n]``.

        A node is positive when it or one of its descendants is positive.
        """
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] not in (self.n_labels, self.n):
            raise BenchError(
                f"labels of shape {y.shape} do not fit graph {self.name!r} ({self.n_labels} labels, {self.n} nodes)"
            )
        full = np.zeros((y.shape[0], self.n), dtype=np.float32)
        full[:, : y.shape[1]] = y > 0
        full = np.maximum(full, (full @ self.reachability().T) > 0)
        return full.astype(y.dtype if y.dtype != bool else bool)

    # ------------------------------------------------------------- conversions
    def to_networkx(self):
        """A ``networkx.DiGraph`` (parent → child) with ``name``, ``id``, ``label`` attributes."""
        import networkx as nx

        g = nx.DiGraph(name=self.name)
        for i, name in enumerate(self.nodes):
            g.add_node(i, name=name, id=self.ids[i], label=i < self.n_labels)
        g.add_edges_from(self.edges)
        return g

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "source": self.source,
            "n_labels": self.n_labels,
            "sha256": self.sha256,
            "nodes": [
                {"name": name, "id": self.ids[i], "label": i < self.n_labels} for i, name in enumerate(self.nodes)
            ],
            "edges": [[self.nodes[p], self.nodes[c]] for p, c in self.edges],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "graph") -> LabelGraph:
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if int(data.get("version", 0)) > FORMAT_VERSION:
                raise ValueError(f"format version {data['version']} is newer than this code ({FORMAT_VERSION})")
            nodes = [str(n["name"]) for n in data["nodes"]]
            ids = [str(n.get("id") or "") for n in data["nodes"]]
            pos = {name: i for i, name in enumerate(nodes)}
            edges = [(pos[p], pos[c]) for p, c in data["edges"]]
            graph = cls(
                name=str(data["name"]),
                nodes=tuple(nodes),
                edges=tuple(edges),
                n_labels=int(data["n_labels"]),
                ids=tuple(ids),
                source=str(data.get("source", "")),
                meta=dict(data.get("meta") or {}),
            )
        except BenchError as exc:
            raise BenchError(f"{where} does not parse: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise BenchError(f"{where} does not parse: {detail}") from None
        stored = data.get("sha256")
        if stored and stored != graph.sha256:
            raise BenchError(f"{where} does not parse: its sha256 does not match its content (edited by hand?)")
        return graph

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_edges(
        cls, name: str, labels: Sequence[str], edges: Iterable[tuple[str, str]], source: str = "edges"
    ) -> LabelGraph:
        """A graph from its dataset labels and ``(parent, child)`` name pairs: a name that is not
        one of ``labels`` becomes an abstract node, after the labels, in the order first seen."""
        nodes = list(labels)
        index = {n: i for i, n in enumerate(nodes)}
        pairs = []
        for parent, child in edges:
            for node in (parent, child):
                if node not in index:
                    index[node] = len(nodes)
                    nodes.append(node)
            pairs.append((index[parent], index[child]))
        return cls(name, tuple(nodes), tuple(pairs), len(labels), source=source)

    @classmethod
    def load(cls, path: str | Path) -> LabelGraph:
        path = Path(path)
        data = read_json(path, "graph file")
        if not isinstance(data, dict):
            raise BenchError(f"graph file {path} does not parse: expected a JSON object")
        return cls.from_dict(data, where=f"graph file {path}")

    @cached_property
    def sha256(self) -> str:
        """Content hash of nodes, ids, label count and edges (not of ``meta``)."""
        canon = json.dumps(
            {
                "nodes": list(self.nodes),
                "ids": list(self.ids),
                "n_labels": self.n_labels,
                "edges": [list(e) for e in self.edges],
            },
            separators=(",", ":"),
        )
        return hashlib.sha256(canon.encode()).hexdigest()

    def __repr__(self) -> str:
        return (
            f"LabelGraph({self.name!r}, {self.n_labels} labels + {self.n - self.n_labels} abstract, "
            f"{len(self.edges)} edges, depth {self.depth})"
        )
