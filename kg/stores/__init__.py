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

from typing import Any

from bench.registry import Registry
from kg.stores.base import MAX_DEPTH, Combination, GraphStore, Node, StoredGraph

STORES: Registry[type[GraphStore]] = Registry("graph store")
register_store = STORES.register


def open_store(kind: str = "ladybug", **options: Any) -> GraphStore:
    """Open the store ``kind`` (``ladybug`` options: ``path``; ``neo4j``: ``uri``, ``database``)."""
    return STORES.get(kind)(**options)


def store_names() -> list[str]:
    return STORES.names()


# The built-in stores register themselves on import.
from kg.stores import ladybug_store, neo4j_store  # noqa: E402,F401  isort: skip

__all__ = [
    "MAX_DEPTH",
    "Combination",
    "GraphStore",
    "Node",
    "StoredGraph",
    "STORES",
    "open_store",
    "register_store",
    "store_names",
]
