"""CPU numerics (``bench.numerics``): the portable mode's pinning, checked in fresh processes
against what MKL and ATen report they run; the numerics fingerprint; and the refusals to mix
rows of two machines (resume, merge), each with its recorded opt-in.

The rows of a portable run must be bitwise the same whatever the user's own CPU settings say:
``bench run --cpu-numerics portable`` in processes started under each emulated CPU of
``EMULATED_CPUS`` (another MKL or ATen code path) gives one set of rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import duckdb
import pytest

from bench import numerics
from bench.errors import BenchError
from bench.numerics import EMULATED_CPUS, PORTABLE_ENV
from bench.sweep.config import shard_db_path
from results.report import build_report
from results.store import ResultStore
from tests.sweep_fixtures import NAME, save_toy_model
from tests.test_sweep_runner import fetch, sweep, toy_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_SQL = "SELECT * EXCLUDE (seconds, machine) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
PROBE = (
    "import json, sys; from bench import numerics; {before}"
    "import torch; torch.ones(4) @ torch.ones(4); "
    "print(json.dumps([numerics.mkl_branch(), numerics.aten_capability(), numerics.effective_mode()]))"
)


def unpinned_env(**extra: str) -> dict[str, str]:
    """This environment without the CPU-numerics settings (the tests' conftest pinned them)."""
    return {**{k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}, "PYTHONPATH": ROOT, **extra}


def python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=unpinned_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def own_environment(monkeypatch):
    """``pin`` writes the process environment: give every pinned variable back afterwards."""
    for key in PORTABLE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(numerics, "_replaced", {})


def test_argv_and_pin(own_environment, monkeypatch):
    assert numerics.mode_in_argv(["run", "--cpu-numerics", "portable", "-d", "x"]) == "portable"
    assert numerics.mode_in_argv(["run", "--cpu-numerics=native"]) == "native"
    assert numerics.mode_in_argv(["run", "--", "--cpu-numerics", "portable"]) is None, "after -- it is an argument"
    assert numerics.mode_in_argv(["run", "--cpu-numerics"]) is None, "no value: left to the parser"
    monkeypatch.setenv("MKL_CBWR", "AVX512")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert numerics.pin("native") == {} and os.environ["MKL_CBWR"] == "AVX512,STRICT", "native: the branch, strict"
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2", "native leaves ATen and oneDNN alone"
    monkeypatch.setenv("MKL_CBWR", "AVX512")
    assert numerics.pin("portable") == {"MKL_CBWR": "AVX512"}, "the user's own setting that was replaced"
    assert {k: os.environ[k] for k in PORTABLE_ENV} == dict(PORTABLE_ENV), "portable overrides the environment"
    assert numerics.replaced_settings() == {"MKL_CBWR": "AVX512"}
    assert numerics.mode_env("portable") == dict(PORTABLE_ENV)
    monkeypatch.setenv("MKL_CBWR", "AVX512")
    assert numerics.mode_env("native") == {"MKL_CBWR": "AVX512,STRICT"}, "workers: the branch, strict"
    monkeypatch.delenv("MKL_CBWR")
    assert numerics.mode_env("native") == {"MKL_CBWR": "AUTO,STRICT"}
    assert numerics.strict("avx2, strict") == "AVX2,STRICT"
    assert numerics.native_branch("SSE4_2") == numerics.native_branch("AVX") == "COMPATIBLE,STRICT"
    assert numerics.native_branch("") in ("AUTO,STRICT", "COMPATIBLE,STRICT"), "AUTO: by the CPU's own branch"
    with pytest.raises(BenchError, match="`cpu_numerics` 'fast': choose native or portable"):
        numerics.pin("fast")


@pytest.mark.parametrize("emulated", ["mkl-avx2", "aten-onednn-avx2"])
def test_pinned_before_the_first_kernel_takes_effect_whatever_the_environment(emulated):
    pinned = python(PROBE.format(before="numerics.pin('portable'); "), EMULATED_CPUS[emulated])
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout) == ["AVX2,STRICT", "AVX2", "portable"], "MKL and ATen on the pinned path"
    native = python(PROBE.format(before=""), {"MKL_CBWR": "SSE4_2"})
    assert json.loads(native.stdout)[::2] == ["SSE4_2", "native"], "the MKL code path is read back as set"


POSITIONS = """
import json, torch
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
moved = []
for m, k, n in [(8, 300, 20), (4, 288, 6), (8, 9, 192)]:
    a, w, bias = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    alone = torch.nn.functional.linear(a, w, bias)[0]
    for p in range(m):  # row 0 moved to slot p among the same batch-mates
        b = a.clone(); b[[0, p]] = b[[p, 0]]
        moved.append([m, p]) if not torch.equal(torch.nn.functional.linear(b, w, bias)[p], alone) else None
print(json.dumps(moved))
"""


@pytest.mark.parametrize("branch", ["AVX2", "SSE4_2"])
def test_native_mode_makes_a_row_independent_of_its_slot(branch):
    """On MKL's AVX2 and SSE4.2 paths a matrix product's rows round otherwise at some slots (the
    AVX2 kernel's 6-row tail; odd rows of a transposed product on SSE4.2, even in strict mode);
    ``native`` (strict, or MKL's compatible path on SSE4.2) computes every row alike."""
    raw = python(POSITIONS, {"MKL_CBWR": branch})
    pinned = python("from bench import numerics; numerics.pin('native')\n" + POSITIONS, {"MKL_CBWR": branch})
    assert raw.returncode == 0 and pinned.returncode == 0, raw.stderr + pinned.stderr
    assert json.loads(raw.stdout), f"MKL_CBWR={branch}: expected slots whose rows round otherwise"
    assert json.loads(pinned.stdout) == [], f"MKL_CBWR={branch},STRICT: a row depends on its slot"


def test_pinned_after_a_kernel_is_refused():
    late = python(
        "import torch; torch.ones(4) @ torch.ones(4); from bench import numerics; numerics.pin('portable'); "
        "numerics.require('portable')"
    )
    assert late.returncode != 0 and "BenchError: portable CPU numerics were asked for" in late.stderr, late.stderr
    assert "call bench.numerics.pin('portable') before any tensor operation" in late.stderr


def test_fingerprint_fields_and_ids():
    fp = numerics.fingerprint("cpu", "fp32", 8, "native")
    for field in ("device", "cpu", "mkl_path", "onednn_path", "aten_path", "torch", "mkl", "precision", "batch"):
        assert fp[field] not in (None, ""), f"the fingerprint records {field}"
    mid = numerics.machine_id(fp)
    assert numerics.machine_id({**fp, "threads": 99}) == mid, "the thread count is informational"
    for field, other in (("batch", 16), ("precision", "bf16"), ("mkl_path", "AVX2"), ("cpu", "AMD EPYC 9654")):
        changed = {**fp, field: other}
        assert numerics.machine_id(changed) != mid, f"{field} decides a row's bits"
        assert numerics.differences(fp, changed) == [f"{field}: {fp[field]} != {other}"], f"{field} named"
    portable = {**fp, "cpu_numerics": "portable"}
    assert numerics.machine_id({**portable, "cpu": "AMD EPYC 9654", "device_name": "AMD EPYC 9654"}) == (
        numerics.machine_id(portable)
    ), "on the pinned path another CPU model computes the same bits"
    assert "B = 8" in numerics.describe(fp) and fp["cpu"] in numerics.describe(fp)


def test_a_resume_on_another_machine_is_refused_unless_accepted(tmp_path):
    path = tmp_path / "r.duckdb"
    config = toy_config(attacks=("mla-u",), sizes=(1,), iterations=3)
    store = ResultStore(path)
    sweep(path, config, batch_size=8, store=store)
    rows = fetch(path, "SELECT * FROM results ORDER BY ALL")
    (machine,) = store.machines(config.run_id, with_rows=True)
    assert {r[0] for r in fetch(path, "SELECT machine FROM results")} == {machine}, "every row names its machine"
    # a stand-in for another machine: another B (part of the fingerprint, as the contract says)
    with duckdb.connect(str(path)) as con:
        con.execute("DELETE FROM results WHERE combo_id = 0")
    with pytest.raises(BenchError, match=r"has rows computed on another machine .*batch: 8 != 4") as refused:
        sweep(path, config, batch_size=4, store=store)
    assert "pass `allow_mixed_numerics` to mix them" in str(refused.value)
    assert len(fetch(path, "SELECT * FROM results")) == len(rows) - 2, "nothing written by the refused resume"
    sweep(path, config, batch_size=4, store=store, allow_mixed_numerics=True)
    machines = fetch(path, "SELECT machine, accepted FROM machines ORDER BY first_used")
    assert machines[0] == (machine, None) and machines[1][0] != machine, "both machines recorded"
    assert machines[1][1].startswith(f"mixed with {machine} (batch: 8 != 4)"), machines[1][1]
    assert fetch(path, "SELECT machine, count(*) FROM results GROUP BY 1 ORDER BY 2") == [
        (machines[1][0], 2),
        (machine, len(rows) - 2),
    ], "the resumed rows name the new machine"
    with store.reader() as con:
        page = build_report(con, config.run_id, {})
    assert page.count("B = 8") == 1 and page.count("B = 4") == 1 and "mixed with" in page, "provenance lists both"


def test_merging_shards_of_two_machines_is_refused_unless_accepted(tmp_path):
    config = toy_config(attacks=("mla-u",), sizes=(1,), iterations=3)
    files = []
    for i, batch in enumerate((8, 4)):
        files.append(shard_db_path(tmp_path / "results.duckdb", i, 2))
        sweep(files[-1], replace(config, shard_index=i, shard_count=2), batch_size=batch)
    merged = ResultStore(tmp_path / "merged.duckdb")
    merged.merge(files[:1])
    with pytest.raises(BenchError, match=r"shard-1-of-2.duckdb: run .* has rows computed on another machine"):
        merged.merge(files[1:])
    assert fetch(merged.path, "SELECT count(DISTINCT machine) FROM results") == [(1,)], "nothing of shard 1 merged"
    merged.merge(files[1:], allow_mixed=True)
    accepted = fetch(merged.path, "SELECT accepted FROM machines WHERE accepted IS NOT NULL")
    assert len(accepted) == 1 and "batch: 8 != 4" in accepted[0][0], accepted


def bench_run(tmp_path, db: str, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    args = ["run", "-d", NAME, "--attack", "mla-lp,gmla", "--size", "1", "--eps", "0.06", "--iterations", "10"]
    args += ["--images-per-combo", "2", "--batch-size", "4", "--preset", "fast", "--db", str(tmp_path / db), *flags]
    launch = "import tests.sweep_fixtures; from bench.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", launch, *args],
        cwd=ROOT,
        env=unpinned_env(OMP_NUM_THREADS="1", COLUMNS="200", **(env or {})),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_portable_rows_are_the_same_under_every_emulated_cpu(tmp_path):
    save_toy_model()
    runs, said = {}, {}
    for emulated in ("mkl-avx2", "mkl-sse4_2", "aten-onednn-avx2"):
        done = bench_run(tmp_path, f"{emulated}.duckdb", "--cpu-numerics", "portable", env=EMULATED_CPUS[emulated])
        assert done.returncode == 0, done.stderr
        runs[emulated], said[emulated] = fetch(tmp_path / f"{emulated}.duckdb", ROW_SQL), done.stdout
        assert "cpu-numerics portable: MKL_CBWR=AVX2,STRICT" in done.stdout, done.stdout
    assert "(overriding MKL_CBWR=SSE4_2)" in said["mkl-sse4_2"], "the run says whose setting it replaced"
    assert "overriding" not in said["aten-onednn-avx2"], "settings equal to the pinned ones are not reported"
    first = next(iter(runs.values()))
    assert first and all(rows == first for rows in runs.values()), "portable rows differ between emulated CPUs"
    (fp,) = fetch(tmp_path / "aten-onednn-avx2.duckdb", "SELECT fingerprint FROM machines")
    fp = json.loads(fp[0])
    assert (fp["mkl_path"], fp["aten_path"], fp["onednn_path"], fp["cpu_numerics"]) == (
        "AVX2,STRICT",
        "AVX2",
        "AVX2",
        "portable",
    )
    native = bench_run(tmp_path, "native.duckdb")
    assert native.returncode == 0, native.stderr
    ids = [fetch(tmp_path / f, "SELECT run_id FROM runs")[0][0] for f in ("native.duckdb", "aten-onednn-avx2.duckdb")]
    assert ids[0] != ids[1], "the mode is part of the run's configuration"
    assert json.loads(fetch(tmp_path / "native.duckdb", "SELECT fingerprint FROM machines")[0][0])["cpu_numerics"] == (
        "native"
    )


def test_the_gpu_check_runs_with_the_cpu_standing_in():
    """``bench perf gpu --device cpu --quick`` on the toy model: every figure of the table, each
    a number that makes sense (a rate > 0, occupancy in (0, 1], agreement in [0, 100])."""
    import re

    from typer.testing import CliRunner

    from bench.cli.apps import app

    save_toy_model()
    result = CliRunner().invoke(
        app, ["perf", "gpu", "--device", "cpu", "--quick", "-d", NAME, "-m", "toy-model"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    out = result.output
    for label in (
        "CPU standing in",
        "demo sweep fp32: wall time, rows, B",
        "demo sweep fp32: occupancy",
        "bf16 vs fp32: largest |Δ| of FR_N, FR_S, NT_R (%)",
        "Auto-PGD: pair·it/s ÷ model fwd+bwd at B",
        "contiguous vs channels_last",
        "resnet18 @ 64 px, B = 4",
    ):
        assert label in out, f"the table has {label!r}: {out}"
    occupancy = [float(x) for x in re.findall(r"(?:Auto-PGD|ML-DP) (\d\.\d\d)", out)]
    assert occupancy and all(0 < x <= 1 for x in occupancy), f"occupancies {occupancy}"
    deltas = re.search(r"NT_R \(%\)\s*│\s*([\d.]+), ([\d.]+), ([\d.]+)", out)
    assert deltas and all(0 <= float(d) <= 100 for d in deltas.groups()), out
    rates = re.findall(r"fwd\+bwd ([\d.]+) images/s; GMLA ([\d.]+) pair·it/s", out)
    assert rates and all(float(r) > 0 for r in rates[0]), out


def test_perf_numerics_runs_each_mode_in_its_own_process():
    from bench.sweep.perf import compare_numerics
    from bench.sweep.presets import SweepOptions

    save_toy_model()
    options = SweepOptions(attacks=("gmla",), sizes=(1,), iterations=3, images_per_combination=2)
    perfs = compare_numerics(NAME, "toy-model", options, batch_size=4, rounds=1)
    assert [p.mode for p in perfs] == ["native", "portable", "unpinned"]
    paths = {p.mode: (p.mkl, p.aten) for p in perfs}
    assert paths["portable"] == ("AVX2,STRICT", "AVX2"), "portable pinned in its process"
    assert paths["native"][0] == numerics.native_branch(""), "native: MKL strict on this CPU's branch"
    assert not paths["unpinned"][0].endswith("STRICT"), "unpinned: MKL's own default"
    assert all(p.work > 0 and p.rate > 0 for p in perfs), perfs


def test_workers_of_two_machines_in_one_sweep_are_refused_before_any_row(tmp_path):
    """A cluster's workers register before their first unit, when no row is stored yet: the
    driver compares each with the others of this sweep (``peers``)."""
    store = ResultStore(tmp_path / "r.duckdb")
    run = store.begin_run(toy_config())
    one = numerics.fingerprint("cpu", "fp32", 8, "native")
    other = {**one, "cpu": "AMD EPYC 9654", "device_name": "AMD EPYC 9654"}
    first = store.use_machine(run, one)
    with pytest.raises(BenchError, match=r"another machine .*cpu: .* != AMD EPYC 9654"):
        store.use_machine(run, other, peers={first: one})
    assert list(store.machines(run)) == [first], "nothing recorded for the refused worker"
    second = store.use_machine(run, other, peers={first: one}, allow_mixed=True)
    assert fetch(tmp_path / "r.duckdb", "SELECT machine, accepted IS NOT NULL FROM machines ORDER BY 2") == [
        (first, False),
        (second, True),
    ]
