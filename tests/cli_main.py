"""``bench ARGS`` run in this process as the console script runs it (``bench.cli.main``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import typer.main

import bench.cli

ROOT_APP = typer.main.get_command(bench.cli.app)


def leaf_commands(group=ROOT_APP, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """Every command of the command line (not its groups), with its path, in the order registered."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def main_exit(monkeypatch, *args: str) -> int:
    """Run ``bench ARGS`` (``monkeypatch``: pytest's, or a ``MonkeyPatch.context()``); its exit code."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    try:
        bench.cli.main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """Run ``bench ARGS``; (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main_exit(monkeypatch, *args)
    out, err = capsys.readouterr()
    return code, out, err
