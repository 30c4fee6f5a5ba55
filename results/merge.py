"""Merging results files (the shards of one sweep) into one, and copying one into memory.

Each file is merged in one transaction. A run stored on both sides must have the same
configuration hash and shard count, and its rows on both sides the same machine fingerprint
unless mixing is allowed (recorded in ``machines.accepted``); rows already present are skipped,
so merging a file twice changes nothing. A merged file is only read (an older version through
an upgraded copy in memory, ``results.migrate.attach``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from bench.errors import BenchError
from results.connection import atomic
from results.migrate import attach
from results.records import check_shard_count, computed_by, mixing
from results.schema import DDL, RunConfig, now
from results.views import install_views, scalar


@dataclass(frozen=True)
class MergeReport:
    """What ``merge`` took from one file."""

    path: Path
    runs: tuple[str, ...]
    rows_added: int


def merge_file(con: duckdb.DuckDBPyConnection, target: Path, source: Path, allow_mixed: bool) -> MergeReport:
    """Copy the runs of the results file ``source`` into the database of ``con`` (the file
    ``target``, named in messages), in one transaction."""
    attach(con, source, "src")
    try:
        with atomic(con):
            src_runs = [r[0] for r in con.execute("SELECT run_id FROM src.runs ORDER BY run_id").fetchall()]
            _check_mergeable(con, target, source)
            accepted = _check_machines(con, target, source, src_runs, allow_mixed)
            added = copy_attached(con)
            for note in accepted:
                con.execute(
                    "UPDATE machines SET accepted = ? WHERE run_id = ? AND machine = ? AND accepted IS NULL",
                    list(note),
                )
            # a run whose shards are all here and all of whose combinations are complete is finished
            con.execute(
                """UPDATE runs SET finished = ? WHERE finished IS NULL AND len(shards) = shard_count
                   AND EXISTS (SELECT 1 FROM combinations c WHERE c.run_id = runs.run_id)
                   AND NOT EXISTS (SELECT 1 FROM combinations c
                                   WHERE c.run_id = runs.run_id AND NOT c.complete)""",
                [now()],
            )
    finally:
        con.execute("DETACH src")
    return MergeReport(source, tuple(src_runs), added)


def _check_mergeable(con: duckdb.DuckDBPyConnection, target: Path, source: Path) -> None:
    """Runs stored on both sides must agree on their configuration and shard count."""
    pairs = con.execute(
        """SELECT r.run_id, r.config, s.config, r.shard_count, s.shard_count
           FROM runs AS r JOIN src.runs AS s USING (run_id)"""
    ).fetchall()
    for run_id, ours_json, theirs_json, our_count, their_count in pairs:
        ours, theirs = RunConfig.from_json(ours_json), RunConfig.from_json(theirs_json)
        if ours.config_hash != theirs.config_hash:
            raise BenchError(
                f"{source}: run {run_id!r} has another configuration than in {target} "
                f"({'; '.join(ours.differences(theirs))}); nothing merged from it"
            )
        check_shard_count(run_id, our_count, their_count, source)


def _check_machines(
    con: duckdb.DuckDBPyConnection, target: Path, source: Path, runs: Sequence[str], allow_mixed: bool
) -> list[tuple[str, str, str]]:
    """Rows of one run from two machine fingerprints are refused unless ``allow_mixed``;
    returns the ``(accepted, run_id, machine)`` notes to record for the ones accepted."""
    notes = []
    for run_id in runs:
        ours = computed_by(con, run_id)
        for machine, fp in computed_by(con, run_id, "src").items():
            others = {m: f for m, f in ours.items() if m != machine}
            accepted = mixing(others, fp, f"{source}: run {run_id!r}", allow_mixed, f" in {target}")
            if accepted:
                notes.append((accepted, run_id, machine))
    return notes


def copy_attached(con: duckdb.DuckDBPyConnection) -> int:
    """Copy the attached ``src`` database's runs, combinations and rows; returns new rows."""
    before = scalar(con, "SELECT count(*) FROM results")
    con.execute("INSERT INTO runs SELECT * FROM src.runs ON CONFLICT DO NOTHING")
    con.execute(
        """UPDATE runs SET shards = list_sort(list_distinct(list_concat(runs.shards, s.shards))),
                  finished = CASE WHEN runs.finished IS NULL OR s.finished IS NULL THEN NULL
                                  ELSE greatest(runs.finished, s.finished) END
           FROM src.runs AS s WHERE runs.run_id = s.run_id"""
    )
    con.execute(
        """INSERT INTO combinations SELECT * FROM src.combinations
           ON CONFLICT DO UPDATE SET complete = complete OR excluded.complete"""
    )
    con.execute("INSERT INTO results BY NAME SELECT * FROM src.results ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO machines BY NAME SELECT * FROM src.machines ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO artifacts SELECT * FROM src.artifacts ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO checks BY NAME SELECT * FROM src.checks ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO clean_stats BY NAME SELECT * FROM src.clean_stats ON CONFLICT DO NOTHING")
    con.execute("INSERT INTO transfer BY NAME SELECT * FROM src.transfer ON CONFLICT DO NOTHING")
    return int(scalar(con, "SELECT count(*) FROM results") - before)


def load_into_memory(path: str | Path) -> duckdb.DuckDBPyConnection:
    """A new in-memory database holding a copy of the results file ``path``, with the views."""
    con = duckdb.connect(":memory:")
    for statement in DDL:
        con.execute(statement)
    attach(con, Path(path), "src")
    copy_attached(con)
    con.execute("DETACH src")
    install_views(con)
    return con
