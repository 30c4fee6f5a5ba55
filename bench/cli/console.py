"""The consoles of the command line: data is always printed literally.

Every console has markup and emoji codes off, so a label, a run name, a SQL value or an
error message such as ``voc[asl]``, ``[/]`` or ``oi:dog:cat`` prints as it is. Styled output is
built with ``styled`` from literal pieces, never by formatting data into markup.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text


def make_console(**options) -> Console:
    return Console(highlight=False, markup=False, emoji=False, **options)


def styled(*parts: str | tuple[str, str]) -> Text:
    """``styled("built ", (name, "bold"), ": ...")``: literal text with styled pieces."""
    return Text.assemble(*((str(p[0]), p[1]) if isinstance(p, tuple) else str(p) for p in parts))


def piped() -> bool:
    """Whether output goes to a pipe or file (not a terminal) and no width was asked for (``COLUMNS``)."""
    return not (sys.stdout.isatty() or os.environ.get("COLUMNS"))


# Piped output is for other programs and for pasting: whole values, never cut to 80 columns.
PIPE_WIDTH = 100_000
console = make_console(width=PIPE_WIDTH if piped() else None)
err_console = make_console(stderr=True, soft_wrap=True)


class RowFormat(str, Enum):
    """How a command that lists rows writes them to standard output."""

    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    RowFormat,
    typer.Option(
        "--format",
        help="table (for reading), csv (a header line, then every row) or json (a list of objects, every row).",
    ),
]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)  # dates, decimals, paths


def write_rows(names: Sequence[str], rows: Sequence[Sequence[Any]], fmt: RowFormat) -> None:
    """Every row as CSV or JSON on standard output, for pipes and scripts (``table``: the caller's)."""
    if fmt is RowFormat.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(names)
        for row in rows:
            out.writerow([json.dumps(_plain(v)) if isinstance(v, (list, tuple, dict)) else v for v in row])
    elif fmt is RowFormat.json:
        json.dump([dict(zip(names, map(_plain, row))) for row in rows], sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    sys.stdout.flush()
