"""Graph stores by name: ``ladybug`` (embedded, the default) and ``neo4j`` (a server).

Example::

    from kg.catalog import load_graph
    from kg.stores import open_store

    with open_store("ladybug") as store:
        store.load(load_graph("voc"))
        store.ancestors("voc", ["cat", "dog"])
        store.combinations("voc", load_graph("voc").labels, k=3)

A new store is one module with a ``@register_store("name")`` subclass of ``GraphStore``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.registry import Registry
from cypher import MAX_DEPTH
from kg.stores.base import CombinationClosure, GraphStore, Node, StoredGraph

STORES: Registry[type[GraphStore]] = Registry("graph store")
register_store = STORES.register


def open_store(kind: str = "ladybug", **options: Any) -> GraphStore:
    """Open the store ``kind`` (``ladybug`` options: ``path``; ``neo4j``: ``uri``, ``database``)."""
    return STORES.get(kind)(**options)


def check_store(kind: str, graph_db: str | Path | None = None) -> None:
    """A registered store, and a Ladybug file (``graph_db``) only for the Ladybug store."""
    STORES.get(kind)
    if graph_db is not None and kind.lower() != "ladybug":
        raise BenchError(
            "{graph_db} names a Ladybug file; the neo4j store reads NEO4J_URI instead", options=["graph_db"]
        )
    if graph_db is not None and str(graph_db) != ":memory:":
        path = Path(graph_db).expanduser()
        if path.is_dir():
            raise BenchError(f"graph store {graph_db} is a folder: name the Ladybug file", options=["graph_db"])
        if not path.parent.is_dir():
            raise BenchError(f"graph store {graph_db}: folder {path.parent} does not exist; create it first")


def missing_store_file(kind: str, graph_db: str | Path | None = None) -> Path | None:
    """The Ladybug file a store of ``kind`` would open, when it does not exist yet (opening it
    would create it); ``None`` when it exists, or for a store that is not a file."""
    if kind.lower() != "ladybug" or str(graph_db) == ":memory:":
        return None
    from kg.stores.ladybug_store import default_path

    path = Path(graph_db or default_path()).expanduser()
    return None if path.exists() else path


def open_graph_store(kind: str = "ladybug", graph_db: str | Path | None = None, existing: bool = False) -> GraphStore:
    """``open_store`` for a store picked by name and, for Ladybug, an optional database file
    (``existing``: for read commands, a file that is not there is refused instead of created,
    and the file is opened read-only, so that it stays byte for byte as it was)."""
    check_store(kind, graph_db)
    options: dict[str, Any] = {"path": graph_db} if graph_db is not None else {}
    if existing and kind.lower() == "ladybug":
        absent = missing_store_file(kind, graph_db)
        if absent is not None:
            raise BenchError(
                f"no graph store at {absent}: load a graph first (`bench kg load`) or name one with {{graph_db}}",
                options=["graph_db"],
            )
        options["read_only"] = True
    return open_store(kind, **options)


def store_names() -> list[str]:
    return STORES.names()


# The built-in stores register themselves on import.
from kg.stores import ladybug_store, neo4j_store  # noqa: E402,F401  isort: skip

__all__ = [
    "MAX_DEPTH",
    "CombinationClosure",
    "GraphStore",
    "Node",
    "StoredGraph",
    "STORES",
    "check_store",
    "missing_store_file",
    "open_graph_store",
    "open_store",
    "register_store",
    "store_names",
]
