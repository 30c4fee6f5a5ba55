"""Graphs by name: the user's own (``$BENCH_DATA/graphs/NAME.json``) first, then the
versioned graphs shipped in ``kg/graphs/``; a path to a graph file works too.

Builders by dataset name re-create a graph from its sources: one WordNet builder per
label table in ``kg/labels/`` (``voc``, ``nus``, ``stamps``, ...) and ``openimages`` /
``openimages-tree`` from the official Open Images files."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.errors import BenchError, unknown
from bench.paths import data_dir
from bench.registry import Registry
from kg.graph import LabelGraph

PACKAGED = Path(__file__).resolve().parent / "graphs"
LABEL_TABLES = Path(__file__).resolve().parent / "labels"
GRAPH_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # lower case: names compare ignoring case, as datasets do


def user_graph_dir() -> Path:
    return data_dir() / "graphs"


def graph_path(name: str) -> Path:
    """The file a graph name resolves to (raises ``BenchError`` for unknown names)."""
    as_path = Path(name)
    if as_path.suffix == ".json":
        if not as_path.exists():
            raise BenchError(f"graph file {as_path} does not exist")
        return as_path
    for folder in (user_graph_dir(), PACKAGED):
        candidate = folder / f"{name.lower()}.json"
        if candidate.exists():
            return candidate
    raise unknown("graph", name, graph_names())


def read_edges_csv(path: str | Path, labels: Sequence[str], name: str | None = None) -> LabelGraph:
    """A user's hierarchy from a CSV of ``parent,child`` name pairs (a header line naming them
    first, ``#`` comments and blank lines allowed) over the model's ``labels``: every other
    name becomes an abstract node (``LabelGraph.from_edges``). The graph is named ``name`` or
    the file's stem."""
    import csv

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"graph file {path} does not read: {exc}") from None
    rows = [r for r in csv.reader(line for line in text.splitlines() if line.strip() and not line.startswith("#"))]
    if rows and [c.strip().lower() for c in rows[0]] == ["parent", "child"]:
        rows = rows[1:]
    edges = []
    for number, row in enumerate(rows, 1):
        if len(row) != 2 or not all(c.strip() for c in row):
            raise BenchError(f"graph file {path}: row {number} is not 'parent,child': {','.join(row)!r}")
        edges.append((row[0].strip(), row[1].strip()))
    return LabelGraph.from_edges(name or path.stem.lower(), labels, edges, source=f"edges {path.name}")


def load_graph(name: str) -> LabelGraph:
    """Load a graph by name (``voc``, ``nus``, ``openimages``, ``stamps``, a user's) or path."""
    return LabelGraph.load(graph_path(name))


def graph_names() -> list[str]:
    names = {p.stem for p in PACKAGED.glob("*.json")}
    if user_graph_dir().exists():
        names |= {p.stem for p in user_graph_dir().glob("*.json")}
    return sorted(names)


# ------------------------------------------------------------------ building graphs
BUILDERS: Registry[Callable[[], LabelGraph]] = Registry("dataset")


def register_builder(name: str):
    """Decorator: ``@register_builder("coco")`` on a function ``() -> LabelGraph``."""
    return BUILDERS.register(name)


def build_graph(dataset: str) -> LabelGraph:
    """Build the graph of a known dataset from its sources (WordNet, the Open Images files)."""
    return BUILDERS.get(dataset)()


def builder_names() -> list[str]:
    """The graph builders' names for help texts: those at hand, even when a plugin did not load."""
    return BUILDERS.names(loaded_only=True)


def packaged_path(name: str) -> Path:
    """Where the versioned graph ``name`` lives in the project (``kg/graphs/NAME.json``)."""
    return PACKAGED / f"{name}.json"


def check_user_graph_name(name: str, force: bool = False) -> None:
    """A name a user graph may take: a file name, and no packaged graph's unless ``force``."""
    if not GRAPH_NAME.fullmatch(name):
        raise BenchError(
            f"graph name {name!r} must be lower-case letters, digits, '-' or '_' (it becomes a file name, "
            "and names compare ignoring case)"
        )
    if packaged_path(name).exists() and not force:
        raise BenchError(
            f"{name!r} is a packaged graph: pick another {{name}}, or pass {{force}} to use yours for {name!r} "
            "everywhere (bench kg remove undoes it)",
            options=["name", "force"],
        )


def save_user_graph(graph: LabelGraph, force: bool = False) -> Path:
    """Write ``graph`` to ``$BENCH_DATA/graphs/NAME.json`` (atomically); the catalog finds it
    first. A packaged graph's name is refused unless ``force`` or the content is the packaged one."""
    packaged = packaged_path(graph.name)
    same = packaged.exists() and LabelGraph.load(packaged).sha256 == graph.sha256
    check_user_graph_name(graph.name, force or same)
    return graph.save(user_graph_dir() / f"{graph.name}.json")


def remove_user_graph(name: str) -> Path:
    """Delete the user graph ``name`` (``$BENCH_DATA/graphs/NAME.json``); a packaged one stays."""
    name = name.lower()
    path = user_graph_dir() / f"{name}.json"
    if not GRAPH_NAME.fullmatch(name) or not path.is_file():
        mine = sorted(p.stem for p in user_graph_dir().glob("*.json")) if user_graph_dir().exists() else []
        what = "packaged graphs stay" if packaged_path(name).exists() else "no such graph"
        raise BenchError(f"no user graph {name!r} to remove ({what}); yours: {', '.join(mine) or 'none'}")
    path.unlink()
    return path


def _wordnet_builder(name: str) -> Callable[[], LabelGraph]:
    def build() -> LabelGraph:
        from kg.wordnet import build_wordnet_graph, read_label_table

        return build_wordnet_graph(name, read_label_table(LABEL_TABLES / f"{name}.csv"))

    return build


def _openimages_builder(tree: bool) -> Callable[[], LabelGraph]:
    def build() -> LabelGraph:
        from kg.openimages import build_openimages_graph

        return build_openimages_graph(tree=tree)

    return build


for _name in sorted(p.stem for p in LABEL_TABLES.glob("*.csv")):
    register_builder(_name)(_wordnet_builder(_name))
register_builder("openimages")(_openimages_builder(tree=False))
register_builder("openimages-tree")(_openimages_builder(tree=True))
