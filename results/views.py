"""The SQL views (``views.sql``) and how tables and plots pick one |Ω|, ε and τ from them.

``rate_summary`` holds one row per (run, |Ω|, attack, ε, τ). A table cell or a plotted curve
needs one value of every axis but the one it varies: ``pick`` takes the value the user
asked for, or the only value a run (and attack) holds, and otherwise names the choices.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from bench.errors import AmbiguousChoice, BenchError, unknown
from bench.paths import demo_hint
from results.schema import Protocol, RunConfig

VIEWS_SQL = (Path(__file__).resolve().parent / "views.sql").read_text(encoding="utf-8")
VIEWS_SHA256 = hashlib.sha256(VIEWS_SQL.encode()).hexdigest()

AXES = ("size", "eps", "tau")
AXIS_LABELS = {"size": "|Ω|", "eps": "ε", "tau": "τ"}


def install_views(con: duckdb.DuckDBPyConnection, *, temporary: bool = False) -> None:
    """Create (or replace) the views; ``temporary`` for read-only connections."""
    sql = VIEWS_SQL.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW") if temporary else VIEWS_SQL
    for statement in duckdb.extract_statements(sql):
        con.execute(statement)


def fetch_dicts(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | dict | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | dict | None = None) -> Any:
    """The first value of the one row ``sql`` returns (a count, an aggregate, a write's row count)."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {sql!r}")
    return row[0]


def run_ids(con: duckdb.DuckDBPyConnection, wanted: Sequence[str] = ()) -> list[str]:
    """The runs asked for (all runs when none), checked against those stored."""
    stored = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY created, run_id").fetchall()]
    if not stored:
        path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
        hint = demo_hint(path[0]) if path and path[0] else ""
        raise BenchError(f"the results database holds no runs yet: start one with `bench run`{hint}")
    for run in wanted:
        if run not in stored:
            raise unknown("run", run, stored)
    return list(dict.fromkeys(wanted)) if wanted else stored


def unfinished_notes(con: duckdb.DuckDBPyConnection, runs: Sequence[str]) -> tuple[str, ...]:
    """One note per run that is not finished: how many of its combinations are complete, and the
    attacks it names that have no row yet (a table must never show a partial run as a whole)."""
    notes = []
    for run in runs:
        found = con.execute(
            """SELECT r.finished IS NULL, r.attacks,
                      (SELECT count(*) FROM combinations c WHERE c.run_id = r.run_id AND c.complete),
                      (SELECT count(*) FROM combinations c WHERE c.run_id = r.run_id),
                      (SELECT list(DISTINCT attack) FROM results x WHERE x.run_id = r.run_id)
               FROM runs r WHERE r.run_id = ?""",
            [run],
        ).fetchone()
        if found is None or not found[0]:
            continue
        _, attacks, complete, total, stored = found
        missing = [a for a in attacks if a not in set(stored or ())]
        note = f"run {run} is not finished: {complete} of {total} combinations complete"
        notes.append(note + (f"; no rows yet for {', '.join(missing)}" if missing else "") + ".")
    return tuple(notes)


def run_protocol(con: duckdb.DuckDBPyConnection, run: str) -> Protocol:
    """A stored run's protocol settings (its defense and EOT among them); the defaults for an unknown run."""
    found = con.execute("SELECT config FROM runs WHERE run_id = ?", [run]).fetchone()
    return RunConfig.from_json(found[0]).protocol if found else Protocol()


def defense_notes(con: duckdb.DuckDBPyConnection, runs: Sequence[str]) -> tuple[str, ...]:
    """One note per run against a defended model: the defense and its parameters (EOT too)."""
    notes = []
    for run in runs:
        protocol = run_protocol(con, run)
        if protocol.defense:
            params = ", ".join(f"{k}={v}" for k, v in protocol.defense.items() if k != "defense")
            eot = f"; attacks average {protocol.eot} draws (EOT)" if protocol.eot > 1 else ""
            notes.append(f"run {run} attacks the model under the defense {protocol.defense['defense']}({params}){eot}.")
    return tuple(notes)


def check_notes(con: duckdb.DuckDBPyConnection, runs: Sequence[str]) -> tuple[str, ...]:
    """One note per flagged reliability check of the runs (``bench.sweep.checks``): the check,
    what it measured and what to do; a table shows them under its rows."""
    found = con.execute(
        "SELECT run_id, name, detail FROM checks WHERE status = 'flag' AND list_contains(?, run_id) "
        "ORDER BY run_id, name",
        [list(runs)],
    ).fetchall()
    return tuple(f"⚠ run {run}, check {name}: {detail}." for run, name, detail in found)


@dataclass(frozen=True)
class Selection:
    """The |Ω|, ε and τ a user asked for (``None``: the only one stored)."""

    size: int | None = None
    eps: float | None = None
    tau: float | None = None


ANY = Selection()


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _fmt(values: Iterable[float]) -> str:
    return ", ".join(f"{v:g}" for v in sorted(values))


def pick(rows: list[dict], selection: Selection, vary: str | None = None) -> list[dict]:
    """Keep, per (run, attack), one value of every axis except ``vary``.

    An axis the user fixed keeps the rows at that value; otherwise the run and attack must
    hold a single value. An attack stored at a single τ takes no τ and is kept whatever τ
    was asked for. A fixed value that no run holds is an error naming what is stored.
    """
    for axis in AXES:
        wanted = getattr(selection, axis)
        if axis != vary and wanted is not None and not any(_same(r[axis], wanted) for r in rows):
            stored = {r[axis] for r in rows}
            raise BenchError(f"no results at {AXIS_LABELS[axis]} = {wanted:g}; stored: {_fmt(stored)}")
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["run_id"], row["attack"]].append(row)
    kept: list[dict] = []
    for (run, attack), group in groups.items():
        for axis in AXES:
            wanted = getattr(selection, axis)
            if axis == vary:
                continue
            values = {r[axis] for r in group}
            if axis == "tau" and len(values) == 1:
                continue  # an attack run at one τ takes no τ (schema: written at config.tau[0])
            if wanted is not None:
                group = [r for r in group if _same(r[axis], wanted)]
            elif len(values) > 1:
                raise AmbiguousChoice(
                    f"run {run!r} holds several {AXIS_LABELS[axis]} for {attack}",
                    axis,
                    [f"{v:g}" for v in sorted(values)],
                )
        kept.extend(group)
    if rows and not kept:
        raise BenchError("no results hold the chosen |Ω|, ε and τ together")
    return kept


def summary(
    con: duckdb.DuckDBPyConnection, runs: Sequence[str], selection: Selection, vary: str | None = None
) -> list[dict]:
    """``rate_summary`` rows of the runs, narrowed by ``pick``."""
    rows = fetch_dicts(
        con,
        "SELECT * FROM rate_summary WHERE list_contains($runs, run_id) ORDER BY run_id, attack, size, eps, tau",
        {"runs": list(runs)},
    )
    if not rows:
        raise BenchError(f"run(s) {', '.join(runs)} have no result rows yet")
    return pick(rows, selection, vary)


def only_attacks(rows: list[dict], attacks: Sequence[str]) -> list[dict]:
    """The rows of the attacks asked for (all when none); unknown names suggest stored ones."""
    if not attacks:
        return rows
    stored = {r["attack"] for r in rows}
    wanted = [a.lower() for a in attacks]
    for name in wanted:
        if name not in stored:
            raise unknown("attack", name, stored)
    return [r for r in rows if r["attack"] in wanted]
