"""Every ``Example:`` line of every ``--help``, as a user pastes it into bash.

Each is split into words by bash itself (so ``$g`` in double quotes, a stray ``(`` or an
unbalanced quote fails here as it would there) and parsed by the command it names, with its
option callbacks (names, ranges, files). The ones a small fixture can serve are then run and
must exit 0: a toy model's run stored as ``stamps-demo`` in the demo's results file (the run
``bench demo`` makes), the packaged graphs, a label table. The others need what a test machine
has not got (a GPU, the authors' checkpoints, VOC on disk, minutes of training) and are
parsed only; ``PARSE_ONLY`` says why for each."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bench.cli
from kg.stores import open_store
from tests.cli_main import ROOT_APP, leaf_commands, main_exit
from tests.sweep_fixtures import NAME, save_toy_model, toy_graph


def examples() -> list[str]:
    """Every ``Example:`` line of every command's help, in the order the commands are registered."""
    return [
        line.removeprefix("Example:").strip()
        for _, command in leaf_commands()
        for line in (command.help or "").splitlines()
        if line.startswith("Example:")
    ]


def bash_words(line: str) -> list[str]:
    """The words bash makes of ``line`` (expansions, quotes and comments as bash does them)."""
    done = subprocess.run(
        ["bash", "-c", f"printf '%s\\0' {line.removeprefix('bench ')}"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/home/user"},
    )
    assert done.returncode == 0, f"bash cannot read the example {line!r}: {done.stderr}"
    return ["bench", *done.stdout.split("\0")[:-1]]


# Parsed only, with the reason; every other example runs against the fixture.
PARSE_ONLY = {
    "bench attack": "needs a trained stamps model (minutes of training)",
    "bench train": "trains for minutes",
    "bench eval": "needs a trained model or a published checkpoint",
    "bench run": "a sweep (the toy one runs in the fixture)",
    "bench demo": "trains and sweeps for minutes",
    "bench kg build --dataset nus": "writes into the repository (maintainers)",
    "bench kg import": "needs the authors' voc_adj.pkl",
    "bench kg diff": "needs the graph bench kg import makes",
    "bench kg annotate --run stamps-demo --graph-store neo4j": "needs a Neo4j server",
    "bench plot tau": "needs a τ sweep",
    "bench perf attack": "times attacks (and one example needs CUDA)",
    "bench perf sweep": "times sweeps",
    "bench perf numerics": "times sweeps",
    "bench perf gpu": "needs a GPU (or minutes on the CPU)",
    "bench perf db": "times writes",
    "bench data build": "renders 7,000 images",
    "bench data info": "needs stamps built or VOC on disk",
}


def parse_only(line: str) -> str | None:
    return next((why for start, why in PARSE_ONLY.items() if line.startswith(start)), None)


def command_of(words: list[str]):
    command, rest = ROOT_APP, words[1:]
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest


@pytest.fixture(scope="module")
def fixture_home(tmp_path_factory):
    """$BENCH_DATA with the toy model and a toy run stored as the demo's ``stamps-demo``; a
    working folder with the files the examples name (copies of it as shards, a label table)."""
    root = tmp_path_factory.mktemp("examples")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_DATA", str(root / "data"))
        mp.setenv("BENCH_LADYBUG_DB", str(root / "data" / "graphs.lbug"))
        mp.delenv("NEO4J_URI", raising=False)
        cwd = root / "cwd"
        cwd.mkdir()
        mp.chdir(cwd)
        from bench.paths import demo_results

        save_toy_model()
        demo_results().parent.mkdir(parents=True)  # bench demo makes its folder
        toy_run = [
            *("run", "-d", NAME, "-m", "toy-model", "--preset", "fast", "--attack", "all", "--iterations", "2"),
            *("--images-per-combo", "1", "--combos-per-size", "1", "--name", "stamps-demo"),
            *("--db", str(demo_results()), "--quiet"),
        ]
        assert main_exit(mp, *toy_run) == 0, "the fixture's toy run"
        with open_store("ladybug") as store:  # the run's graph, as the demo leaves the stamps graph there
            store.load(toy_graph())
        for shard in ("shard0.duckdb", "shard1.duckdb"):
            shutil.copy(demo_results(), cwd / shard)
        (cwd / "my_labels.csv").write_text("label,synset\ncat,cat.n.01\ndog,dog.n.01\ncar,car.n.01\n")
        (cwd / "kg" / "graphs").mkdir(parents=True)
        yield cwd, mp


def test_every_command_has_an_example():
    """Every command (each leaf of the tree, groups' subcommands included) has an ``Example:``
    line in its help text, the one ``examples()`` reads, and ``bench COMMAND --help`` shows it."""
    commands = list(leaf_commands())
    paths = {path for path, _ in commands}
    named = {("run",), ("table",), ("sql",), ("runs",), ("plot",), ("merge",), ("perf", "db"), ("perf", "kg")}
    named |= {("kg", "load"), ("kg", "closure"), ("kg", "query")}
    assert named <= paths, f"the walk of the command tree missed {sorted(named - paths)}"
    runner = CliRunner()
    missing = []
    for path, command in commands:
        shown = runner.invoke(bench.cli.app, [*path, "--help"], terminal_width=200)
        if "Example:" not in (command.help or "") or shown.exit_code != 0 or "Example:" not in shown.output:
            missing.append(" ".join(path))
    assert not missing, f"commands without an Example: line in --help: {missing}"


@pytest.mark.slow
def test_every_example_pastes_into_bash_parses_and_runs(fixture_home, capsys):
    cwd, mp = fixture_home
    problems = []
    for line in examples():
        words = bash_words(line)
        command, rest = command_of(words)
        if hasattr(command, "commands"):
            problems.append(f"{line}: names no command")
            continue
        try:
            command.make_context(" ".join(words[: len(words) - len(rest)]), list(rest))
        except Exception as exc:  # a usage error, or a callback's BenchError
            problems.append(f"{line}: does not parse: {exc}")
            continue
        if parse_only(line) is not None:
            continue
        capsys.readouterr()
        code = main_exit(mp, *words[1:])
        err = capsys.readouterr().err
        if code != 0:
            problems.append(f"{line}: exit {code}: {err.strip()}")
    assert not problems, "\n".join(problems)
    assert Path(cwd / "report.html").is_file() and Path(cwd / "size.pdf").is_file(), "the examples wrote their files"


def test_the_query_example_keeps_its_parameter_for_cypher():
    (line,) = [e for e in examples() if e.startswith("bench kg query")]
    assert "$g" in " ".join(bash_words(line)), "bash must leave $g to Cypher (single quotes)"


def doc_commands() -> list[str]:
    """The ``bench`` lines of the bash blocks of the README and docs/ (the ones to paste; inline
    code in prose names a command or an option, not a whole command)."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            command = ""
            for line in block.splitlines():
                command = f"{command}\n{line}" if command else line.strip()
                try:
                    shlex.split(command, comments=True)  # a quote or a backslash that goes on
                except ValueError:
                    continue
                if command.startswith("bench ") and " ... " not in command:  # "..." elides options
                    found.append(command)
                command = ""
    return list(dict.fromkeys(found))


def test_every_documented_command_pastes_into_bash_and_parses(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    for name in ("shard0.duckdb", "shard1.duckdb", "results.shard-0-of-4.duckdb"):  # files the docs merge
        (tmp_path / name).touch()
    commands = doc_commands()
    assert len(commands) >= 10, commands
    problems = []
    for line in commands:
        words = bash_words(line)
        command, rest = command_of(words)
        try:
            command.make_context(" ".join(words[: len(words) - len(rest)]), list(rest))
        except Exception as exc:  # a usage error, or a callback's BenchError
            problems.append(f"{line}: {exc}")
    assert not problems, "\n".join(problems)
