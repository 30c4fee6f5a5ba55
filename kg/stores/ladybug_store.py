"""Ladybug: the embedded graph database (Kùzu's Cypher dialect), the default store.

The database is one file, ``<data_dir>/graphs.lbug`` unless ``path=`` or
``$BENCH_LADYBUG_DB`` says otherwise (``:memory:`` keeps it in memory). Only one process at
a time may open it for writing; a second one gets a one-line error naming the holder.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError, StoreBusy
from bench.paths import data_dir
from kg.stores import register_store
from kg.stores.base import GraphStore, Row, Step, check_user_query

ENV_DB = "BENCH_LADYBUG_DB"
MEMORY = ":memory:"


def default_path() -> Path:
    """``$BENCH_LADYBUG_DB`` or ``<data_dir>/graphs.lbug``."""
    env = os.environ.get(ENV_DB)
    return Path(env).expanduser() if env else data_dir() / "graphs.lbug"


def _first_line(exc: BaseException | str) -> str:
    return (str(exc).strip().splitlines() or ["unknown error"])[0]


def _cypher_error(exc: BaseException | str) -> BenchError:
    return BenchError(f"Cypher error (Ladybug): {_first_line(exc)}")


def _open_error(path: str, exc: BaseException) -> BenchError:
    text = _first_line(exc)
    held = re.search(r"Lock is held by PID (\d+)", text)
    if "lock" in text.lower():
        holder = f" (PID {held.group(1)})" if held else ""
        return StoreBusy(
            f"the Ladybug database {path} is in use by another process{holder}; "
            f"wait for it to finish, or open another file ({{graph_db}} or ${ENV_DB})",
            path,
            int(held.group(1)) if held else None,
            options=["graph_db"],
        )
    return BenchError(f"cannot open the Ladybug database {path}: {text}")


@register_store("ladybug")
class LadybugStore(GraphStore):
    """Label graphs in an embedded Ladybug database.

    Args:
        path: database file (default ``default_path()``), or ``":memory:"``.
        buffer_pool_mb: page cache size; label graphs are small.
    """

    dialect = "ladybug"

    def __init__(self, path: str | Path | None = None, *, buffer_pool_mb: int = 256, read_only: bool = False) -> None:
        import ladybug

        self._path = MEMORY if str(path) == MEMORY else str(Path(path or default_path()).expanduser())
        if self._path != MEMORY:
            if Path(self._path).is_dir():
                raise BenchError(f"the Ladybug database {self._path} is a folder; give a file path")
            if not read_only:
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = ladybug.Database(
                self._path, buffer_pool_size=buffer_pool_mb * 2**20, read_only=read_only and self._path != MEMORY
            )
            self._conn = ladybug.Connection(self._db)
        except RuntimeError as exc:
            raise _open_error(self._path, exc) from None
        if read_only:  # a read command's store: its schema is what the writer left (nothing is written)
            return
        try:
            self._create_schema()
        except BenchError:
            self.close()
            raise

    @property
    def location(self) -> str:
        return f"the Ladybug database {self._path}"

    def _execute(self, text: Any, params: Mapping[str, Any]) -> Any:
        try:
            return self._conn.execute(text, dict(params))
        except RuntimeError as exc:
            raise _cypher_error(exc) from None

    def _rows(self, result: Any) -> list[Row]:
        columns = result.get_column_names()
        rows = [dict(zip(columns, values)) for values in result.get_all()]
        result.close()
        return rows

    def _read(self, text: str, params: Mapping[str, Any]) -> list[Row]:
        return self._rows(self._execute(text, params))

    def _write(self, steps: Sequence[Step]) -> None:
        self._execute("BEGIN TRANSACTION", {})
        try:
            for text, params in steps:
                self._execute(text, params)
        except BaseException:
            self._rollback_if_open()
            raise
        self._execute("COMMIT", {})

    def query(self, text: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run one statement in a read-only transaction (writes fail, nothing changes)."""
        check_user_query(text)
        self._execute("BEGIN TRANSACTION READ ONLY", {})
        try:
            return self._rows(self._execute(self._prepare_one(text), params or {}))
        finally:
            self._rollback_if_open()

    def _prepare_one(self, text: str) -> Any:
        """Prepare inside the read-only transaction; preparing refuses several statements,
        so nothing like ``COMMIT; CREATE ...`` gets out of it."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # prepare() then execute() is deprecated
            try:
                prepared = self._conn.prepare(text)
            except RuntimeError as exc:
                raise _cypher_error(exc) from None
        if not prepared.is_success():
            raise _cypher_error(prepared.get_error_message())
        return prepared

    def _rollback_if_open(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except RuntimeError:  # no transaction left open (a failed statement ends it)
            pass

    def close(self) -> None:
        self._conn.close()
        self._db.close()
