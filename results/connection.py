"""Connections to a results file: opened for one operation, waiting out another process's lock,
and naming a damaged file in one line.

DuckDB allows one writer process at a time; a connection that finds the file locked retries for
``lock_timeout`` seconds, then names the process that holds it (``locked``). An error that comes
from the file itself (cut, flipped bytes, not DuckDB) becomes one line saying so
(``damaged_message``), whether it shows when the file opens or under a later query.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from bench.errors import BenchError, StoreBusy, one_line

_LOCK_HELD = re.compile(r"held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")
DUCKDB_HEADERS = 3 * 4096  # the file header and the two database headers before the blocks
DAMAGE = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)


@contextmanager
def connect(path: Path, lock_timeout: float, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the results file ``path`` for one operation, closed when the block ends."""
    with opened(path, lock_timeout, lambda: duckdb.connect(str(path), read_only=read_only)) as con:
        yield con


@contextmanager
def opened(
    path: Path, lock_timeout: float, open_: Callable[[], duckdb.DuckDBPyConnection]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection ``open_`` makes to (or with) the results file ``path``, retried while another
    process holds the file's lock; a damaged file, when opened or under a query, is one line."""
    deadline = time.monotonic() + lock_timeout
    delay = 0.02
    while True:
        try:
            con = open_()
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise BenchError(damaged_message(path, exc)) from None
            if time.monotonic() >= deadline:
                raise locked(path, exc) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        except duckdb.Error as exc:
            if is_damage(exc):
                raise BenchError(damaged_message(path, exc)) from None
            raise BenchError(f"cannot open results database {path}: {one_line(exc)}") from None
    try:
        yield con
    except duckdb.Error as exc:  # the file itself failed under a query the caller did not expect to fail
        if not is_damage(exc):
            raise
        raise BenchError(damaged_message(path, exc)) from None
    finally:
        con.close()


@contextmanager
def atomic(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def locked(path: Path, error: Exception) -> StoreBusy:
    """One line: which process holds the file (as DuckDB reports it) and what to do."""
    held = _LOCK_HELD.search(str(error))
    who = f"process {held['pid']} ({held['prog']})" if held else "another process"
    return StoreBusy(
        f"results database {path} is locked by {who}, probably a running sweep: wait for it to finish, "
        "or write to another file with {db} ({shard} i/n gives each process its own file)",
        str(path),
        int(held["pid"]) if held else None,
        options=["db", "shard"],
    )


def is_damage(error: BaseException) -> bool:
    """Whether a DuckDB error comes from the file (cut, flipped bytes, not DuckDB), not from a query."""
    text = str(error).lower()
    return isinstance(error, DAMAGE) or "corrupt" in text or "checksum" in text


def damaged_message(path: Path, error: BaseException) -> str:
    if path.is_dir():
        return f"results database {path} is a folder, not a DuckDB file: name the .duckdb file itself"
    return (
        f"results database {path} cannot be read ({one_line(error)}): the file is damaged or not a DuckDB "
        "file; restore it from a copy, or move it aside and re-run the sweep (the same command resumes into a new file)"
    )


def check_size(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Refuse a file shorter than the blocks DuckDB says it uses (a cut copy or a full disk):
    such a file still answers queries on its catalog, with part of its rows missing."""
    _, _, block_size, _, used, *_ = con.execute("PRAGMA database_size").fetchall()[0]
    size = path.stat().st_size
    if size < DUCKDB_HEADERS + int(used) * int(block_size) or (size - DUCKDB_HEADERS) % int(block_size):
        raise BenchError(
            damaged_message(
                path, ValueError(f"{size:,} bytes where its {used} blocks need {DUCKDB_HEADERS + used * block_size:,}")
            )
        )


def sql_literal(path: str | Path) -> str:
    """A file path as a quoted SQL string."""
    return "'" + str(path).replace("'", "''") + "'"


def sql_name(name: str) -> str:
    """A database or table name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
