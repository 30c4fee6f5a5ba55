"""Runs, machines and rows as the tables hold them: a batch of rows as columns, the check that a
recomputed row equals the stored one, the machines that computed a run's rows and the rule for
mixing them, and the checks every write of a run makes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from bench import numerics
from bench.errors import BenchError
from results.connection import sql_name
from results.schema import ROW_COLUMNS, ResultKey, ResultRow, TransferRow, grid_value, now
from results.views import scalar


# ---------------------------------------------------------------------- runs
def require_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    if scalar(con, "SELECT count(*) FROM runs WHERE run_id = ?", [run_id]) == 0:
        raise ValueError(f"run {run_id!r} is not in the results database: call begin_run first")


def check_shard_count(run_id: str, stored: int, given: int, where: Path) -> None:
    if stored != given:
        raise BenchError(
            f"run {run_id!r} is split into {stored} shards, but {where} has {given}: use the same {{shard}} i/n",
            options=["shard"],
        )


# ---------------------------------------------------------------------- machines
@dataclass(frozen=True)
class Machine:
    """A machine recorded for a run: its numerics fingerprint, the note that accepted its rows
    beside another machine's (``None`` for the run's own) and how many stored rows it computed."""

    machine: str
    fingerprint: dict
    accepted: str | None
    rows: int


def run_machines(con: duckdb.DuckDBPyConnection, run_id: str, database: str = "") -> list[Machine]:
    """The run's machines in the order they were first used (of the attached ``database``)."""
    tables = f"{sql_name(database)}." if database else ""
    found = con.execute(
        f"""SELECT m.machine, m.fingerprint, m.accepted, count(r.machine) FROM {tables}machines AS m
            LEFT JOIN {tables}results AS r ON r.run_id = m.run_id AND r.machine = m.machine
            WHERE m.run_id = ? GROUP BY ALL ORDER BY min(m.first_used), m.machine""",
        [run_id],
    ).fetchall()
    return [Machine(m, json.loads(fp), accepted, int(n)) for m, fp, accepted, n in found]


def computed_by(con: duckdb.DuckDBPyConnection, run_id: str, database: str = "") -> dict[str, dict]:
    """The machines that computed the run's stored rows: id → numerics fingerprint."""
    return {m.machine: m.fingerprint for m in run_machines(con, run_id, database) if m.rows}


def mixing(others: dict[str, dict], fingerprint: dict, what: str, allow: bool, where: str = "") -> str | None:
    """``None`` when no other machine computed the run's rows; else the note recording that mixing
    was accepted, or the refusal naming the first difference."""
    if not others:
        return None
    first = next(iter(others.values()))
    diff = "; ".join(numerics.differences(first, fingerprint)) or "another fingerprint"
    if not allow:
        raise BenchError(
            f"{what} has rows computed on another machine{where} ({diff}): rows of two machines can differ in "
            "their last bits; continue it where it ran, or pass {allow_mixed_numerics} to mix them (recorded)",
            options=["allow_mixed_numerics"],
        )
    return f"mixed with {', '.join(others)} ({diff}), accepted {now()}"


# ---------------------------------------------------------------------- rows
CASTS = {"flipped": "::TEXT[][]"}  # a batch of empty lists carries no element type of its own


def row_columns(rows: Sequence[ResultRow]) -> dict[str, list]:
    """Rows → one plain Python list per column (numpy/torch scalars converted, ε/τ by ``grid_value``)."""
    cast: dict[str, Callable[[Any], Any]] = {
        "combo_id": int,
        "image_id": str,
        "attack": str,
        "eps": grid_value,
        "tau": grid_value,
        "success": bool,
        "consistent": bool,
        "ntr_share": float,
        "success_iteration": int,
        "linf": float,
        "l2": float,
        "seconds": float,
        "machine": lambda v: None if v is None else str(v),
        "flipped": lambda v: None if v is None else [str(x) for x in v],
        "detected": lambda v: None if v is None else bool(v),
    }
    out: dict[str, list] = {}
    for name in ROW_COLUMNS:
        values = [getattr(r, name) for r in rows]
        if name in cast:
            out[name] = [cast[name](v) for v in values]
        else:
            out[name] = [None if v is None else float(v) for v in values]
    out["attack"] = [a.lower() for a in out["attack"]]  # registered names are lower case
    return out


def transfer_columns(rows: Sequence[TransferRow]) -> dict[str, list]:
    """Transfer rows → one plain Python list per column (keys as ``ResultKey.of`` writes them)."""
    keys = [r.key for r in rows]
    return {
        "target": [str(r.target) for r in rows],
        **{name: [k[i] for k in keys] for i, name in enumerate(ResultKey._fields)},
        **{name: [bool(getattr(r, name)) for r in rows] for name in ("source_success", "eligible", "success")},
        "consistent": [bool(r.consistent) for r in rows],
        "ntr_share": [float(r.ntr_share) for r in rows],
    }


#: what a recomputed row must reproduce of the stored one (``write_rows(verify=True)``)
VERIFIED = tuple(c for c in ROW_COLUMNS if c not in (*ResultKey._fields, "seconds", "machine"))
TRANSFER_VERIFIED = ("source_success", "eligible", "success", "consistent", "ntr_share")


def verify_stored(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    rows: Sequence[ResultRow],
    columns: dict[str, list],
    transfer: Sequence[TransferRow],
) -> None:
    """Refuse, in one line, the first row (or transfer row) of a batch whose key is stored with
    other numbers (``write_rows(verify=True)``)."""
    ids = sorted({int(c) for c in columns["combo_id"]} | {int(t.combo_id) for t in transfer})
    keys = ", ".join(ResultKey._fields)
    if rows:
        stored = {
            ResultKey(*r[:5]): r[5:]
            for r in con.execute(
                f"SELECT {keys}, {', '.join(VERIFIED)} FROM results WHERE run_id = ? AND list_contains(?, combo_id)",
                [run_id, ids],
            ).fetchall()
        }
        for i, row in enumerate(rows):
            old = stored.get(row.key)
            new = tuple(columns[c][i] for c in VERIFIED)
            if old is not None and tuple(old) != new:
                name, was, redone = next((c, a, b) for c, a, b in zip(VERIFIED, old, new) if a != b)
                raise BenchError(
                    f"run {run_id!r}: the recomputed row {_key_text(row.key)} differs from the stored one in "
                    f"{name} (stored {was!r}, recomputed {redone!r}); a run's rows are reproducible only on the "
                    "machine, device and batch size that computed them; nothing of this batch was stored"
                )
    if transfer:
        found = con.execute(
            f"SELECT target, {keys}, {', '.join(TRANSFER_VERIFIED)} FROM transfer "
            "WHERE run_id = ? AND list_contains(?, combo_id)",
            [run_id, ids],
        ).fetchall()
        stored_t = {(r[0], ResultKey(*r[1:6])): r[6:] for r in found}
        for t in transfer:
            old = stored_t.get((t.target, t.key))
            new = (bool(t.source_success), bool(t.eligible), bool(t.success), bool(t.consistent), float(t.ntr_share))
            if old is not None and tuple(old) != new:
                name, was, redone = next((c, a, b) for c, a, b in zip(TRANSFER_VERIFIED, old, new) if a != b)
                raise BenchError(
                    f"run {run_id!r}: the recomputed transfer row {_key_text(t.key)} on {t.target!r} differs from "
                    f"the stored one in {name} (stored {was!r}, recomputed {redone!r}); nothing of this batch was "
                    "stored"
                )


def _key_text(key: ResultKey) -> str:
    return f"(combination {key.combo_id}, image {key.image_id}, {key.attack}, ε {key.eps:g}, τ {key.tau:g})"
