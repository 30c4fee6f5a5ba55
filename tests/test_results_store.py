"""``ResultStore``: runs and resume, idempotent batches, transactions, schema upgrades,
locking, ``kill -9`` and merging shards — checked against the rows the tests wrote."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pytest

import results.migrate as migrate_module
from bench.cli import error_message
from bench.errors import BenchError, StoreBusy
from bench.paths import PROJECT_ROOT
from results.schema import SCHEMA_VERSION, VOLATILE, ResultKey, RunConfig
from results.store import ResultStore, read_results
from tests.results_fixtures import config, fake_sweep, store_sweep


def stored_rows(store: ResultStore, run: str | None = None) -> list[tuple]:
    with store.reader() as con:
        return con.execute(
            "SELECT * EXCLUDE (run_id) FROM results WHERE $run IS NULL OR run_id = $run ORDER BY ALL", {"run": run}
        ).fetchall()


def expected_rows(rows) -> list[tuple]:
    return sorted(dataclasses.astuple(r) for r in rows)


def as_table_order(rows: list[tuple]) -> list[tuple]:
    """ResultRow field order → the results table's column order (ssim, rmsd before success_iteration; machine last)."""
    return sorted(r[:8] + r[12:14] + r[8:12] + r[14:] for r in rows)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- runs
def test_config_hash_ignores_volatile_fields_only():
    base = config()
    volatile = dict(name="x", model_path="/elsewhere", shard_index=1, shard_count=3, device="cuda:1", created="2020")
    assert set(volatile) == set(VOLATILE), "the test should cover every volatile field"
    assert dataclasses.replace(base, **volatile).config_hash == base.config_hash, "a volatile field changed the hash"
    changed = dict(
        eps=(0.02,),
        tau=(-0.5,),
        sizes=(3,),
        attacks=("gmla",),
        seed=1,
        images_per_combination=7,
        iterations=10,
        preset="fast",
        code_version="9",
        graph_sha256="1" * 64,
        model_card={"m": 2},
        extra={"turn_on": True},
        dataset="nus",
        model_name="ml-gcn",
        graph_name="g",
    )
    for name, value in changed.items():
        assert dataclasses.replace(base, **{name: value}).config_hash != base.config_hash, f"{name} not in the hash"
    assert RunConfig.from_json(base.to_json()) == base, "RunConfig does not survive its JSON"


def test_begin_run_resumes_and_refuses_another_configuration(tmp_path):
    store = ResultStore(tmp_path / "r.duckdb")
    cfg = config(name="demo")
    assert store.begin_run(cfg) == "demo", "begin_run should return the run name"
    assert store.begin_run(dataclasses.replace(cfg, device="cuda")) == "demo", "the same configuration did not resume"
    with pytest.raises(BenchError, match=r"run 'demo' .*another configuration \(eps: \[0\.01\] != \[0\.02\]\)"):
        store.begin_run(dataclasses.replace(cfg, eps=(0.02,)))
    assert store.run_config("demo").eps == (0.01,), "a refused run overwrote the stored configuration"
    unnamed = config(dataset="nus")
    assert store.begin_run(unnamed) == f"nus-asl-{unnamed.config_hash[:8]}", "unnamed runs get a derived id"
    with pytest.raises(BenchError, match=r"unknown run 'dmo'.*'demo'"):
        store.run_config("dmo")


# ---------------------------------------------------------------------- rows
def test_write_rows_is_idempotent_and_keyed(tmp_path):
    store = ResultStore(tmp_path / "r.duckdb")
    sweep = fake_sweep(config(), seed=1)
    run = store.begin_run(sweep.config)
    store.write_combinations(run, sweep.combinations)
    store.write_combinations(run, sweep.combinations)  # twice: no error, no duplicates
    half = len(sweep.rows) // 2
    assert store.write_rows(run, sweep.rows[:half]) == half, "first batch not fully stored"
    assert store.write_rows(run, sweep.rows) == len(sweep.rows) - half, "overlapping batch stored duplicates"
    assert store.write_rows(run, sweep.rows + sweep.rows[:5]) == 0, "a repeated batch stored rows again"
    assert as_table_order(expected_rows(sweep.rows)) == stored_rows(store), "stored rows differ from those written"
    keys = {ResultKey(r.combo_id, r.image_id, r.attack, r.eps, r.tau) for r in sweep.rows}
    assert store.done_keys(run) == keys == {r.key for r in sweep.rows}, "done_keys differs from the written keys"
    assert store.done_combinations(run) == set(), "no combination was marked complete yet"
    store.write_rows(run, [], complete=[0, 2])
    assert store.done_combinations(run) == {0, 2}, "complete combinations not recorded"


def test_keys_survive_float32_eps(tmp_path):
    store = ResultStore(tmp_path / "r.duckdb")
    sweep = fake_sweep(config(eps=(1 / 255,)), seed=6)
    run = store.begin_run(sweep.config)
    store.write_combinations(run, sweep.combinations)
    row = dataclasses.replace(sweep.rows[0], eps=np.float32(1 / 255), attack="GMLA", combo_id=np.int64(0))
    store.write_rows(run, [row])
    key = ResultKey.of(0, row.image_id, "gmla", sweep.config.eps[0], sweep.config.tau[0])
    assert store.done_keys(run) == {key} == {row.key}, "a float32 ε or upper-case attack changed the row's key"
    assert store.write_rows(run, [dataclasses.replace(row, eps=1 / 255)]) == 0, "float64 ε stored a second row"


def test_a_failing_batch_stores_nothing(tmp_path):
    store = ResultStore(tmp_path / "r.duckdb")
    sweep = fake_sweep(config(), seed=2)
    run = store.begin_run(sweep.config)
    store.write_combinations(run, sweep.combinations)
    good, rest = sweep.rows[:10], sweep.rows[10:30]
    store.write_rows(run, good)
    failed = next(r for r in rest if not r.success)
    bad = [*rest, dataclasses.replace(failed, image_id="x", ssim=0.9)]  # SSIM on a failed row breaks a CHECK
    with pytest.raises(duckdb.ConstraintException, match="ssim"):
        store.write_rows(run, bad, complete=[0])
    with pytest.raises(ValueError, match="no combinations \\[999\\]"):
        store.write_rows(run, [dataclasses.replace(good[0], combo_id=999)])
    assert stored_rows(store) == as_table_order(expected_rows(good)), "a failed batch left rows behind"
    assert store.done_combinations(run) == set(), "a failed batch marked a combination complete"


# ---------------------------------------------------------------------- schema
def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "r.duckdb"
    ResultStore(path)
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = sha(path)
    with pytest.raises(BenchError, match="schema version 99, newer than this semattack-bench"):
        ResultStore(path)
    assert sha(path) == before, "opening a newer file changed it"


def test_older_schema_is_upgraded_in_one_transaction(tmp_path, monkeypatch):
    path = tmp_path / "r.duckdb"
    store_sweep(ResultStore(path), fake_sweep(config(), seed=3))
    before = stored_rows(ResultStore(path))
    real, now = dict(migrate_module.MIGRATIONS), migrate_module.SCHEMA_VERSION
    monkeypatch.setattr(migrate_module, "SCHEMA_VERSION", now + 1)
    monkeypatch.setattr(
        migrate_module,
        "MIGRATIONS",
        {**real, now: ("ALTER TABLE results ADD COLUMN note TEXT", "SELECT * FROM no_such_table")},
    )
    with pytest.raises(duckdb.CatalogException):
        ResultStore(path)
    with duckdb.connect(str(path), read_only=True) as con:
        version = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert version == str(now), "version moved"
        columns = [r[0] for r in con.execute("DESCRIBE results").fetchall()]
    assert "note" not in columns, "a failed upgrade left a half-applied schema"
    monkeypatch.setattr(migrate_module, "MIGRATIONS", {**real, now: ("ALTER TABLE results ADD COLUMN note TEXT",)})
    upgraded = ResultStore(path)
    with duckdb.connect(str(path), read_only=True) as con:
        version = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        assert version == str(now + 1), "not upgraded"
        assert "note" in [r[0] for r in con.execute("DESCRIBE results").fetchall()], "migration not applied"
    assert [r[:-1] for r in stored_rows(upgraded)] == before, "rows changed during the upgrade"


def _version_5(path: Path) -> None:
    """Turn a results file back into what version 5 wrote (``results.iterations``)."""
    with duckdb.connect(str(path)) as con:
        con.execute("ALTER TABLE results RENAME COLUMN success_iteration TO iterations")
        con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")


def test_reading_a_file_never_writes_it(tmp_path):
    """Current or older, a file read (read_results, a store opened with create=False, a merge's
    source) keeps its bytes and gains no file beside it; an older one reads as if upgraded, and
    the first write upgrades it."""
    path = tmp_path / "r.duckdb"
    sweep = fake_sweep(config(name="r"), seed=7)
    store_sweep(ResultStore(path), sweep)
    query = "SELECT * EXCLUDE (run_id) FROM rate_summary ORDER BY ALL"

    def rates(con) -> list[tuple]:  # to 9 digits: DuckDB sums in no fixed order
        found = con.execute(query).fetchall()
        return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in r) for r in found]

    with read_results(path) as con:
        summary = rates(con)
    rows = stored_rows(ResultStore(path))
    for version in (SCHEMA_VERSION, 5):
        if version == 5:
            _version_5(path)
        before, files = sha(path), sorted(os.listdir(tmp_path))
        with read_results(path) as con:
            assert rates(con) == summary, f"version {version}: the views read otherwise"
            assert "success_iteration" in [r[0] for r in con.execute("DESCRIBE results").fetchall()]
        reading = ResultStore(path, create=False)
        assert stored_rows(reading) == rows, f"version {version}: the rows read otherwise"
        assert reading.done_keys("r") == {r.key for r in sweep.rows}, f"version {version}: done_keys"
        assert reading.run_config("r").config_hash == sweep.config.config_hash, f"version {version}: run_config"
        merged = ResultStore(tmp_path / f"merged{version}.duckdb")
        assert merged.merge([path])[0].rows_added == len(rows), f"version {version}: a merge read otherwise"
        assert stored_rows(merged) == rows, f"version {version}: merged rows differ"
        assert sha(path) == before, f"reading a version {version} file changed it"
        assert sorted(os.listdir(tmp_path)) == sorted([*files, f"merged{version}.duckdb"]), "a file appeared beside it"
    ResultStore(path, create=False).finish_run("r")  # a write upgrades the file
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert stored_rows(ResultStore(path, create=False)) == rows, "rows changed by the upgrade"


def test_success_iteration_keeps_its_place_and_values(tmp_path):
    """Version 6 renames results.iterations in place: same position, same values."""
    path = tmp_path / "r.duckdb"
    store_sweep(ResultStore(path), fake_sweep(config(), seed=8))
    with duckdb.connect(str(path), read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE results").fetchall()]
        values = con.execute("SELECT * FROM results ORDER BY ALL").fetchall()
    _version_5(path)
    ResultStore(path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert [r[0] for r in con.execute("DESCRIBE results").fetchall()] == columns, "the column moved"
        assert con.execute("SELECT * FROM results ORDER BY ALL").fetchall() == values, "values changed"


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(BenchError, match="no results database at"):
        ResultStore(tmp_path / "none.duckdb", create=False)
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t (a INT)")
    with pytest.raises(BenchError, match="not a semattack-bench results database"):
        ResultStore(other)
    text = tmp_path / "notes.duckdb"
    text.write_text("hello " * 1000)
    with pytest.raises(BenchError, match="results database .* cannot be read"):
        ResultStore(text)


# ---------------------------------------------------------------------- processes
def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_locked_file_names_the_process_and_waits_for_it(tmp_path):
    path = tmp_path / "r.duckdb"
    store = ResultStore(path)
    holder = _child(
        f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(30)"
    )
    try:
        assert holder.stdout.readline().strip() == "ready", "the holder did not start"
        with pytest.raises(BenchError) as err:
            ResultStore(path, lock_timeout=0.3).begin_run(config())
        message = error_message(err.value)
        assert f"process {holder.pid}" in message and "--db" in message, f"lock message lacks PID or advice: {message}"
        assert isinstance(err.value, StoreBusy) and err.value.pid == holder.pid, "a typed StoreBusy with the holder"
    finally:
        holder.kill()
        holder.wait()
    brief = _child(
        f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(0.7)"
    )
    try:
        assert brief.stdout.readline().strip() == "ready", "the holder did not start"
        assert store.begin_run(config(name="waited")) == "waited", "a brief lock was not waited out"
    finally:
        brief.wait()


def test_kill_9_loses_no_committed_batch_and_resume_completes(tmp_path):
    path, batch = tmp_path / "r.duckdb", 10
    sweep = fake_sweep(config(sizes=(2, 3, 4)), seed=4, combos_per_size=30)
    writer = _child(
        f"""
        from results.store import ResultStore
        from tests.results_fixtures import config, fake_sweep
        sweep = fake_sweep(config(sizes=(2, 3, 4)), seed=4, combos_per_size=30)
        store = ResultStore({str(path)!r})
        run = store.begin_run(sweep.config)
        store.write_combinations(run, sweep.combinations)
        print("start", flush=True)
        for i in range(0, len(sweep.rows), {batch}):
            store.write_rows(run, sweep.rows[i : i + {batch}])
            print(i, flush=True)
        """
    )
    assert writer.stdout.readline().strip() == "start", "the writer did not start"
    committed = [writer.stdout.readline() for _ in range(3)]
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert all(line.strip() for line in committed), "the writer died before three batches"
    store = ResultStore(path)
    got = stored_rows(store)
    n = len(got)
    assert n < len(sweep.rows), "the writer finished before it was killed: make the sweep longer"
    assert n % batch == 0, f"{n} rows stored: a batch was stored in part"
    assert n >= 3 * batch, f"only {n} rows survived although three batches were committed"
    assert got == as_table_order(expected_rows(sweep.rows[:n])), "the surviving rows are not the first batches"
    run = store.begin_run(sweep.config)  # resume
    done = store.done_keys(run)
    todo = [r for r in sweep.rows if r.key not in done]
    assert len(todo) == len(sweep.rows) - n, "done_keys does not match the surviving rows"
    store.write_rows(run, todo)
    reference = ResultStore(tmp_path / "ref.duckdb")
    store_sweep(reference, sweep)
    assert stored_rows(store) == stored_rows(reference), "resumed run differs from an uninterrupted one"


# ---------------------------------------------------------------------- merge
def _shard_files(tmp_path, n=2):
    """A sweep split by combination over ``n`` shard files, as `--shard i/n` does."""
    whole = fake_sweep(config(name="sweep"), seed=5)
    paths = []
    for i in range(n):
        store = ResultStore(tmp_path / f"shard{i}.duckdb")
        cfg = dataclasses.replace(whole.config, shard_index=i, shard_count=n, device=f"cuda:{i}")
        run = store.begin_run(cfg)
        mine = [c for c in whole.combinations if c.combo_id % n == i]
        store.write_combinations(run, mine)
        ids = {c.combo_id for c in mine}
        store.write_rows(run, [r for r in whole.rows if r.combo_id in ids], complete=ids)
        store.finish_run(run)
        paths.append(store.path)
    return whole, paths


def test_merge_shards_equals_one_store(tmp_path):
    whole, paths = _shard_files(tmp_path)
    merged = ResultStore(tmp_path / "all.duckdb")
    reports = merged.merge(paths)
    assert [r.rows_added for r in reports] == [sum(1 for r in whole.rows if r.combo_id % 2 == i) for i in range(2)], (
        f"rows added per shard: {reports}"
    )
    assert merged.merge(paths)[0].rows_added == 0, "merging a shard twice added rows"
    single = ResultStore(tmp_path / "single.duckdb")
    store_sweep(single, whole)
    assert stored_rows(merged) == stored_rows(single), "merged shards differ from one unsharded store"
    with merged.reader() as a, single.reader() as b:
        query = "SELECT * EXCLUDE (dataset, model_name) FROM rate_summary ORDER BY run_id, size, attack, eps, tau"
        for x, y in zip(a.execute(query).fetchall(), b.execute(query).fetchall(), strict=True):
            same = [u == pytest.approx(v, rel=1e-12) if isinstance(v, float) else u == v for u, v in zip(x, y)]
            assert all(same), f"rate_summary differs after merging: {x} != {y}"
        shards, finished = a.execute("SELECT shards, finished FROM runs").fetchone()
    assert shards == [0, 1] and finished is not None, f"merged run should list shards [0, 1] and be finished: {shards}"
    assert merged.done_combinations("sweep") == {c.combo_id for c in whole.combinations}, "complete flags lost"


def test_merge_refuses_mismatched_runs(tmp_path):
    whole, paths = _shard_files(tmp_path)
    merged = ResultStore(tmp_path / "all.duckdb")
    merged.merge(paths[:1])
    before = stored_rows(merged)
    other = ResultStore(tmp_path / "other.duckdb")
    other.begin_run(dataclasses.replace(whole.config, iterations=5, shard_index=1, shard_count=2))
    with pytest.raises(BenchError, match=r"run 'sweep' has another configuration .*iterations: 300 != 5"):
        merged.merge([other.path])
    odd = ResultStore(tmp_path / "odd.duckdb")
    odd.begin_run(dataclasses.replace(whole.config, shard_index=2, shard_count=3))
    with pytest.raises(BenchError, match="split into 2 shards"):
        merged.merge([odd.path])
    with pytest.raises(BenchError, match="into itself"):
        merged.merge([merged.path])
    assert stored_rows(merged) == before, "a refused merge changed the target"


def test_version_one_files_gain_the_artifacts_machines_flipped_checks_and_transfer(tmp_path):
    path = tmp_path / "v1.duckdb"
    store_sweep(ResultStore(path), fake_sweep(config(), seed=4))
    before = stored_rows(ResultStore(path))
    with duckdb.connect(str(path)) as con:  # back to what version 1 wrote
        con.execute("DROP TABLE artifacts")
        con.execute("DROP TABLE machines")
        con.execute("DROP TABLE checks")
        con.execute("DROP TABLE transfer")
        con.execute("DROP TABLE clean_stats")
        con.execute("ALTER TABLE results DROP COLUMN machine")
        con.execute("ALTER TABLE results DROP COLUMN flipped")
        con.execute("ALTER TABLE results DROP COLUMN detected")
        con.execute("ALTER TABLE results RENAME COLUMN success_iteration TO iterations")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    unread = sha(path)
    assert stored_rows(ResultStore(path, create=False)) == before, "a version 1 file reads as the upgraded one"
    assert sha(path) == unread, "reading a version 1 file changed it"
    upgraded = ResultStore(path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
        assert con.execute("SELECT count(*) FROM results WHERE flipped IS NULL").fetchone()[0] == len(before), (
            "rows stored before version 4 have no flipped labels"
        )
        assert con.execute("SELECT count(*) FROM label_rates WHERE nt_flips IS NOT NULL").fetchone()[0] == 0, (
            "label_rates counted flips that were never recorded"
        )
        assert con.execute("SELECT count(*) FROM artifacts").fetchone()[0] == 0, "the artifacts table exists"
        assert con.execute("SELECT count(*) FROM machines").fetchone()[0] == 0, "the machines table exists"
        assert con.execute("SELECT count(*) FROM checks").fetchone()[0] == 0, "the checks table exists"
        assert con.execute("SELECT count(*) FROM transfer").fetchone()[0] == 0, "the transfer table exists"
        assert con.execute("SELECT count(*) FROM results WHERE machine IS NULL").fetchone()[0] == len(before), (
            "rows stored before version 3 have no machine"
        )
    assert stored_rows(upgraded) == before, "rows unchanged"
