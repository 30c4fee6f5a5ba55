"""User-facing errors: the CLI prints the message on one line and exits non-zero, without a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A mistake the user can fix (bad input, missing files, unreachable store).

    The message is one line that names the problem and, where possible, what to do.
    """

    exit_code = 2


class StoreBusy(BenchError):
    """A store (the graph store, a results file) is held by another process right now; waiting
    may help. Carries the path and, when known, the holder's process id."""

    def __init__(self, message: str, path: str = "", pid: int | None = None) -> None:
        super().__init__(message)
        self.path, self.pid = path, pid


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choices, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> BenchError:
    """A ``BenchError`` for an unknown name, suggesting the closest known ones."""
    choices = sorted(choices)
    hint = did_you_mean(name, choices)
    if not hint:
        shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
        hint = f"; known: {shown}" if shown else ""
    return BenchError(f"unknown {kind} {name!r}{hint}")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
