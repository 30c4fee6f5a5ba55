"""``bench table | sql | runs | plot | merge | perf db`` through Typer's CliRunner, and the
one-line errors through ``bench.cli.main`` in a subprocess."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import duckdb
import pytest
from PIL import Image
from typer.testing import CliRunner

import bench.cli  # noqa: F401  registers every command
from bench.cli import error_message
from bench.cli.apps import app
from bench.errors import BenchError
from bench.paths import PROJECT_ROOT
from results.store import ResultStore
from results.tables import Cell, format_cell
from tests.results_fixtures import config, fake_sweep, store_sweep
from tests.test_results_views import reference_summary

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("cli") / "r.duckdb")
    sweep = fake_sweep(config("voc", "asl", name="demo", attacks=("mla-u", "gmla", "ml-dp"), sizes=(2, 3)), seed=8)
    store_sweep(store, sweep)
    return store, sweep


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, (BenchError, SystemExit)):
        raise result.exception
    return result


def test_table_markdown_shows_the_numpy_numbers(db):
    store, sweep = db
    result = invoke("table", "--db", store.path, "--size", "3", "--format", "markdown")
    assert result.exit_code == 0, result.output
    ref = reference_summary({"demo": sweep})["demo", 3, "gmla", 0.01, -0.85]
    cell = format_cell(Cell(ref["fr_s_mean"], ref["fr_s_std"], True))
    gmla = next(line for line in result.output.splitlines() if "| GMLA |" in line)
    assert cell in gmla, f"GMLA's FR_S {cell} not in the markdown row {gmla}"


def test_table_files_by_suffix(db, tmp_path):
    store, _ = db
    for name, marker in (("t.tex", r"\toprule"), ("t.csv", "voc_fr_n_mean"), ("t.txt", "GMLA")):
        result = invoke("table", "--db", store.path, "--size", "2", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert marker in (tmp_path / name).read_text(), f"{name} lacks {marker!r}"
    result = invoke("table", "--db", store.path, "--metric", "ntr")
    assert isinstance(result.exception, BenchError) and "unknown metric 'ntr'" in error_message(result.exception), (
        f"an unknown metric should be a BenchError, got {result.exception!r}"
    )


def test_every_documented_query_runs(db):
    """The `bench sql "…"` examples of the README, the docs and the commands' own output."""
    sources = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
    sources += sorted((PROJECT_ROOT / "bench" / "cli").glob("*.py"))
    queries = {q for path in sources for q in re.findall(r'bench sql(?: --db \S+)? "([^"]+)"', path.read_text())}
    queries = {q for q in queries if "…" not in q}  # placeholders, not queries
    assert len(queries) >= 4, f"found only {queries}"
    store, _ = db
    for query in sorted(queries):
        result = invoke("sql", query, "--db", store.path)
        assert result.exit_code == 0, f"documented query fails: {query}\n{result.output}{result.exception!r}"


def test_sql_prints_exports_and_refuses_writes(db, tmp_path):
    store, sweep = db
    result = invoke("sql", "SELECT count(*) AS n FROM results", "--db", store.path)
    assert result.exit_code == 0 and str(len(sweep.rows)) in result.output, result.output
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"rows{suffix}"
        assert invoke("sql", "SELECT * FROM combination_rates", "--db", store.path, "--out", out).exit_code == 0
        with duckdb.connect() as con:
            n = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
        with store.reader() as con:
            assert n == con.execute("SELECT count(*) FROM combination_rates").fetchone()[0], f"{suffix} row count"
    for query, message in (
        ("DELETE FROM results", "read-only: DELETE statements are refused"),
        ("SELECT 1; DROP TABLE results", "one statement at a time"),
        ("SELEC 1", "SQL does not parse"),
        ("SELECT nope FROM results", "SQL error"),
    ):
        result = invoke("sql", query, "--db", store.path)
        assert isinstance(result.exception, BenchError) and message in error_message(result.exception), (
            f"{query!r}: expected {message!r}, got {result.exception!r}"
        )
    with store.reader() as con:
        assert con.execute("SELECT count(*) FROM results").fetchone()[0] == len(sweep.rows), "bench sql changed rows"


def test_runs_and_plot(db, tmp_path):
    store, _ = db
    result = invoke("runs", "--db", store.path)
    assert result.exit_code == 0 and "demo" in result.output and "10/10" in result.output, result.output
    out = tmp_path / "size.png"
    result = invoke("plot", "size", "--db", store.path, "--out", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.format == "PNG", "bench plot did not write a PNG"


def test_merge_command(db, tmp_path):
    store, sweep = db
    shard = ResultStore(tmp_path / "shard.duckdb")
    run = shard.begin_run(dataclasses.replace(sweep.config, name="other"))
    shard.write_combinations(run, sweep.combinations)
    shard.write_rows(run, sweep.rows[:7])
    target = tmp_path / "all.duckdb"
    result = invoke("merge", store.path, shard.path, "--db", target)
    assert result.exit_code == 0, result.output
    with ResultStore(target).reader() as con:
        n = con.execute("SELECT count(*) FROM results").fetchone()[0]
    assert n == len(sweep.rows) + 7, f"merged file holds {n} rows"


def test_perf_db_reports_rates():
    result = invoke("perf", "db", "--rows", "100")
    assert result.exit_code == 0, result.output
    assert "row at a time" in result.output and "write_rows" in result.output, result.output


def test_errors_are_one_line_with_exit_2(db, tmp_path):
    store, _ = db
    for args, message in (
        (["table", "--db", tmp_path / "none.duckdb"], "no results database at"),
        (["table", "--db", store.path], "pick one with --size"),
    ):
        result = invoke(*args)
        assert isinstance(result.exception, BenchError) and message in error_message(result.exception), (
            f"{args}: expected {message!r}, got {result.exception!r}"
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bench.cli import main; main()",
            "sql",
            "DROP TABLE results",
            "--db",
            str(store.path),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr {proc.stderr}"
    assert len(lines) == 1 and "queries are read-only: DROP statements are refused" in lines[0], proc.stderr


def test_rows_as_csv_and_json_for_scripts(db):
    """`--format csv|json` (and `sql --out -`) print every row, parsed back by the standard
    library to the values DuckDB holds."""
    import csv
    import io
    import json

    import duckdb

    store, sweep = db
    query = "SELECT combo_id, image_id, attack, success, ntr_share FROM results ORDER BY ALL"
    with duckdb.connect(str(store.path), read_only=True) as con:
        expected = con.execute(query).fetchall()
    assert len(expected) > 50, "more rows than the table's default limit"
    as_json = json.loads(invoke("sql", query, "--db", store.path, "--format", "json").output)
    assert [tuple(r.values()) for r in as_json] == expected, "JSON rows"
    for args in (["--format", "csv"], ["--out", "-"]):
        lines = list(csv.reader(io.StringIO(invoke("sql", query, "--db", store.path, *args).output)))
        assert lines[0] == ["combo_id", "image_id", "attack", "success", "ntr_share"], lines[0]
        got = [(int(a), b, c, d == "True", float(e)) for a, b, c, d, e in lines[1:]]
        assert got == expected, f"CSV rows with {args}"
    runs = list(csv.DictReader(io.StringIO(invoke("runs", "--db", store.path, "--format", "csv").output)))
    assert [r["run_id"] for r in runs] == ["demo"] and int(runs[0]["rows"]) == len(sweep.rows), runs


def test_plot_and_report_take_several_runs(tmp_path, monkeypatch):
    """``--run`` repeated: one figure and one report per run, each the run's own (the same
    file as the command gives for that run alone)."""
    store = ResultStore(tmp_path / "two.duckdb")
    for name, seed in (("first", 3), ("second", 4)):
        store_sweep(store, fake_sweep(config("voc", "asl", name=name, attacks=("mla-u", "gmla"), sizes=(2, 3)), seed))
    with store.reader() as con:
        ids = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]
    assert len(ids) == 2, ids
    folder = tmp_path / "out"
    folder.mkdir()
    monkeypatch.chdir(folder)
    both = invoke("plot", "size", "--db", store.path, *[a for r in ids for a in ("--run", r)])
    assert both.exit_code == 0, both.output
    alone = invoke("plot", "size", "--db", store.path, "--run", ids[0], "--out", tmp_path / "alone.png")
    assert alone.exit_code == 0, alone.output
    with Image.open(folder / f"{ids[0]}-size.png") as a, Image.open(tmp_path / "alone.png") as b:
        assert a.tobytes() == b.tobytes(), "the run's figure among several equals its figure alone"
    assert (folder / f"{ids[1]}-size.png").is_file(), "one figure per run"
    refused = invoke("plot", "size", "--db", store.path, "--run", ids[0], "--run", ids[1], "--out", tmp_path / "x.png")
    assert isinstance(refused.exception, BenchError) and "--out names one file" in error_message(refused.exception)
    reports = invoke("report", "--db", store.path, "--run", ids[0], "--run", ids[1], "--out", folder / "r.html")
    assert reports.exit_code == 0, reports.output
    for run in ids:
        assert f"{run}" in (folder / f"r-{run}.html").read_text(), f"report-{run} is that run's"


def test_piped_output_prints_whole_values(tmp_path):
    """Through a pipe (no terminal, no COLUMNS): a long run id prints whole in `bench runs`,
    and `--help` shows every default whole, with no paragraph broken mid-sentence."""
    store = ResultStore(tmp_path / "long.duckdb")
    name = "a-run-whose-name-is-much-longer-than-eighty-columns-of-a-terminal-" + "x" * 40
    store_sweep(store, fake_sweep(config("voc", "asl", name=name, attacks=("mla-u",), sizes=(2,)), 5))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    launch = "import sys; from bench.cli import main; sys.argv[0] = 'bench'; main()"

    def piped(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", launch, *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    with store.reader() as con:
        (run_id,) = con.execute("SELECT run_id FROM runs").fetchone()
    assert len(run_id) > 100 and run_id in piped("runs", "--db", str(store.path)), "the run id whole"
    help_text = piped("run", "--help")
    assert "…" not in help_text and "$BENCH_DATA/results.duckdb" in help_text, "defaults whole"
    lines = [line.strip(" │") for line in help_text.splitlines()]
    assert "Example: bench run --dataset stamps --preset fast" in lines, "an example on a line of its own"
    assert any(line.startswith("Run the paper's sweep:") and line.endswith("every target set Ω.") for line in lines), (
        "the first paragraph on one line"
    )
