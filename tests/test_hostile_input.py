"""Every command, every option, fed hostile values through ``bench.cli.main`` (as the console
script runs it): huge and negative integers, 0 where it is out of range, NaN and ±inf, empty
and blank strings, names with spaces and ``..``, case variants, a folder where a file is
expected, a file of the wrong kind. Each must exit non-zero with at most 3 lines on stderr
and no traceback, and leave every store (``$BENCH_DATA``: results, graphs, models, datasets)
and the working folder byte for byte as they were: no file, no lock.

The options come from the command tree itself, so a new command or option is covered the day
it is added; its values come from its type (numbers: their range at the parser, from
``bench.cli.apps.NUMBER_RANGES``)."""

from __future__ import annotations

import hashlib
import math
import shutil
import typing
from pathlib import Path

import pytest

from tests.cli_main import cli, leaf_commands, main_exit
from tests.sweep_fixtures import NAME, save_toy_model

# A valid invocation of each command (a hostile value then replaces or joins one option), on the
# toy dataset and model where one is needed. Commands that would do real work with every value
# accepted are given an argument that fails late, after every option is read, so the test
# stays fast: the hostile value must be refused before that.
BASE: dict[tuple[str, ...], list[str]] = {
    ("attack",): ["-d", NAME, "-t", "cat", "--iterations", "1", "--images", "1", "--device", "cpu"],
    ("train",): ["-d", NAME, "--epochs", "1", "--device", "cpu"],
    ("eval",): ["-d", NAME, "--device", "cpu"],
    ("run",): ["-d", NAME, "--preset", "fast", "--size", "1", "--attack", "mla-u", "--iterations", "2"],
    ("sql",): ["SELECT 1"],
    ("plot",): ["size"],
    ("merge",): ["{garbage}"],
    ("kg", "show"): ["cat", "-g", "stamps"],
    ("kg", "closure"): ["-g", "stamps", "-t", "cat"],
    ("kg", "query"): ["MATCH (n:Label) RETURN n.name LIMIT 1"],
    ("kg", "diff"): ["stamps", "stamps"],
    ("kg", "remove"): ["nothing-here"],
    ("kg", "import"): ["-d", "voc", "--adj", "{garbage}", "--name", "imported"],
    ("kg", "annotate"): ["--run", "no-such-run"],
    ("data", "build"): ["stamps"],
    ("data", "info"): ["voc"],
}

SKIP_OPTIONS = {"--help", "--debug"}

# Commands whose work (training, sweeps, timing) would start if a hostile text or path were
# accepted: here only their numbers are fed, which the parser refuses before any work.
HEAVY = {("demo",), ("data", "build")} | {("perf", name) for name in ("attack", "sweep", "numerics", "gpu", "db")}


OUTPUT_FOLDERS = {"save"}  # and `bench demo --out`, which is heavy
INPUT_FOLDERS = {"data_root"}
HUGE = "99999999999999999999"
TEXT_VALUES = ["", "a b", "../x", "NOPE"]


def number_values(param) -> list[str]:
    values = [HUGE, "-" + HUGE, "nan", "inf", ""]
    low, high = param.min, param.max
    floating = float in (typing.get_args(param.type_descriptor.annotation) or (param.type_descriptor.annotation,))
    step = 0.5 if floating else 1
    values += [str(low - step), str(high + step)]
    if low > 0:
        values.append("0")
    return values


def hostile_values(param, files: dict[str, str]) -> list[str]:
    annotation = param.type_descriptor.annotation
    args = typing.get_args(annotation) or (annotation,)
    if any(a in (int, float) for a in args) or any(int in typing.get_args(a) for a in args):
        return number_values(param)
    if any(a is Path or (isinstance(a, type) and issubclass(a, Path)) for a in args):
        if param.name in OUTPUT_FOLDERS:  # made when missing: only a file in the way is wrong
            return [files["garbage"]]
        if param.name in INPUT_FOLDERS:  # a folder to read: a missing one, or a file, is wrong
            return [str(Path(files["missing"]).parent), files["garbage"]]
        if param.name == "out":  # a file to write, over an old one if need be
            return ["", files["folder"], files["missing"]]
        return ["", files["folder"], files["missing"], files["garbage"]]
    if param.name == "name":  # a free name: "NOPE" is a good one
        return [v for v in TEXT_VALUES if v != "NOPE"]
    return TEXT_VALUES


def is_number(param) -> bool:
    annotation = param.type_descriptor.annotation
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args)


def cases():
    for path, command in leaf_commands():
        for param in command.params:
            if getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False) or param.hidden:
                continue
            if set(param.opts) & SKIP_OPTIONS or (path in HEAVY and not is_number(param)):
                continue
            yield pytest.param(path, param.name, id=f"{' '.join(path)} {param.opts[0]}")


def snapshot(*roots: Path) -> dict[str, str]:
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                found[str(path)] = "folder"
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """$BENCH_DATA with the toy model, a results database holding one finished run, and a
    graph store holding the stamps graph; a folder and a garbage file to hand in."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_DATA", str(data))
        mp.setenv("BENCH_LADYBUG_DB", str(data / "graphs.lbug"))
        mp.delenv("NEO4J_URI", raising=False)
        save_toy_model()
        for args in (
            ["run", "-d", NAME, "--preset", "fast", "--size", "1", "--attack", "mla-u", "--iterations", "2", "-q"],
            ["kg", "load", "-g", "stamps"],
        ):
            assert main_exit(mp, *args) == 0, f"set-up: bench {' '.join(args)} failed"
        (root / "folder").mkdir()
        (root / "garbage.bin").write_bytes(bytes(range(256)) * 4)
        (root / "cwd").mkdir()
        yield {
            "root": root,
            "data": data,
            "folder": str(root / "folder"),
            "garbage": str(root / "garbage.bin"),
            "missing": str(root / "missing" / "x.json"),
        }


def with_value(base: list[str], param, value: str) -> list[str]:
    """``base`` with ``param`` set to ``value`` (replacing the base's own value of it)."""
    if not param.opts[0].startswith("-"):  # an argument: the base's first positional values
        positional = [
            i for i, a in enumerate(base) if not a.startswith("-") and (i == 0 or not base[i - 1].startswith("-"))
        ]
        if positional:
            out = list(base)
            out[positional[0]] = value
            return out
        return [*base, value]
    out, skip = [], False
    for arg in base:
        if skip:
            skip = False
            continue
        if arg in param.opts:
            skip = True
            continue
        out.append(arg)
    return [*out, param.opts[0], value]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "name"), list(cases()))
def test_hostile_values_are_refused_in_one_line_touching_nothing(world, capsys, monkeypatch, path, name):
    command = dict(leaf_commands())[path]
    param = next(p for p in command.params if p.name == name)
    monkeypatch.setenv("BENCH_DATA", str(world["data"]))
    monkeypatch.setenv("BENCH_LADYBUG_DB", str(world["data"] / "graphs.lbug"))
    monkeypatch.delenv("NEO4J_URI", raising=False)
    monkeypatch.chdir(world["root"] / "cwd")
    base = [a.format(**world) for a in BASE.get(path, [])]
    problems = []
    for value in hostile_values(param, world):
        if (path, param.name, value) == (("kg", "closure"), "db", world["missing"]):
            continue  # no store there: answered from the graph file, and said so (bench kg closure --help)
        args = [*path, *with_value(base, param, value)]
        before = snapshot(world["root"])
        code, _, err = cli(capsys, monkeypatch, *args)
        lines = err.strip().splitlines()
        shown = " ".join(repr(a) if not a or " " in a else a for a in args)
        if code == 0:
            problems.append(f"bench {shown}: exit 0")
        if "Traceback" in err or len(lines) > 3:
            problems.append(f"bench {shown}: {len(lines)} lines on stderr:\n{err}")
        if "internal error" in err:
            problems.append(f"bench {shown}: {lines[-1] if lines else ''}")
        after = snapshot(world["root"])
        shutil.rmtree(Path(world["missing"]).parent, ignore_errors=True)  # missing for the next value too
        if after != before:
            changed = sorted(set(after.items()) ^ set(before.items()))
            problems.append(f"bench {shown}: changed {[k for k, _ in changed][:4]}")
    assert not problems, "\n".join(problems)


def test_every_number_option_has_a_finite_range_at_the_parser():
    """The ranges the hostile values above lean on: every int and float option has both ends."""
    missing = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, command in leaf_commands()
        for param in command.params
        if is_number(param) and not (param.min is not None and param.max is not None and math.isfinite(param.max))
    ]
    assert not missing, f"numeric options without a range: {missing}"
