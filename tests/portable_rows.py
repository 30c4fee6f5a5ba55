"""The cross-machine proof of ``--cpu-numerics portable``: one small portable sweep whose rows
every x86-64 machine must compute alike, and the committed record of the machine that first
computed them (``tests/data/portable-rows.json``: the rows' digest, the run id, that machine's CPU,
flags and library versions). ``tests/test_numerics.py`` compares each machine's rows with it.

The sweep: the toy fixture's model with a convolution (MKL, oneDNN and ATen all compute),
every attack family (Auto-PGD, ML-DP, MLA-LP), all seven attacks, a fixed seed, one thread.

    python -m tests.portable_rows     # rewrite the record on this machine

Rewrite it only when the rows change on purpose (an attack, a metric, the fixture), and say in
the commit which CPU wrote it: the next machine of another vendor is the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

from bench.numerics import PORTABLE_ENV

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "tests" / "data" / "portable-rows.json"
MODEL = "toy-conv"
SWEEP = ["--attack", "all", "--size", "1,2", "--eps", "0.06", "--iterations", "10", "--images-per-combo", "2"]
SWEEP += ["--batch-size", "4", "--preset", "fast", "--seed", "3", "--cpu-numerics", "portable"]
# The columns a row's bits decide: not its wall time, machine or run id (the configuration's hash).
# ``detected`` is NULL without a defense (the record predates the column).
ROWS_SQL = (
    "SELECT * EXCLUDE (run_id, seconds, machine, detected) FROM results ORDER BY combo_id, image_id, attack, eps, tau"
)
# What the record keeps of the machine (the fingerprint's fields).
VERSIONS = ("torch", "mkl", "onednn")
MACHINE = ("cpu", "cpu_vendor", "cpu_isa", "cpu_flags", "mkl_path", "onednn_path", "aten_path", *VERSIONS)


def bench_run(db: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``bench run`` on the toy fixture in a fresh process, one thread, without the CPU-numerics
    settings of this environment (plus ``env``)."""
    launch = "import tests.sweep_fixtures; from bench.cli import main; main()"
    base = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    return subprocess.run(
        [sys.executable, "-c", launch, "run", "-d", "sweep-toy", "--db", str(db), *args],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def digest(db: Path) -> tuple[str, int]:
    """The sha256 of a results file's rows (``ROWS_SQL``, as JSON) and their number."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(ROWS_SQL).fetchall()
    return hashlib.sha256(json.dumps(rows, default=repr).encode()).hexdigest(), len(rows)


def run_id(db: Path) -> str:
    """The results file's one run id (the configuration's hash: pinned with the rows)."""
    with duckdb.connect(str(db), read_only=True) as con:
        (rid,) = con.execute("SELECT run_id FROM runs").fetchone()
    return rid


def machine(db: Path) -> dict[str, str]:
    """The record's fields of the machine that computed a results file's rows."""
    with duckdb.connect(str(db), read_only=True) as con:
        (fp,) = con.execute("SELECT fingerprint FROM machines").fetchone()
    return {k: json.loads(fp).get(k, "") for k in MACHINE}


def portable_sweep(db: Path) -> dict:
    """Run the sweep into ``db``, with a data folder of its own beside it (the model is saved
    there, out of other tests' way); the record it makes (digest, rows, machine)."""
    from tests.sweep_fixtures import CONV, save_toy_model

    data, old = db.parent / "portable-data", os.environ.get("BENCH_DATA")
    os.environ["BENCH_DATA"] = str(data)
    try:
        save_toy_model(MODEL, CONV)
    finally:
        if old is None:
            del os.environ["BENCH_DATA"]
        else:
            os.environ["BENCH_DATA"] = old
    done = bench_run(db, "-m", MODEL, *SWEEP, env={"BENCH_DATA": str(data)})
    if done.returncode != 0:
        raise RuntimeError(f"the portable sweep failed: {done.stderr.strip() or done.stdout.strip()}")
    rows_digest, rows = digest(db)
    return {"digest": rows_digest, "rows": rows, "run_id": run_id(db), "machine": machine(db)}


def describe(record: dict) -> str:
    m = record["machine"]
    return f"{m['cpu']} ({m['cpu_vendor']}, {m['cpu_isa']}; flags {m['cpu_flags'] or 'none'})"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        record = portable_sweep(Path(tmp) / "portable.duckdb")
    record["sweep"] = " ".join(["bench run -d sweep-toy -m", MODEL, *SWEEP])
    RECORD.parent.mkdir(exist_ok=True)
    RECORD.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"{RECORD.relative_to(ROOT)}: {record['rows']} rows, {record['digest'][:16]}…, on {describe(record)}")


if __name__ == "__main__":
    main()
