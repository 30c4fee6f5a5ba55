"""``bench``: the command line. Each module here adds the commands of one area."""

from __future__ import annotations

import sys

import typer

from bench import numerics
from bench.cli.apps import app, flag
from bench.cli.console import err_console, styled
from bench.errors import BenchError

# Importing the command modules registers their commands on the apps.
from bench.cli import attack, datasets, kg_graphs, kg_store, models, perf, results, run, train  # noqa: F401  isort: skip


def error_message(exc: BaseException) -> str:
    """What the CLI prints for an error: a ``BenchError`` with its options spelled as flags."""
    return exc.render(flag) if isinstance(exc, BenchError) else str(exc)


def usage_message(exc: BaseException) -> str:
    """One line for a command-line usage error (a missing option, a value of the wrong type)."""
    text = getattr(exc, "format_message", lambda: str(exc))()
    text = " ".join(text.replace("Value error, ", "").split())
    ctx = getattr(exc, "ctx", None)
    return f"{text} (see: {ctx.command_path} --help)" if ctx is not None else text


def main() -> None:
    """Entry point: runs the app; user mistakes print one line and exit non-zero."""
    numerics.pin_from_argv(sys.argv[1:])  # before any command runs a torch kernel
    try:
        code = app(standalone_mode=False)
    except BenchError as exc:
        err_console.print(styled(("error:", "bold red"), " ", error_message(exc)))
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print(styled(("interrupted", "bold red")))
        sys.exit(130)
    except typer.TyperException as exc:  # Click's usage errors (Typer runs on its own copy of Click)
        if str(exc):  # empty: a group called without a command, whose help is printed already
            err_console.print(styled(("error:", "bold red"), " ", usage_message(exc)))
        sys.exit(getattr(exc, "exit_code", 2))
    except OSError as exc:  # a file or folder the user named or configured cannot be read or written
        if exc.filename is None:
            raise
        err_console.print(styled(("error:", "bold red"), f" {exc.filename}: {exc.strerror or exc}"))
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print(styled(("interrupted", "bold red")))
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
