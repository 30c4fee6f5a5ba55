"""The Cypher queries of the graph stores, one query per file.

``NAME.cypher`` serves every store; ``NAME.ladybug.cypher`` / ``NAME.neo4j.cypher`` hold a
dialect's own variant where Ladybug (Kùzu's dialect) and Neo4j differ. Every query takes its
inputs as ``$parameters``. The one exception is a constant of the code that Cypher cannot take
as a parameter, the bound of a variable-length path (``[:IS_A*1..{{MAX_DEPTH}}]``): written
``{{NAME}}`` in the files, it is filled in from :data:`CONSTANTS` when a query is read, and a
name that is not there is an error, not left in the text.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from bench.errors import BenchError, unknown

FOLDER = Path(__file__).resolve().parent

MAX_DEPTH = 30
"""Longest IS_A path the queries follow (``[:IS_A*1..{{MAX_DEPTH}}]``): Ladybug needs a
literal upper bound, and takes none above this. Loading refuses a deeper graph rather than
answer wrongly (``kg.stores.base.GraphStore.load``)."""

CONSTANTS: dict[str, int] = {"MAX_DEPTH": MAX_DEPTH}
"""What ``{{NAME}}`` in a query file stands for."""

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


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


def fill(text: str, where: str = "the query") -> str:
    """``text`` with each ``{{NAME}}`` replaced by ``CONSTANTS[NAME]``; an unknown name, or a
    ``{{`` that is no placeholder, raises ``BenchError`` naming ``where``."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in CONSTANTS:
            raise BenchError(f"{where}: unknown placeholder {match.group(0)} (known: {', '.join(sorted(CONSTANTS))})")
        return str(CONSTANTS[match.group(1)])

    filled = PLACEHOLDER.sub(value, text)
    if "{{" in filled:
        raise BenchError(f"{where}: a '{{{{' that is no {{{{NAME}}}} placeholder")
    return filled


@cache
def query(name: str, dialect: str) -> str:
    """The text of query ``name`` in ``dialect`` (``ladybug`` or ``neo4j``), comments kept and
    ``{{NAME}}`` constants filled in."""
    file = path(name, dialect)
    return fill(file.read_text(encoding="utf-8").strip(), str(file.relative_to(FOLDER.parent)))
