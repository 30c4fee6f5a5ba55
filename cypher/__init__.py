"""The Cypher queries of the graph stores, one query per file.

``NAME.cypher`` serves every store; ``NAME.ladybug.cypher`` / ``NAME.neo4j.cypher`` hold a
dialect's own variant where Ladybug (Kùzu's dialect) and Neo4j differ. Every query takes its
inputs as ``$parameters``; nothing is ever spliced into the text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from bench.errors import BenchError, unknown

FOLDER = Path(__file__).resolve().parent


def names() -> list[str]:
    """All query names (without dialect suffixes)."""
    return sorted({p.name.split(".", 1)[0] for p in FOLDER.glob("*.cypher")})


def path(name: str, dialect: str) -> Path:
    """The file holding query ``name`` for ``dialect``: the dialect's variant if there is one."""
    for candidate in (FOLDER / f"{name}.{dialect}.cypher", FOLDER / f"{name}.cypher"):
        if candidate.exists():
            return candidate
    if name in names():
        raise BenchError(f"Cypher query {name!r} has no variant for {dialect!r}")
    raise unknown("Cypher query", name, names())


@cache
def query(name: str, dialect: str) -> str:
    """The text of query ``name`` in ``dialect`` (``ladybug`` or ``neo4j``), comments kept."""
    return path(name, dialect).read_text(encoding="utf-8").strip()
