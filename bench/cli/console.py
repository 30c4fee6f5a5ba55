"""The consoles of the command line: data is always printed literally.

Every console has markup and emoji codes off, so a label, a run name, a SQL value or an
error message such as ``voc[asl]``, ``[/]`` or ``oi:dog:cat`` prints as it is. Styled output is
built with ``styled`` from literal pieces, never by formatting data into markup.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text


def make_console(**options) -> Console:
    return Console(highlight=False, markup=False, emoji=False, **options)


def styled(*parts: str | tuple[str, str]) -> Text:
    """``styled("built ", (name, "bold"), ": ...")``: literal text with styled pieces."""
    return Text.assemble(*((str(p[0]), p[1]) if isinstance(p, tuple) else str(p) for p in parts))


console = make_console()
err_console = make_console(stderr=True, soft_wrap=True)
