"""``bench run`` end to end on the toy dataset and model (``tests/sweep_fixtures.py``, registered
in the subprocesses like a plugin): a sweep killed with SIGKILL part-way and resumed equals an
uninterrupted one; shards and merge; one clear line for each kind of bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import torch
from typer.testing import CliRunner

import bench.cli  # noqa: F401  (registers every command)
from bench.cli import error_message
from bench.cli.apps import app
from bench.errors import BenchError
from bench.models.card import ModelCard
from bench.models.trained import models_dir, save_trained
from kg.catalog import load_graph
from tests.sweep_fixtures import NAME, save_toy_model

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = "import tests.sweep_fixtures; from bench.cli import main; main()"
SWEEP = [
    "run",
    "-d",
    NAME,
    "--attack",
    "gmla,ml-dp",
    "--size",
    "1-2",
    "--eps",
    "0.06",
    "--iterations",
    "10",
    "--images-per-combo",
    "3",
    "--combos-per-size",
    "4",
    "--batch-size",
    "2",
    "--preset",
    "fast",
]
ROW_SQL = "SELECT * EXCLUDE (seconds) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
SUMMARY_SQL = "SELECT * FROM rate_summary ORDER BY size, attack"
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def toy_model():
    return save_toy_model()


@pytest.fixture
def private_data(tmp_path, monkeypatch):
    """An empty data directory of its own (no trained model of any dataset)."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def bench_process(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def query(db: Path, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def rows_when_readable(db: Path) -> int:
    """Rows stored so far, or 0 while the file is missing or held by the writer."""
    try:
        return query(db, "SELECT count(*) FROM results")[0][0]
    except (duckdb.Error, IndexError):
        return 0


def rounded(rows):
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in rows]


def test_sigkill_part_way_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Two processes start together: one runs the sweep uninterrupted (its output is checked),
    the other is killed with SIGKILL once rows are stored, then resumed by the same command."""
    killed, reference = tmp_path / "killed.duckdb", tmp_path / "reference.duckdb"
    whole = bench_process(*SWEEP, "--db", str(reference))
    proc = bench_process(*SWEEP, "--db", str(killed), "--quiet")
    deadline = time.monotonic() + 300
    while rows_when_readable(killed) == 0:
        assert proc.poll() is None, f"the sweep ended before writing a row: {proc.communicate()}"
        assert time.monotonic() < deadline, "no row appeared within 5 minutes"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = query(killed, "SELECT count(*) FROM results")[0][0]

    out, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, f"the uninterrupted run failed: {err}"
    total = query(reference, "SELECT count(*) FROM results")[0][0]
    assert 0 < partial < total, f"the kill came part-way ({partial} of {total} rows)"
    for expected in (
        f"{total} written now, 0 stored before, {total} planned",
        "finished",
        f"next: bench table --run {NAME}-{NAME}-",
        "preset fast: attacks gmla, ml-dp; ε 0.06",
        "8 (0 without eligible images)",
    ):
        assert expected in out, f"the run's output has {expected!r}: {out}"

    # resumed in a process like the other two (one thread): the contract is one machine setting
    resumed = bench_process(*SWEEP, "--db", str(killed), "--quiet")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, f"the resumed run failed: {err}"
    assert f"{total - partial} written now, {partial} stored before" in out, f"the resumed run: {out}"
    assert query(killed, ROW_SQL) == query(reference, ROW_SQL), (
        "resumed rows (timing aside) equal the uninterrupted run's"
    )
    assert rounded(query(killed, SUMMARY_SQL)) == rounded(query(reference, SUMMARY_SQL)), "resumed tables equal"
    assert query(killed, "SELECT bool_and(complete), count(*) FROM combinations") == [(True, 8)], (
        "all 4 + 4 combinations complete"
    )

    table = invoke("table", "--db", str(killed), "--size", "2")
    assert table.exit_code == 0, table.output
    for name in ("GMLA", "ML-DP", "FR_N", "FR_S", "NT_R"):
        assert name in table.output, f"bench table shows {name}: {table.output}"


def test_shards_write_their_own_files_and_merge(tmp_path):
    args = ["run", "-d", NAME, "--attack", "mla-u", "--size", "1", "--iterations", "3", "--eps", "0.06", "--quiet"]
    db = tmp_path / "all.duckdb"
    for i in range(2):
        result = invoke(*args, "--db", str(db), "--shard", f"{i}/2")
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"all.shard-{i}-of-2.duckdb").exists(), f"shard {i} writes all.shard-{i}-of-2.duckdb"
    single = invoke(*args, "--db", str(tmp_path / "single.duckdb"))
    assert single.exit_code == 0, single.output
    merged = invoke(
        "merge", str(tmp_path / "all.shard-0-of-2.duckdb"), str(tmp_path / "all.shard-1-of-2.duckdb"), "--db", str(db)
    )
    assert merged.exit_code == 0 and "merged into" in merged.output, merged.output
    assert query(db, ROW_SQL) == query(tmp_path / "single.duckdb", ROW_SQL), "merged shards equal the single run"
    mismatch = invoke(
        *args[:-1],
        "--eps",
        "0.05",
        "--db",
        str(tmp_path / "other.duckdb"),
        "--shard",
        "0/2",
        "--name",
        query(db, "SELECT run_id FROM runs")[0][0],
        "--quiet",
    )
    assert mismatch.exit_code == 0, mismatch.output
    refused = invoke("merge", str(tmp_path / "other.shard-0-of-2.duckdb"), "--db", str(db))
    assert isinstance(refused.exception, BenchError) and "another configuration" in str(refused.exception), (
        refused.output
    )


def error_of(*args: str) -> str:
    result = invoke(*args)
    assert isinstance(result.exception, BenchError), (
        f"{args}: expected a BenchError, got {result.exception!r}: {result.output}"
    )
    message = error_message(result.exception)
    assert "\n" not in message, f"one line: {message!r}"
    return message


def test_bad_input_gives_one_clear_line(tmp_path):
    base = ["run", "--quiet", "--db", str(tmp_path / "r.duckdb")]
    assert "unknown dataset 'stampz'" in error_of(*base, "-d", "stampz"), "unknown dataset"
    assert "unknown attack 'gmlaa'" in error_of(*base, "-d", NAME, "--attack", "gmla,gmlaa"), "unknown attack"
    assert "did you mean 'gmla'" in error_of(*base, "-d", NAME, "--attack", "gmlaa"), "close names suggested"
    assert "unknown trained model 'nope'" in error_of(*base, "-d", NAME, "-m", "nope"), "unknown model"
    assert "|Ω| = 7 is larger than the 6 labels" in error_of(*base, "-d", NAME, "--size", "7"), "|Ω| too large"
    assert "--shard '2/2'" in error_of(*base, "-d", NAME, "--shard", "2/2"), "bad shard"
    assert "--size '1-x'" in error_of(*base, "-d", NAME, "--size", "1-x"), "bad size"
    assert "--eps 'a'" in error_of(*base, "-d", NAME, "--eps", "a"), "bad eps"
    assert "unknown sweep preset 'fastest'" in error_of(*base, "-d", NAME, "--preset", "fastest"), "bad preset"


def test_no_model_says_what_to_run(private_data):
    base = ["run", "--quiet"]
    assert "no trained model for stamps: run `bench train --dataset stamps --preset demo`" in error_of(
        *base, "-d", "stamps"
    )
    assert error_of(*base, "-d", "voc").startswith(
        "no trained model for voc: run `bench train --dataset voc …` (or try the offline dataset stamps)"
    ), "no model for voc"


def test_missing_data_names_the_layout(tmp_path, private_data):
    from bench.models import create_model

    graph = load_graph("voc")
    model = create_model("mobilenetv3-small", graph.n, 32)
    card = ModelCard(
        model="mobilenetv3-small",
        model_kwargs=model.config["kwargs"],
        dataset="voc",
        labels=list(graph.nodes),
        n_labels=graph.n_labels,
        graph="voc",
        graph_sha256=graph.sha256,
        image_size=32,
        run_name="tiny",
    )
    save_trained(models_dir("voc") / "tiny", model, card)
    message = error_of("run", "--quiet", "-d", "voc", "--data-root", str(tmp_path / "VOCdevkit"))
    assert "voc data root" in message and "does not exist" in message and "expected" in message, message


def test_another_configuration_under_a_name_and_a_locked_database(tmp_path):
    db = tmp_path / "r.duckdb"
    args = [
        "run",
        "-d",
        NAME,
        "--attack",
        "mla-u",
        "--size",
        "1",
        "--iterations",
        "2",
        "--quiet",
        "--db",
        str(db),
        "--name",
        "mine",
    ]
    assert invoke(*args).exit_code == 0, "first run"
    before = query(db, ROW_SQL)
    message = error_of(*args, "--eps", "0.02")
    assert "run 'mine'" in message and "another configuration" in message and "eps" in message, message
    assert query(db, ROW_SQL) == before, "the stored rows are untouched"

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(db)!r}); print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready", "the holder opened the database"
        message = error_of(*args, "--wait", "0.5")
        assert f"is locked by process {holder.pid}" in message and "--db" in message, message
    finally:
        holder.kill()
        holder.wait()
    assert query(db, ROW_SQL) == before, "nothing stored was lost"


def test_main_prints_one_line_and_exits_2(tmp_path):
    proc = bench_process("run", "-d", NAME, "--attack", "nope", "--db", str(tmp_path / "r.duckdb"))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, f"exit code {proc.returncode}: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown attack 'nope'" in lines[0], f"one line on stderr: {err!r}"
    assert "Traceback" not in err, "no traceback"


def save_stamps_model(name: str, model, image_size: int, **card) -> None:
    """A resnet18 card for ``model`` as the stamps run ``name`` (what the demo would find)."""
    graph = load_graph("stamps")
    fields = dict(dataset="stamps", labels=list(graph.nodes), n_labels=graph.n_labels, graph="stamps")
    card = ModelCard(
        model="resnet18",
        model_kwargs={},
        graph_sha256=graph.sha256,
        image_size=image_size,
        run_name=name,
        **fields,
        **card,
    )
    save_trained(models_dir("stamps") / name, model, card)


def test_demo_reuses_a_model_trained_with_the_demo_recipe(monkeypatch, private_data):
    from rich.console import Console

    from bench.jobs import demo
    from bench.train import preset_config

    config = preset_config("demo").resolved()
    model = torch.nn.Linear(1, 1)
    model.config, model.resolved_kwargs = {}, {}
    for name, recipe in (("old-recipe", {**config.to_dict(), "epochs": 1}), ("demo-match", config.to_dict())):
        save_stamps_model(name, model, 96, recipe={**recipe, "device": "cpu", "train_seconds": 1.0})
    monkeypatch.setattr(
        "bench.train.train", lambda *a, **k: pytest.fail("the demo retrained although a demo model exists")
    )
    run_dir, card = demo.demo_model(torch.device("cpu"), Console(quiet=True))
    assert run_dir.name == "demo-match", f"reused {run_dir.name}, not the model with the demo recipe"


def test_grid_options_parse_to_the_values_they_name():
    from bench.cli.run import parse_shard
    from bench.names import parse_attacks
    from bench.sweep.presets import FAST, SweepOptions, parse_floats, parse_sizes

    assert parse_floats("0.005:0.02:0.005", "eps") == (0.005, 0.01, 0.015, 0.02), "an inclusive START:STOP:STEP sweep"
    assert parse_floats("0.01, 0.03,0.01", "eps") == (0.01, 0.03), "a comma list, duplicates dropped"
    assert parse_floats("-0.95:-0.85:0.05", "tau") == (-0.95, -0.9, -0.85), "a τ sweep"
    assert parse_sizes("1-3,5") == (1, 2, 3, 5) and parse_sizes("3") == (3,), "ranges and lists of sizes"
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1), "i/n, one shard by default"
    assert parse_attacks("all") is None, "all: the options leave the attacks to the preset's default"
    assert SweepOptions().filled(FAST, "stamps").attacks == (
        "mla-u",
        "mla-c",
        "mla-lp",
        "gmla-alpha",
        "gmla-beta",
        "gmla",
        "ml-dp",
    ), "every attack, paper order"
    assert parse_attacks("GMLA, mla-u") == ("gmla", "mla-u"), "names are case-insensitive"


def test_the_demo_next_steps_work_as_printed(private_data, monkeypatch):
    """After a demo: the read commands without --db point at the demo's file, and every command
    the demo prints at its end runs as printed (shell-split; the ε sweep up to its attacks)."""
    import shlex

    import bench.sweep.runner
    from bench.cli.run import next_steps
    from bench.models import create_model
    from bench.paths import demo_results
    from kg.stores import open_store
    from results.store import ResultStore
    from tests.sweep_fixtures import toy_graph

    save_toy_model()
    demo_db = demo_results()
    demo_db.parent.mkdir(parents=True)  # bench demo makes its folder
    done = invoke(*SWEEP, "--name", "stamps-demo", "--db", str(demo_db), "--quiet")
    assert done.exit_code == 0, done.output
    with open_store("ladybug") as store:  # the demo's graph is in the default store after a demo
        store.load(toy_graph())

    hint = f"the demo's results are in {demo_db}: bench runs --db {demo_db}"
    shown = invoke("runs")  # no default file yet: the demo's are read, and that is said
    assert shown.exit_code == 0 and "stamps-demo" in shown.output, f"no default file: the demo's runs\n{shown.output}"
    assert f"reading the demo's, {demo_db}" in shown.output.replace("\n", ""), shown.output
    ResultStore(private_data / "results.duckdb")
    assert hint in invoke("runs").output.replace("\n", ""), "an empty default file: where the demo's results are"
    assert hint in error_message(invoke("table").exception)

    n = load_graph("stamps").n  # a stamps model for the ε sweep the demo suggests
    save_stamps_model("untrained", create_model("resnet18", n, 32), 32)
    swept = []

    def stub(config, *args, **kwargs):
        swept.append(config)
        raise BenchError("stub: the sweep starts here")

    monkeypatch.setattr(bench.sweep.runner, "run_sweep", stub)
    monkeypatch.chdir(private_data)  # the ε sweep names a file here: keep it out of the repository
    for line in next_steps(demo_db):
        for command in line.split(" && "):
            args = shlex.split(command)
            assert args[0] == "bench", command
            result = invoke(*args[1:])
            if args[1] == "run":
                assert "stub: the sweep starts here" in error_message(result.exception), result.output
                assert swept and swept[-1].eps == (0.01, 0.03, 0.05), swept
            else:
                assert result.exit_code == 0, f"{command}: {result.exception!r}\n{result.output}"


def test_version_names_the_package_torch_and_the_cpu_numerics():
    from importlib.metadata import version as installed

    from bench import numerics

    version = installed("semattack-bench")  # the package's metadata, which pip built from bench.__version__
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"semattack-bench {version}", lines
    assert lines[1].startswith(f"torch {torch.__version__} "), lines
    assert lines[2] == f"CPU: {numerics.cpu_model()}, {numerics.cpu_vendor()}, {numerics.cpu_isa()} (flags: " + (
        f"{numerics.cpu_flags() or 'none'})"
    ), lines
    read_back = f"runs {numerics.mkl_branch()}, oneDNN {numerics.library_versions()['onednn']} runs "
    assert read_back + f"{numerics.onednn_isa()}, ATen runs {numerics.aten_capability()};" in lines[3], lines
    assert "cpu-numerics native" in lines[3], lines


def test_the_next_hint_is_one_pasteable_line(tmp_path):
    import shlex

    save_toy_model()
    db = tmp_path / "a folder" / "r.duckdb"
    db.parent.mkdir()
    done = runner.invoke(app, [*SWEEP, "--name", "mine.1", "--db", str(db)], env={"COLUMNS": "60"})
    assert done.exit_code == 0, done.output
    (line,) = [x for x in done.output.splitlines() if x.startswith("next: ")]
    args = shlex.split(line.removeprefix("next: "))
    assert args[:4] == ["bench", "table", "--run", "mine.1"] and args[4:6] == ["--db", str(db)], args
    shown = invoke(*args[1:])
    assert shown.exit_code == 0 and "GMLA" in shown.output, shown.output


def test_build_sweep_from_python_is_bench_run(tmp_path):
    """``bench.sweep.build_sweep`` with ``bench run``'s options by name: the same run id and
    the same rows as the command (the command is its options plus this call)."""
    from bench.sweep import SweepOptions, build_sweep

    done = invoke(*SWEEP, "--db", str(tmp_path / "cli.duckdb"), "--quiet")
    assert done.exit_code == 0, done.output
    options = SweepOptions.from_text(
        attacks="gmla,ml-dp", sizes="1-2", eps="0.06", iterations=10, images_per_combination=3, combinations_per_size=4
    )
    said: list[str] = []
    sweep = build_sweep(
        NAME, preset="fast", options=options, batch_size=2, db=tmp_path / "lib.duckdb", report=said.append
    )
    outcome = sweep.run()
    assert outcome.finished and outcome.written > 0
    assert query(tmp_path / "lib.duckdb", "SELECT run_id FROM runs") == query(
        tmp_path / "cli.duckdb", "SELECT run_id FROM runs"
    )
    assert query(tmp_path / "lib.duckdb", ROW_SQL) == query(tmp_path / "cli.duckdb", ROW_SQL), "the command's rows"
    assert any(line.startswith("model: the newest trained for") for line in said), said
