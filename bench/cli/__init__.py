"""``bench``: the command line. Each module here adds the commands of one area."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import typer

from bench import numerics
from bench.cli.apps import app, finish_help, finish_options, flag, rewrite_deprecated
from bench.cli.console import err_console, styled
from bench.errors import BenchError

# Importing the command modules registers their commands on the apps.
from bench.cli import attack, datasets, kg_graphs, kg_store, models, perf, results, run, train  # noqa: F401  isort: skip

finish_options(app)
finish_help(app)


def error_message(exc: BaseException) -> str:
    """What the CLI prints for an error: a ``BenchError`` with its options spelled as flags."""
    return exc.render(flag) if isinstance(exc, BenchError) else str(exc)


def usage_message(exc: BaseException) -> str:
    """One line for a command-line usage error (a missing option, a value of the wrong type)."""
    text = getattr(exc, "format_message", lambda: str(exc))()
    text = " ".join(text.replace("Value error, ", "").split())
    param = getattr(exc, "param", None)
    value = _given(param)
    if param is not None and value is not None and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        text = f"Invalid value for '{param.opts[0]}': {value!r} is not a finite number"  # not "less than 1"
    ctx = getattr(exc, "ctx", None)
    return f"{text} (see: {ctx.command_path} --help)" if ctx is not None else text


def _given(param) -> str | None:
    """The text the user gave an option on the command line (its last occurrence), if any."""
    opts = getattr(param, "opts", None) or []
    given = None
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in opts:
            given = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return given


def _internal_error(exc: BaseException) -> str:
    """Write the traceback of an unexpected error to a log file; the path (or why there is none)."""
    import time
    import traceback

    from bench.paths import data_dir

    text = "".join(traceback.format_exception(exc))
    for folder in (data_dir() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"bench-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(f"bench {' '.join(sys.argv[1:])}\n\n{text}", encoding="utf-8")
            return str(path)
        except OSError:
            continue
    return "not written: no writable folder"


def _fail_internal(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    where = _internal_error(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    err_console.print(
        styled(
            ("error:", "bold red"),
            f" internal error, {type(exc).__name__}: {first} (traceback: {where}; --debug prints it; please report it)",
        )
    )
    sys.exit(1)


def main() -> None:
    """Entry point: runs the app; user mistakes print one line and exit non-zero. Anything
    unexpected prints one line too, naming a log file with the traceback (``--debug``: the
    traceback itself)."""
    debug = "--debug" in sys.argv[1:]
    if debug:
        sys.argv = [a for a in sys.argv if a != "--debug"]
    argv, warnings = rewrite_deprecated(sys.argv[1:])
    sys.argv[1:] = argv
    for warning in warnings:
        err_console.print(styled(("warning:", "yellow"), " ", warning))
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
            _fail_internal(exc, debug)
        err_console.print(styled(("error:", "bold red"), f" {exc.filename}: {exc.strerror or exc}"))
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print(styled(("interrupted", "bold red")))
        sys.exit(130)
    except Exception as exc:  # a bug, not a user mistake: one line and the traceback in a file
        _fail_internal(exc, debug)
    sys.exit(code if isinstance(code, int) else 0)
