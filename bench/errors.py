"""User-facing errors: the CLI prints the message on one line and exits non-zero, without a traceback.

The library never spells a command-line flag. A message that tells the caller which of its
parameters to change names it as a ``{field}`` declared in ``options``: ``str(error)`` shows the
Python keyword in backticks (`` `db` ``), and the CLI shows its flag (``--db``,
:func:`bench.cli.apps.flag`).
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Sequence


class BenchError(Exception):
    """A mistake the user can fix (bad input, missing files, unreachable store).

    The message is one line that names the problem and, where possible, what to do;
    ``options`` are the parameter names it mentions as ``{name}`` fields.
    """

    exit_code = 2

    def __init__(self, message: str, *, options: Iterable[str] = ()) -> None:
        self.template, self.options = message, tuple(options)
        super().__init__(self.render(keyword))

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each option spelled by ``spell`` (a keyword, a flag)."""
        text = self.template
        for name in self.options:
            text = text.replace("{" + name + "}", spell(name))
        return text

    def prefixed(self, context: str, options: Iterable[str] = ()) -> BenchError:
        """The same error (same type and facts) with ``context: `` in front of its message
        (``options``: the parameters ``context`` mentions as ``{name}`` fields)."""
        error = copy.copy(self)
        error.template = f"{context}: {self.template}"
        error.options = (*self.options, *options)
        error.args = (error.render(keyword),)
        return error

    def suffixed(self, note: str) -> BenchError:
        """The same error (same type and facts) with ``; note`` after its message."""
        error = copy.copy(self)
        error.template = f"{self.template}; {note}"
        error.args = (error.render(keyword),)
        return error

    def __reduce__(self):  # pickles (Ray sends workers' errors) keep the type and its facts
        return _restore, (type(self), self.args, dict(self.__dict__))


def _restore(cls: type[BenchError], args: tuple, state: dict) -> BenchError:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def keyword(name: str) -> str:
    """How the library spells a parameter in a message: the Python keyword, in backticks."""
    return f"`{name}`"


class InvalidValue(BenchError):
    """A parameter's value is outside what it accepts; carries the parameter, the value and why."""

    def __init__(self, parameter: str, value: object, reason: str) -> None:
        self.parameter, self.value, self.reason = parameter, value, reason
        super().__init__(f"{{{parameter}}} {_shown(value)}: {reason}", options=[parameter])


class InvalidParameter(BenchError):
    """An attack's or a defense's own parameter out of range: a keyword no command has as an
    option (given in Python, or inside a spec such as ``smoothing:sigma=2``), so always spelled
    in backticks."""

    def __init__(self, parameter: str, value: object, reason: str) -> None:
        self.parameter, self.value, self.reason = parameter, value, reason
        super().__init__(f"{keyword(parameter)} {_shown(value)}: {reason}")


class AmbiguousChoice(BenchError):
    """Several things match where one is needed; ``parameter`` picks one of ``choices``."""

    def __init__(self, problem: str, parameter: str, choices: Sequence[str]) -> None:
        self.problem, self.parameter, self.choices = problem, parameter, tuple(choices)
        listed = f" ({', '.join(map(str, self.choices))})" if self.choices else ""
        super().__init__(f"{problem}: pick one with {{{parameter}}}{listed}", options=[parameter])


class StoreBusy(BenchError):
    """A store (the graph store, a results file) is held by another process right now; waiting
    may help. Carries the path and, when known, the holder's process id."""

    def __init__(self, message: str, path: str = "", pid: int | None = None, *, options: Iterable[str] = ()) -> None:
        self.path, self.pid = path, pid
        super().__init__(message, options=options)


class UnknownName(BenchError):
    """A name (an attack, a dataset, a closure rule, ...) that is not registered."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        hint = did_you_mean(name, self.choices)
        if not hint:
            shown = ", ".join(self.choices[:12]) + (", ..." if len(self.choices) > 12 else "")
            hint = f"; known: {shown}" if shown else ""
        super().__init__(f"unknown {kind} {name!r}{hint}")


def _shown(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else (repr(value) if isinstance(value, str) else str(value))


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choices, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"


def unknown(kind: str, name: str, choices: Iterable[str]) -> UnknownName:
    """An :class:`UnknownName` error suggesting the closest known names."""
    return UnknownName(kind, name, choices)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # a library's terminal colours
    return text.splitlines()[0] if text else type(exc).__name__
