"""A run's results on the knowledge graph (``bench kg annotate``).

Each label's numbers from one run (the ``label_rates`` view, ``results/views.sql``): as a
target, the pairs that targeted it and the share of them that succeeded (FR_N) and succeeded
consistently (FR_S); as a bystander, how often attacks on other targets flipped it (outside Ψ)
and its share of all such flips (NT_R's numerator). They go onto the graph store as one
``Outcome`` node per (run, attack, ε, τ, label) hung off the label's node, so Cypher can ask
which parts of a hierarchy give way and which labels get dragged along, and Neo4j Browser and
``bench kg view --run`` colour them by band.

Every node of the graph gets an outcome per setting: a node the view does not list was neither
a target nor flipped (pairs 0, nt_flips 0). Annotating a run again replaces its outcomes;
other runs' stay (outcomes are keyed by run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from bench.errors import AmbiguousChoice, BenchError, unknown
from kg.catalog import load_graph
from kg.stores.base import GraphStore
from results.schema import grid_value
from results.views import fetch_dicts

NUMBERS = ("pairs", "fr_n", "fr_s", "nt_pairs", "nt_flips", "nt_rate", "nt_share")


def band(pairs: int, fr_n: float | None) -> str:
    """An outcome's band: Fragile (FR_N ≥ 2/3), Contested (1/3 ≤ FR_N < 2/3), Robust (FR_N < 1/3)
    or Untargeted (never a target). Also a Neo4j node label, which is what Neo4j Browser colours
    by (``neo4j/style.grass``)."""
    if not pairs or fr_n is None:
        return "Untargeted"
    return "Fragile" if fr_n >= 2 / 3 else "Contested" if fr_n >= 1 / 3 else "Robust"


@dataclass(frozen=True)
class Setting:
    """One (attack, ε, τ) of a run, with what its rows hold as a whole."""

    attack: str
    eps: float
    tau: float
    rows: int
    flips: int | None  # every row's flipped labels together; None if a row predates them


def settings(con: duckdb.DuckDBPyConnection, run_id: str) -> list[Setting]:
    rows = con.execute(
        """SELECT attack, eps, tau, n_rows, CASE WHEN n_unknown = 0 THEN n_flips END
           FROM setting_totals WHERE run_id = ? ORDER BY attack, eps, tau""",
        [run_id],
    ).fetchall()
    return [Setting(a, e, t, int(n), None if f is None else int(f)) for a, e, t, n, f in rows]


def label_rates(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    """The run's rows of the ``label_rates`` view."""
    return fetch_dicts(con, "SELECT * FROM label_rates WHERE run_id = ? ORDER BY attack, eps, tau, label", [run_id])


def outcomes(nodes: Sequence[str], run_settings: Sequence[Setting], rates: Sequence[dict]) -> list[dict]:
    """One outcome per (setting, node): the view's numbers, or those of a label that was
    neither a target nor flipped."""
    listed = {(r["attack"], r["eps"], r["tau"], r["label"]): r for r in rates}
    out = []
    for s in run_settings:
        for name in nodes:
            row = listed.get((s.attack, s.eps, s.tau, name))
            if row is None:  # neither a target nor flipped
                known = s.flips is not None
                row = {
                    "pairs": 0,
                    "fr_n": None,
                    "fr_s": None,
                    "nt_pairs": s.rows,
                    "nt_flips": 0 if known else None,
                    "nt_rate": 0.0 if known and s.rows else None,
                    "nt_share": 0.0 if known and s.flips else None,
                }
            numbers = {k: row[k] for k in NUMBERS}
            out.append(
                {"label": name, "attack": s.attack, "eps": s.eps, "tau": s.tau, **numbers}
                | {"band": band(numbers["pairs"], numbers["fr_n"])}
            )
    return out


@dataclass(frozen=True)
class Annotated:
    run_id: str
    graph_name: str
    graph_status: str  # "present", or "loaded" when the catalog's copy was loaded for it
    settings: list[Setting]
    outcomes: list[dict]


def annotatable(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, str, list]:
    """The run's graph name, its sha256 and its settings; an unknown run, or one with no rows,
    is refused (before any graph store is opened)."""
    found = con.execute("SELECT graph_name, graph_sha256 FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if found is None:
        raise unknown("run", run_id, [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()])
    graph_name, sha256 = found
    run_settings = settings(con, run_id)
    if not run_settings:
        raise BenchError(f"run {run_id!r} has no result rows yet: nothing to annotate")
    return graph_name, sha256, run_settings


def annotate(store: GraphStore, con: duckdb.DuckDBPyConnection, run_id: str) -> Annotated:
    """Write run ``run_id``'s per-label numbers onto its graph in ``store`` (one transaction).

    The stored graph must be the one the run was computed on (same sha256); a store that lacks
    it gets the catalog's copy when that is the same graph. A run with no rows is refused."""
    graph_name, sha256, run_settings = annotatable(con, run_id)
    status = _ensure_graph(store, graph_name, sha256, run_id)
    rows = outcomes(store.node_names(graph_name), run_settings, label_rates(con, run_id))
    store.annotate(graph_name, run_id, rows)
    return Annotated(run_id, graph_name, status, run_settings, rows)


def _ensure_graph(store: GraphStore, name: str, sha256: str, run_id: str) -> str:
    stored = store.graphs().get(name)
    if stored is not None:
        if stored.sha256 != sha256:
            raise BenchError(
                f"graph {name!r} in {store.location} (sha256 {stored.sha256[:12]}) is not the graph run {run_id!r} "
                f"was computed on (sha256 {sha256[:12]}): load that graph first"
            )
        return "present"
    try:
        graph = load_graph(name)
    except BenchError:
        graph = None
    if graph is None or graph.sha256 != sha256:
        have = "no such graph" if graph is None else f"its {name!r} has sha256 {graph.sha256[:12]}"
        raise BenchError(
            f"run {run_id!r} was computed on graph {name!r} (sha256 {sha256[:12]}), which neither {store.location} "
            f"nor the catalog holds ({have}): import that graph (bench kg import), then annotate"
        )
    store.load(graph)
    return "loaded"


def one_setting(
    rows: Sequence[dict], run_id: str, attack: str | None, eps: float | None, tau: float | None
) -> list[dict]:
    """A run's outcomes at one (attack, ε, τ): the one asked for, or the only one stored."""
    for axis, wanted, parameter in (("attack", attack, "attack"), ("eps", eps, "eps"), ("tau", tau, "tau")):
        values = sorted({r[axis] for r in rows})
        if wanted is not None:
            key = wanted.lower() if isinstance(wanted, str) else grid_value(wanted)  # as the results store keys it
            kept = [r for r in rows if r[axis] == key]
            if not kept:
                raise unknown(f"{parameter} of run {run_id!r}:", str(wanted), [str(v) for v in values])
            rows = kept
        elif len(values) > 1:
            raise AmbiguousChoice(
                f"run {run_id!r} holds several {parameter} values",
                parameter,
                [f"{v:g}" if isinstance(v, float) else v for v in values],
            )
    return list(rows)
