"""Graphs by name: the user's own (``$BENCH_DATA/graphs/NAME.json``) first, then the
versioned graphs shipped in ``kg/graphs/``; a path to a graph file works too."""

from __future__ import annotations

from pathlib import Path

from bench.errors import unknown
from bench.paths import data_dir
from kg.graph import LabelGraph

PACKAGED = Path(__file__).resolve().parent / "graphs"


def user_graph_dir() -> Path:
    return data_dir() / "graphs"


def graph_path(name: str) -> Path:
    """The file a graph name resolves to (raises ``BenchError`` for unknown names)."""
    as_path = Path(name)
    if as_path.suffix == ".json" and as_path.exists():
        return as_path
    for folder in (user_graph_dir(), PACKAGED):
        candidate = folder / f"{name}.json"
        if candidate.exists():
            return candidate
    raise unknown("graph", name, graph_names())


def load_graph(name: str) -> LabelGraph:
    """Load a graph by name (``voc``, ``nus``, ``openimages``, ``stamps``, a user's) or path."""
    return LabelGraph.load(graph_path(name))


def graph_names() -> list[str]:
    names = {p.stem for p in PACKAGED.glob("*.json")}
    if user_graph_dir().exists():
        names |= {p.stem for p in user_graph_dir().glob("*.json")}
    return sorted(names)
