"""Typed errors: the library names parameters, the CLI spells them as its flags."""

from __future__ import annotations

import ast
import pickle
import re
import sys
from pathlib import Path

import pytest
import typer.main

import bench.cli
from bench.cli import error_message
from bench.cli.apps import app, flag
from bench.errors import AmbiguousChoice, InvalidValue, StoreBusy, UnknownName
from bench.paths import PROJECT_ROOT

LIBRARY = [p for folder in ("bench", "kg", "results") for p in (PROJECT_ROOT / folder).rglob("*.py")]
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+")


def test_messages_spell_options_as_keywords_in_the_library_and_flags_on_the_cli():
    cases = [
        (InvalidValue("eps", 1.5, "outside (0, 1]"), "`eps` 1.5: outside (0, 1]", "--eps 1.5: outside (0, 1]"),
        (
            AmbiguousChoice("a plot shows one run", "runs", ["a", "b"]),
            "a plot shows one run: pick one with `runs` (a, b)",
            "a plot shows one run: pick one with --run (a, b)",
        ),
        (
            StoreBusy(
                "file busy: use another {db} or {images_per_combination}",
                "x",
                7,
                options=["db", "images_per_combination"],
            ),
            "file busy: use another `db` or `images_per_combination`",
            "file busy: use another --db or --images-per-combo",
        ),
        (UnknownName("attack", "gmal", ["gmla", "mla-u"]), "unknown attack 'gmal' (did you mean 'gmla'?)", None),
    ]
    for error, library, cli in cases:
        assert str(error) == library, f"library message of {type(error).__name__}: {error}"
        assert error_message(error) == (cli or library), f"CLI message of {type(error).__name__}"


def _commands(group):
    for command in group.commands.values():
        yield from _commands(command) if hasattr(command, "commands") else [command]


def _named_options() -> set[str]:
    """Every parameter a library error names: ``options=[...]`` and the parameter argument of
    ``InvalidValue(parameter, ...)`` / ``AmbiguousChoice(problem, parameter, ...)``."""
    position = {"InvalidValue": 0, "AmbiguousChoice": 1}
    named = set()
    for path in LIBRARY:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            callee = getattr(node.func, "id", getattr(node.func, "attr", ""))
            at = position.get(callee)
            if at is not None and len(node.args) > at and isinstance(node.args[at], ast.Constant):
                named.add(node.args[at].value)
            for kw in node.keywords:
                if kw.arg == "options" and isinstance(kw.value, ast.List):
                    named.update(e.value for e in kw.value.elts if isinstance(e, ast.Constant))
    return named


def test_every_option_a_library_message_names_is_a_flag_of_the_cli():
    flags = {o for command in _commands(typer.main.get_command(app)) for p in command.params for o in p.opts}
    named = _named_options()
    assert len(named) >= 10, f"the scan found too few options: {sorted(named)}"
    missing = {name: flag(name) for name in named if flag(name) not in flags}
    assert not missing, f"library messages name options that no command has: {missing}"


def _strings(expression: ast.AST):
    """The string literals of an expression, an f-string's fields read as ``X``."""
    inside = set()
    for node in ast.walk(expression):
        if isinstance(node, ast.JoinedStr):
            inside.update(id(v) for v in node.values)
            yield "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inside:
            yield node.value


def test_library_messages_spell_no_flag():
    """Flags appear in the library only inside a backticked command to run (`bench train --resume X`)."""
    offenders = []
    for path in LIBRARY:
        if "cli" in path.relative_to(PROJECT_ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for text in _strings(node.exc):
                    if FLAG.search(re.sub(r"`[^`]*`", "", text)):
                        offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: {text}")
    assert not offenders, "library messages that spell a CLI flag:\n" + "\n".join(offenders)


def test_pickled_errors_keep_their_type_and_facts():
    """Ray sends a worker's error to the driver by pickling it."""
    error = InvalidValue("batch_size", 0, "must be at least 1").prefixed("a Ray worker stopped")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is InvalidValue and back.parameter == "batch_size" and back.value == 0, f"{back!r}"
    assert error_message(back) == "a Ray worker stopped: --batch-size 0: must be at least 1", error_message(back)
    busy = pickle.loads(pickle.dumps(StoreBusy("held by {db}", "/x", 12, options=["db"])))
    assert (busy.path, busy.pid, error_message(busy)) == ("/x", 12, "held by --db"), f"{busy!r}"


def test_a_cli_run_prints_the_flag(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench", "table", "--db", str(tmp_path / "none.duckdb")])
    with pytest.raises(SystemExit) as exit_:
        bench.cli.main()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: no results database at"), err
    assert err.endswith("or name another with --db"), f"the CLI names its flag: {err}"
