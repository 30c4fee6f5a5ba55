"""Schema versions: creating a results database, upgrading an older one, and reading an older
one without changing it.

A writing store creates the tables of ``results.schema.DDL`` in a new file, or upgrades a file
of an older version in place by ``MIGRATIONS[v]`` (v → v + 1) in the transaction of its first
write, and refreshes the stored views. Reading never writes: a file of an older version is read
through a copy in memory upgraded the same way (``attach``). A file of a newer version is
refused without being touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from bench.errors import BenchError
from results.connection import sql_literal, sql_name
from results.schema import DDL, MIGRATIONS, SCHEMA_VERSION
from results.views import VIEWS_SHA256, install_views, scalar


@dataclass(frozen=True)
class Meta:
    """What a results database says of itself in ``meta``."""

    version: int
    views_sha256: str

    @property
    def older(self) -> bool:
        """Its schema is older than this semattack-bench's."""
        return self.version < SCHEMA_VERSION

    @property
    def current(self) -> bool:
        """Its schema and stored views are this semattack-bench's."""
        return self.version == SCHEMA_VERSION and self.views_sha256 == VIEWS_SHA256


def read_meta(con: duckdb.DuckDBPyConnection, path: Path, database: str = "") -> Meta:
    """The schema version and views hash of the connection's database (or the attached
    ``database``); refuses files that are not ours or are newer."""
    table = f"{sql_name(database)}.meta" if database else "meta"
    try:
        meta = dict(con.execute(f"SELECT key, value FROM {table}").fetchall())
        version = int(meta["schema_version"])
    except (duckdb.CatalogException, KeyError, ValueError):
        raise BenchError(f"{path} is a DuckDB file but not a semattack-bench results database") from None
    if version > SCHEMA_VERSION:
        raise BenchError(
            f"{path} has results schema version {version}, newer than this semattack-bench "
            f"(version {SCHEMA_VERSION}): upgrade semattack-bench to read it"
        )
    return Meta(version, meta.get("views_sha256", ""))


def setup(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create the schema in the connection's database, or upgrade an older one, and refresh the
    views (in the caller's transaction; ``path`` names the file in messages)."""
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()
    }
    if "meta" not in tables:
        if tables:
            raise BenchError(f"{path} is a DuckDB file but not a semattack-bench results database")
        for statement in DDL:
            con.execute(statement)
    else:
        for old in range(read_meta(con, path).version, SCHEMA_VERSION):
            for statement in MIGRATIONS[old]:
                con.execute(statement)
    install_views(con)
    con.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), ("views_sha256", VIEWS_SHA256)],
    )


def attach(con: duckdb.DuckDBPyConnection, path: Path, alias: str) -> None:
    """Attach the results file ``path`` read-only as ``alias``, at this version's schema: a file of
    an older version is copied into an in-memory database ``alias`` and upgraded there, as a
    writing store would upgrade the file. The file itself is only read."""
    con.execute(f"ATTACH {sql_literal(path)} AS {sql_name(alias)} (READ_ONLY)")
    if not read_meta(con, path, alias).older:
        return
    con.execute(f"DETACH {sql_name(alias)}")
    stored = sql_name(f"{alias}_stored")
    con.execute(f"ATTACH {sql_literal(path)} AS {stored} (READ_ONLY)")
    con.execute(f"ATTACH ':memory:' AS {sql_name(alias)}")
    con.execute(f"COPY FROM DATABASE {stored} TO {sql_name(alias)}")
    con.execute(f"DETACH {stored}")
    home = scalar(con, "SELECT current_database()")
    con.execute(f"USE {sql_name(alias)}")
    try:
        setup(con, path)
    finally:
        con.execute(f"USE {sql_name(home)}")


def upgraded(path: Path) -> duckdb.DuckDBPyConnection:
    """A new in-memory connection that reads the results file ``path`` (``attach``: an older
    version through an upgraded copy) as its default database."""
    con = duckdb.connect(":memory:")
    try:
        attach(con, path, "upgraded")
        con.execute("USE upgraded")
    except BaseException:
        con.close()
        raise
    return con
