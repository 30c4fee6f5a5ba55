"""``bench kg load | closure | query | annotate``: label graphs in a graph store."""

from __future__ import annotations

import json
from typing import Annotated

import numpy as np
import typer
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from bench.cli.apps import GraphDbOption, GraphStoreOption, ReadDbOption, canonical_graph, kg_app
from bench.cli.console import FormatOption, RowFormat, console, write_rows
from bench.errors import BenchError
from kg.catalog import graph_names, load_graph
from kg.explain import Explained, check_targets, explain_closure
from kg.stores import missing_store_file, open_graph_store
from kg.stores.base import check_user_query


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# --------------------------------------------------------------------- kg load
@kg_app.command("load")
def load(
    dataset: Annotated[
        str,
        typer.Option(
            "--graph", "-g", help="Graph to load: a name (voc, nus, openimages, stamps, ...), a comma list, or 'all'."
        ),
    ] = "all",
    store: GraphStoreOption = "ladybug",
    db: GraphDbOption = None,
) -> None:
    """Load label graphs into a graph store (idempotent).

    An unchanged graph stays as it is; a changed one replaces its old copy in one
    transaction; other graphs are untouched. A stored copy whose nodes and edges no longer
    match its recorded sha256 (edited by hand) is reloaded whole: status "repaired".

    Example: bench kg load --graph-store ladybug --graph voc
    """
    names = graph_names() if dataset == "all" else list(dict.fromkeys(_split(dataset)))
    if not names:
        raise BenchError("no graphs to load: build them first (bench kg build) or name a graph file")
    graphs = [load_graph(name) for name in names]  # every file checked before the store changes
    table = Table(title=None, show_edge=False)
    for column in ("graph", "nodes", "labels", "edges", "depth", "sha256", "status"):
        table.add_column(column, justify="right" if column in ("nodes", "labels", "edges", "depth") else "left")
    repaired = []
    with open_graph_store(store, db) as graph_store:
        for graph in graphs:
            status = graph_store.load(graph)
            if status == "repaired":
                repaired.append(graph.name)
            colour = {"loaded": "green", "replaced": "yellow", "repaired": "bold yellow"}.get(status, "dim")
            table.add_row(
                graph.name,
                str(graph.n),
                str(graph.n_labels),
                str(len(graph.edges)),
                str(graph.depth),
                graph.sha256[:12],
                Text(status, style=colour),
            )
        where = graph_store.location
    console.print(table)
    console.print(f"in {where}", style="dim")
    for name in repaired:
        console.print(f"repaired {name!r}: its stored nodes and edges did not match its recorded sha256; reloaded")


# ------------------------------------------------------------------ kg closure
@kg_app.command("closure")
def closure(
    dataset: Annotated[
        str,
        typer.Option(
            "--graph",
            "-g",
            callback=canonical_graph,
            help="Graph name (voc, nus, openimages, stamps, ...) or graph file.",
        ),
    ],
    targets: Annotated[str, typer.Option("--targets", "-t", help="Target labels Ω, comma-separated, e.g. cat,dog.")],
    positive: Annotated[
        str | None,
        typer.Option(
            help="Labels predicted positive, comma-separated (their ancestors become positive too). "
            "Default: turn-off, the targets with all their ancestors and descendants (the largest Ψ); "
            "turn-on, nothing."
        ),
    ] = None,
    turn_on: Annotated[bool, typer.Option("--turn-on", help="Switch the targets ON instead of OFF.")] = False,
    store: GraphStoreOption = "ladybug",
    db: GraphDbOption = None,
) -> None:
    """Print the consistent target set Ψ = h(Ω) of target labels.

    The targets' ancestors and descendants come from the graph store (the Cypher used is
    printed with its parameters); Ψ is computed as the attacks compute it (docs/knowledge-graphs.md).
    The store is only read: a graph it does not hold is answered from its graph file in a
    temporary in-memory store, and the command says so.

    Example: bench kg closure --graph voc --targets cat,dog --positive cat,dog,person
    """
    graph = load_graph(dataset)
    check_targets(graph, _split(targets))
    absent = missing_store_file(store, db)  # no store yet: opening it would create it
    question = (graph, _split(targets), None if positive is None else _split(positive), turn_on)
    if absent is None:
        with open_graph_store(store, db, existing=True) as graph_store:
            explained = explain_closure(graph_store, *question)
    else:
        explained = explain_closure(None, *question)
        explained.note = (
            f"no graph store at {absent} yet: answered from the graph file in a temporary in-memory store "
            f"(`bench kg load --graph {graph.name}` creates it)"
        )
    if explained.note:
        console.print(explained.note, style="yellow", soft_wrap=True, markup=False)
    params = f"$graph = {graph.name!r}, $labels = {_split(targets)!r}"
    for text, dialect, name in explained.cypher:
        panel = Panel(Syntax(text, "cypher", word_wrap=True), title=f"Cypher: {name} ({dialect})", subtitle=params)
        console.print(panel)
    _print_psi(explained)


def _print_psi(e: Explained) -> None:
    graph, targets = e.graph, set(e.targets)
    table = Table(title=f"Ψ = h(Ω) to switch {'ON' if e.turn_on else 'OFF'} in {graph.name!r}", show_edge=False)
    for column in ("idx", "node", "kind", "role", "positive", "in Ψ"):
        table.add_column(column)
    shown = sorted(
        targets | e.ancestors | e.descendants | set(np.flatnonzero(e.prediction)) | set(np.flatnonzero(e.psi))
    )
    for i in shown:
        role = (
            "target" if i in targets else "ancestor" if i in e.ancestors else "descendant" if i in e.descendants else ""
        )
        kind = "label" if i < graph.n_labels else "abstract"
        flip = Text("flip", style="bold") if e.psi[i] else ""
        table.add_row(str(i), graph.nodes[i], kind, role, "✓" if e.prediction[i] else "", flip)
    console.print(table)
    members = ", ".join(graph.nodes[i] for i in np.flatnonzero(e.psi))
    console.print(f"|Ψ| = {int(e.psi.sum())}: {members}", soft_wrap=True)


# -------------------------------------------------------------------- kg query
@kg_app.command("query")
def query(
    text: Annotated[str, typer.Argument(help="One Cypher statement; it runs in a read-only transaction.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A query parameter NAME=VALUE (VALUE as JSON if it parses, else a string); repeatable.",
        ),
    ] = None,
    store: GraphStoreOption = "ladybug",
    db: GraphDbOption = None,
    fmt: FormatOption = RowFormat.table,
) -> None:
    """Run a read-only Cypher query on a graph store and print the rows.

    Example: bench kg query 'MATCH (n:Label) WHERE n.graph = $g RETURN n.name AS name LIMIT 5' -p g=voc
    """
    params = dict(_parse_param(p) for p in param or [])
    check_user_query(text)  # before the store is opened: a refused query touches nothing
    with open_graph_store(store, db, existing=True) as graph_store:
        rows = graph_store.query(text, params)
    if fmt is not RowFormat.table:
        names = list(rows[0]) if rows else []
        write_rows(names, [[r[c] for c in names] for r in rows], fmt)
        return
    table = Table(show_edge=False)
    columns = list(rows[0]) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(json.dumps(row[c], ensure_ascii=False, default=str) for c in columns))
    console.print(table)
    console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")


def _parse_param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise BenchError(f"--param {text!r} is not NAME=VALUE")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


# ----------------------------------------------------------------- kg annotate
@kg_app.command("annotate")
def annotate(
    run: Annotated[str, typer.Option("--run", "-r", help="Run id whose results go onto its graph's nodes.")],
    db: ReadDbOption = None,
    store: GraphStoreOption = "ladybug",
    graph_db: GraphDbOption = None,
) -> None:
    """Write a run's per-label results onto its graph in a graph store.

    Each label gets one Outcome node per (attack, ε, τ), hung off it by OUTCOME_OF: as a
    target, pairs, FR_N and FR_S; as a bystander, how often other targets' attacks flipped it
    (nt_flips, nt_rate) and its share of all such flips (nt_share) — the SQL view label_rates.
    A run annotated again replaces its own outcomes; other runs' stay. Colour them with
    `bench kg view --run RUN` or in Neo4j Browser (neo4j/style.grass).

    Example: bench kg annotate --run stamps-demo
    Example: bench kg annotate --run stamps-demo --graph-store neo4j
    """
    from results.annotate import annotatable
    from results.annotate import annotate as write_annotations
    from results.store import read_results

    with read_results(db) as con:
        annotatable(con, run)  # an unknown run is refused before the graph store is opened
        with open_graph_store(store, graph_db) as graph_store:
            done = write_annotations(graph_store, con, run)
            where = graph_store.location
    if done.graph_status == "loaded":
        console.print(f"loaded graph {done.graph_name!r} (the run's) into {where}", style="dim")
    table = Table(title=f"run {run!r} on graph {done.graph_name!r}", show_edge=False)
    for column in ("attack", "ε", "τ", "rows", "most often broken (FR_N)", "most often dragged along (nt_rate)"):
        table.add_column(column)
    for s in done.settings:
        mine = [o for o in done.outcomes if (o["attack"], o["eps"], o["tau"]) == (s.attack, s.eps, s.tau)]
        targets = sorted((o for o in mine if o["pairs"]), key=lambda o: (-o["fr_n"], o["label"]))[:3]
        dragged = sorted((o for o in mine if o["nt_flips"]), key=lambda o: (-o["nt_rate"], o["label"]))[:3]
        table.add_row(
            s.attack,
            f"{s.eps:g}",
            f"{s.tau:g}",
            str(s.rows),
            Text(", ".join(f"{o['label']} {100 * o['fr_n']:.0f}%" for o in targets) or "—"),
            Text(", ".join(f"{o['label']} {100 * o['nt_rate']:.1f}%" for o in dragged) or "—"),
        )
    console.print(table)
    console.print(
        f"{len(done.outcomes)} outcomes in {where}; e.g. bench kg query --graph-store {store} "
        f'"MATCH (o:Outcome)-[:OUTCOME_OF]->(l:Label) WHERE o.run_id = \\$run AND o.pairs > 0 '
        f'RETURN l.name, o.attack, o.fr_n ORDER BY o.fr_n DESC LIMIT 10" -p run={run}',
        style="dim",
        soft_wrap=True,
        markup=False,
    )
