"""Users' SQL on a results database (what ``bench sql`` runs): one reading statement, on a
connection that installs or loads no extension by itself and reaches no file but the database
(unless ``allow_files=True``), printed as rows or written to CSV/Parquet."""

from __future__ import annotations

from pathlib import Path

import duckdb

from bench.errors import BenchError, InvalidValue, one_line
from bench.fileio import atomic_write
from results.connection import sql_literal
from results.store import ResultStore

READS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}
EXPORTS = {
    ".csv": "FORMAT csv, HEADER, USE_TMP_FILE false",
    ".parquet": "FORMAT parquet, USE_TMP_FILE false",
}  # atomic_write makes the temporary file


def check_read_only(query: str) -> None:
    """Refuse anything but one reading statement, before DuckDB runs it."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise BenchError(f"SQL does not parse: {one_line(exc)}") from None
    if len(statements) != 1:
        raise BenchError(f"one statement at a time (got {len(statements)})")
    kind = statements[0].type.name
    if kind not in READS:
        word = (query.split(None, 1) or [kind])[0].upper()  # INSTALL and LOAD are one DuckDB type: name the one written
        raise BenchError(
            f"queries are read-only: {word if word.isalpha() else kind} statements are refused "
            "(the results are written by sweeps; extensions are neither installed nor loaded)"
        )


def sandbox(con: duckdb.DuckDBPyConnection, allowed: tuple[Path, ...] = (), files: bool = False) -> None:
    """No extension is installed or loaded on its own, and (unless ``files``) the query reaches
    no file but ``allowed``: DuckDB's external access is switched off for this connection."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if files:
        return
    con.execute("SET allowed_paths = $paths", {"paths": [str(p) for p in allowed]})
    con.execute("SET enable_external_access = false")


def run_query(
    store: ResultStore, query: str, limit: int | None, allow_files: bool = False
) -> tuple[list[str], list[tuple]]:
    """Column names and up to ``limit + 1`` rows of one read-only ``query`` (one more than
    ``limit`` says that there are more; ``None``: every row)."""
    check_read_only(query)
    with store.reader() as con:
        sandbox(con, (), allow_files)
        try:
            cursor = con.execute(query)
            rows = cursor.fetchall() if limit is None else cursor.fetchmany(limit + 1)
            return [d[0] for d in cursor.description], rows
        except duckdb.Error as exc:
            raise _sql_error(exc) from None


def export_query(store: ResultStore, query: str, out: Path, allow_files: bool = False) -> Path:
    """Every row of one read-only ``query`` into ``out`` (``.csv`` or ``.parquet``), atomically."""
    check_read_only(query)
    out = Path(out)
    if out.suffix.lower() not in EXPORTS:
        raise InvalidValue("out", str(out), "write .csv or .parquet")
    if out.is_dir():
        raise InvalidValue("out", str(out), "is a directory: name a .csv or .parquet file")

    def export(tmp: Path) -> None:
        with store.reader() as con:
            sandbox(con, (tmp,), allow_files)
            try:
                con.execute(f"COPY ({query}) TO {sql_literal(tmp)} ({EXPORTS[out.suffix.lower()]})")
            except duckdb.Error as exc:
                raise _sql_error(exc) from None

    atomic_write(out, export)
    return out


def _sql_error(exc: duckdb.Error) -> BenchError:
    if isinstance(exc, duckdb.PermissionException):  # the sandbox refused a file or an extension
        return BenchError(
            f"SQL error: {one_line(exc)}; the query sees the results database only ({{allow_files}} lets it read "
            "your files)",
            options=["allow_files"],
        )
    return BenchError(f"SQL error: {one_line(exc)}")
