"""CPU numerics (``bench.numerics``): the portable mode's pinning, checked in fresh processes
against what MKL and ATen report they run; the numerics fingerprint; and the refusals to mix
rows of two machines (resume, merge), each with its recorded opt-in.

The rows of a portable run must be bitwise the same whatever the user's own CPU settings say
(``bench run --cpu-numerics portable`` under several of them gives one set of rows) and whatever
the CPU: every machine's portable rows are compared with the digest committed by the machine
that first computed them (``tests/portable_rows.py``).

Tests whose precondition is what a library does on a particular CPU (MKL taking a named branch,
which it does only on Intel CPUs) read that back first and skip with the reason where it does
not hold."""

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
from bench.numerics import EMULATED_CPUS, PORTABLE_ENV, PORTABLE_PATHS
from bench.sweep.config import shard_db_path
from results.report import build_report
from results.store import ResultStore
from tests import portable_rows
from tests.sweep_fixtures import NAME, save_toy_model
from tests.test_sweep_runner import fetch, sweep, toy_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW_SQL = "SELECT * EXCLUDE (seconds, machine) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
PROBE = (
    "import json, sys; from bench import numerics; {before}"
    "import torch; torch.ones(4) @ torch.ones(4); "
    "print(json.dumps([numerics.library_paths(), numerics.effective_mode()]))"
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
    """``pin`` writes the process environment: give every pinned variable back afterwards, the
    ones that were unset included (a leaked ONEDNN_MAX_CPU_ISA reached the Ray tests' workers,
    which then ran oneDNN on AVX2 while this process runs its own path)."""
    saved = {key: os.environ.get(key) for key in PORTABLE_ENV}
    for key in PORTABLE_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(numerics, "_replaced", {})
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
    replaced = {"MKL_CBWR": "AVX512", "ATEN_CPU_CAPABILITY": "avx2"}
    assert numerics.pin("portable") == replaced, "the user's own settings that were replaced"
    assert {k: os.environ[k] for k in PORTABLE_ENV} == dict(PORTABLE_ENV), "portable overrides the environment"
    assert numerics.replaced_settings() == replaced
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


@pytest.mark.parametrize("emulated", ["mkl-avx2", "aten-onednn-avx2", "onednn-sse41"])
def test_pinned_before_the_first_kernel_takes_effect_whatever_the_environment(emulated):
    """Portable's settings take effect on every x86-64 vendor: read back, whatever the user's."""
    pinned = python(PROBE.format(before="numerics.pin('portable'); "), EMULATED_CPUS[emulated])
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout) == [dict(PORTABLE_PATHS), "portable"], f"{numerics.cpu_name()}: not pinned"
    native = python(PROBE.format(before=""), {"MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"})
    paths, mode = json.loads(native.stdout)
    assert (paths["MKL_CBWR"], paths["ONEDNN_MAX_CPU_ISA"], mode) == ("COMPATIBLE", "SSE41", "native"), (
        "the code paths are read back as set (settings every x86-64 vendor honours)"
    )


POSITIONS = """
import json, torch
from bench import numerics
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
moved = []
for m, k, n in [(8, 300, 20), (4, 288, 6), (8, 9, 192)]:
    a, w, bias = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    alone = torch.nn.functional.linear(a, w, bias)[0]
    for p in range(m):  # row 0 moved to slot p among the same batch-mates
        b = a.clone(); b[[0, p]] = b[[p, 0]]
        moved.append([m, p]) if not torch.equal(torch.nn.functional.linear(b, w, bias)[p], alone) else None
print(json.dumps([numerics.mkl_branch(), moved]))
"""


@pytest.mark.parametrize("branch", ["", "AVX2", "SSE4_2"])
def test_native_mode_makes_a_row_independent_of_its_slot(branch):
    """On MKL's AVX2 and SSE4.2 paths a matrix product's rows round otherwise at some slots (the
    AVX2 kernel's 6-row tail; odd rows of a transposed product on SSE4.2, even in strict mode);
    ``native`` (strict, or MKL's compatible path on SSE4.2) computes every row alike, on those
    paths where MKL takes them (Intel CPUs) and on this CPU's own ("")."""
    env = {"MKL_CBWR": branch} if branch else {}
    raw = python(POSITIONS, env)
    pinned = python("from bench import numerics; numerics.pin('native')\n" + POSITIONS, env)
    assert raw.returncode == 0 and pinned.returncode == 0, raw.stderr + pinned.stderr
    (raw_path, raw_moved), (pinned_path, pinned_moved) = json.loads(raw.stdout), json.loads(pinned.stdout)
    if branch and raw_path != branch:
        pytest.skip(f"MKL ignores MKL_CBWR={branch} on this CPU, {numerics.cpu_name()} (reads back {raw_path})")
    if branch:
        assert raw_moved, f"MKL_CBWR={branch}: expected slots whose rows round otherwise"
    assert pinned_path.endswith(",STRICT"), pinned_path
    assert pinned_moved == [], f"MKL {pinned_path}: a row depends on its slot"


def test_pinned_after_a_kernel_is_refused_with_the_true_reason():
    late = python(
        "import torch; torch.ones(4) @ torch.ones(4); from bench import numerics; numerics.pin('portable'); "
        "numerics.require('portable')"
    )
    assert late.returncode != 0 and "BenchError: portable CPU numerics cannot be kept here: " in late.stderr
    reason = late.stderr.strip().splitlines()[-1]
    assert reason.startswith("bench.errors.BenchError: portable CPU numerics cannot be kept here: MKL runs AUTO, ")
    assert f"ATen runs {numerics.aten_capability()}: torch ran a kernel before bench.numerics.pin('portable') set " in (
        reason
    )
    assert "ignores" not in reason, "a fresh process takes every pinned path: nothing is ignored on this CPU"


def test_a_library_that_ignores_a_setting_is_named_with_the_cpu(monkeypatch, own_environment):
    """Where a fresh process reads back another path too, the library ignores the setting on
    this CPU: the refusal names the library, the setting, what it read back and the CPU."""
    monkeypatch.setattr(numerics, "probe_paths", lambda env: {**PORTABLE_PATHS, "MKL_CBWR": "AUTO,STRICT"})
    for key, value in PORTABLE_ENV.items():
        monkeypatch.setenv(key, value)
    reasons = numerics.why_not_pinned({**PORTABLE_PATHS, "MKL_CBWR": "AUTO,STRICT"})
    assert reasons == [
        f"MKL ignores MKL_CBWR=COMPATIBLE,STRICT on this CPU, {numerics.cpu_name()}: it reads back AUTO,STRICT, "
        "also in a fresh process"
    ]
    assert numerics.cpu_vendor() in reasons[0] and numerics.cpu_isa() in reasons[0]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "SSE41")
    assert numerics.why_not_pinned({**PORTABLE_PATHS, "ONEDNN_MAX_CPU_ISA": "SSE41"}) == [
        "oneDNN runs SSE41: ONEDNN_MAX_CPU_ISA is SSE41 here, not AVX2"
    ]
    assert numerics.why_not_pinned(dict(PORTABLE_PATHS)) == []


def test_emulations_used_take_effect_and_change_bits():
    """The test command's emulated CPUs: each used one reads back what it sets (under the native
    pin), none duplicates another's paths, each unused one says why, and at least two change
    the bits of the probe (whatever this CPU's vendor)."""
    survey = numerics.emulations()
    used = [e for e in survey if e.used]
    for e in used:
        wanted = {k: numerics.native_branch(v) if k == "MKL_CBWR" else v.upper() for k, v in e.settings.items()}
        assert {k: e.paths[k] for k in wanted} == wanted, e
    assert len({json.dumps(e.paths, sort_keys=True) for e in used}) == len(used), "each used one on paths of its own"
    for e in survey:
        assert e.used or e.why.startswith(("MKL ignores", "the same code paths as")), e.line()
    changing = [e.name for e in used if e.changes_bits]
    assert len(changing) >= 2, f"emulations that change bits on {numerics.cpu_name()}: {changing}"
    assert {"mkl-compatible", "aten-default", "onednn-sse41"} <= {e.name for e in used}, "every vendor takes these"


def test_fingerprint_fields_and_ids():
    fp = numerics.row_numerics("cpu", "fp32", 8, "native")
    fields = ("device", "cpu", "cpu_vendor", "cpu_isa", "mkl_path", "onednn_path", "aten_path", "torch", "mkl")
    for field in (*fields, "precision", "batch"):
        assert fp[field] not in (None, ""), f"the fingerprint records {field}"
    mid = numerics.row_numerics_id(fp)
    assert numerics.row_numerics_id({**fp, "threads": 99}) == mid, "the thread count is informational"
    others = (("batch", 16), ("precision", "bf16"), ("mkl_path", "AVX2"), ("cpu", "AMD EPYC 9654"), ("cpu_isa", "AVX2"))
    for field, other in (*others, ("cpu_vendor", "Intel")):
        changed = {**fp, field: other}
        assert numerics.row_numerics_id(changed) != mid, f"{field} decides a row's bits"
        assert numerics.differences(fp, changed) == [f"{field}: {fp[field]} != {other}"], f"{field} named"
    portable = {**fp, "cpu_numerics": "portable"}
    elsewhere = {"cpu": "Intel Xeon", "device_name": "Intel Xeon", "cpu_vendor": "Intel", "cpu_isa": "AVX-512 + AMX"}
    assert numerics.row_numerics_id({**portable, **elsewhere}) == numerics.row_numerics_id(portable), (
        "on the pinned paths another CPU model, vendor or ISA computes the same bits"
    )
    line = numerics.describe(fp)
    assert "B = 8" in line and f"{fp['cpu']}, {fp['cpu_vendor']} {fp['cpu_isa']}" in line, line


def test_the_vendor_isa_and_onednn_path_agree_with_the_cpus_own_report():
    """cpu_isa (from the kernel's flags) against oneDNN's own detection (its verbose header, read
    back in a fresh process with no ceiling), and the vendor against lscpu-style cpuid text."""
    own = python(PROBE.format(before=""), {})
    paths, _ = json.loads(own.stdout)
    onednn = paths["ONEDNN_MAX_CPU_ISA"]
    expected = {"AVX-512 + AMX": "AVX512_CORE_AMX", "AVX-512": "AVX512_CORE", "AVX2": "AVX2", "AVX": "AVX"}
    assert onednn.startswith(expected.get(numerics.cpu_isa(), "SSE41")), (numerics.cpu_isa(), onednn)
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        vendor_line = next(line for line in fh if line.startswith("vendor_id"))
    assert {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}[vendor_line.split(":")[1].strip()] == numerics.cpu_vendor()


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
    args = ["-m", "toy-model", "--attack", "mla-lp,gmla", "--size", "1", "--eps", "0.06", "--iterations", "10"]
    args += ["--images-per-combo", "2", "--batch-size", "4", "--preset", "fast", *flags]
    return portable_rows.bench_run(tmp_path / db, *args, env=env)


def test_portable_rows_are_the_same_whatever_the_users_settings(tmp_path):
    save_toy_model()
    runs, said = {}, {}
    users = {
        "mkl-sse4_2": {"MKL_CBWR": "SSE4_2"},
        "onednn-as-pinned": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
        "aten-onednn-other": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
    }
    for name, env in users.items():
        done = bench_run(tmp_path, f"{name}.duckdb", "--cpu-numerics", "portable", env=env)
        assert done.returncode == 0, done.stderr
        runs[name], said[name] = fetch(tmp_path / f"{name}.duckdb", ROW_SQL), done.stdout
        pinned = " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())
        assert f"cpu-numerics portable: {pinned}" in done.stdout, done.stdout
    assert "(overriding MKL_CBWR=SSE4_2)" in said["mkl-sse4_2"], "the run says whose setting it replaced"
    assert "overriding" not in said["onednn-as-pinned"], "settings equal to the pinned ones are not reported"
    first = next(iter(runs.values()))
    assert first and all(rows == first for rows in runs.values()), "portable rows differ between users' settings"
    (fp,) = fetch(tmp_path / "aten-onednn-other.duckdb", "SELECT fingerprint FROM machines")
    fp = json.loads(fp[0])
    paths = dict(zip(PORTABLE_ENV, (fp["mkl_path"], fp["onednn_path"], fp["aten_path"]), strict=True))
    assert (paths, fp["cpu_numerics"]) == (dict(PORTABLE_PATHS), "portable")
    native = bench_run(tmp_path, "native.duckdb")
    assert native.returncode == 0, native.stderr
    ids = [fetch(tmp_path / f, "SELECT run_id FROM runs")[0][0] for f in ("native.duckdb", "aten-onednn-other.duckdb")]
    assert ids[0] != ids[1], "the mode is part of the run's configuration"
    assert json.loads(fetch(tmp_path / "native.duckdb", "SELECT fingerprint FROM machines")[0][0])["cpu_numerics"] == (
        "native"
    )


def test_portable_rows_equal_the_committed_digest_of_another_machine(tmp_path):
    """The cross-machine proof: this machine's portable rows against the digest that the machine
    named in ``tests/data/portable-rows.json`` computed (``tests/portable_rows.py``)."""
    committed = json.loads(portable_rows.RECORD.read_text(encoding="utf-8"))
    here = portable_rows.portable_sweep(tmp_path / "portable.duckdb")
    other_build = [
        f"{k} {committed['machine'][k]} there, {here['machine'][k]} here"
        for k in portable_rows.VERSIONS
        if committed["machine"][k] != here["machine"][k]
    ]
    if other_build:
        pytest.skip(f"the committed digest is of another build ({'; '.join(other_build)}): rewrite it")
    assert here["run_id"] == committed["run_id"], "the run id (the configuration's hash) changed"
    assert (here["digest"], here["rows"]) == (committed["digest"], committed["rows"]), (
        f"portable rows differ between CPUs: {portable_rows.describe(here)} computed {here['rows']} rows "
        f"{here['digest'][:16]}…, {portable_rows.describe(committed)} computed {committed['rows']} rows "
        f"{committed['digest'][:16]}… (tests/data/portable-rows.json)"
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
    from bench.jobs.sweep_perf import compare_numerics
    from bench.sweep.presets import SweepOptions

    save_toy_model()
    options = SweepOptions(attacks=("gmla",), sizes=(1,), iterations=3, images_per_combination=2)
    perfs = compare_numerics(NAME, "toy-model", options, batch_size=4, rounds=1, probe_batch=2)
    assert [p.mode for p in perfs] == ["native", "portable", "unpinned"]
    paths = {p.mode: (p.mkl, p.onednn, p.aten) for p in perfs}
    assert paths["portable"] == tuple(PORTABLE_PATHS.values()), "portable pinned in its process"
    assert paths["native"][0] == numerics.native_branch(""), "native: MKL strict on this CPU's branch"
    assert not paths["unpinned"][0].endswith("STRICT"), "unpinned: MKL's own default"
    assert all(p.work > 0 and p.rate > 0 and p.probe_rate > 0 for p in perfs), perfs


def test_workers_of_two_machines_in_one_sweep_are_refused_before_any_row(tmp_path):
    """A cluster's workers register before their first unit, when no row is stored yet: the
    driver compares each with the others of this sweep (``peers``)."""
    store = ResultStore(tmp_path / "r.duckdb")
    run = store.begin_run(toy_config())
    one = numerics.row_numerics("cpu", "fp32", 8, "native")
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
