"""How fast the store writes result rows (``bench perf db``): rows per second by batch size,
as ratios to DuckDB's row-at-a-time inserts measured in the same run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from results.schema import Combination, ResultRow, RunConfig
from results.store import ResultStore

BATCHES = (1, 100, 1000, 10000)
COMBO_IMAGES = 50
Progress = Callable[[Sequence, str], Iterable]


@dataclass(frozen=True)
class Measurement:
    label: str
    batch: int
    rows: int
    rate: float
    ratio: float = 1.0


def synthetic_rows(n: int, offset: int = 0) -> list[ResultRow]:
    """``n`` plausible rows, ``COMBO_IMAGES`` images per combination."""
    out = []
    for i in range(offset, offset + n):
        ok = i % 3 != 0
        out.append(
            ResultRow(
                combo_id=i // COMBO_IMAGES,
                image_id=f"img{i:07d}",
                attack="gmla",
                eps=0.01,
                tau=-0.85,
                success=ok,
                consistent=ok and i % 5 != 0,
                ntr_share=0.02 if ok else 0.0,
                success_iteration=37,
                linf=0.01,
                l2=1.3,
                seconds=0.25,
                ssim=0.97 if ok else None,
            )
        )
    return out


# the columns _row_at_a_time fills, in its values' order
COLUMNS = (
    "run_id combo_id image_id attack eps tau success consistent ntr_share ssim rmsd success_iteration linf l2 seconds"
)


def _row_at_a_time(path: Path, rows: list[ResultRow]) -> float:
    """Reference: one INSERT per row (``executemany``), one transaction."""
    values = [
        (
            "perf",
            r.combo_id,
            r.image_id,
            r.attack,
            r.eps,
            r.tau,
            r.success,
            r.consistent,
            r.ntr_share,
            r.ssim,
            r.rmsd,
            r.success_iteration,
            r.linf,
            r.l2,
            r.seconds,
        )
        for r in rows
    ]
    con = duckdb.connect(str(path))
    try:
        start = time.perf_counter()
        con.execute("BEGIN TRANSACTION")
        con.executemany(
            f"INSERT INTO results ({COLUMNS.replace(' ', ', ')}) VALUES ({', '.join('?' * len(values[0]))}) "
            "ON CONFLICT DO NOTHING",
            values,
        )
        con.execute("COMMIT")
        return len(rows) / (time.perf_counter() - start)
    finally:
        con.close()


def measure_writes(rows: int = 20000, progress: Progress = lambda items, text: items) -> list[Measurement]:
    """Write ``rows`` synthetic rows per batch size up to ``rows`` (at most 50 batches each)."""
    with tempfile.TemporaryDirectory(prefix="bench-perf-db-") as tmp:
        store = ResultStore(Path(tmp) / "perf.duckdb")
        run = store.begin_run(
            RunConfig(
                dataset="perf",
                model_name="none",
                graph_name="none",
                graph_sha256="",
                attacks=("gmla",),
                eps=(0.01,),
                tau=(-0.85,),
                sizes=(2,),
                images_per_combination=COMBO_IMAGES,
                iterations=300,
                seed=0,
                name="perf",
            )
        )
        plan = [(b, min(rows, 50 * b)) for b in BATCHES if b <= rows]
        total = sum(n for _, n in plan) + rows
        n_combos = total // COMBO_IMAGES + 1
        store.write_combinations(run, [Combination(c, ("a", "b"), COMBO_IMAGES, COMBO_IMAGES) for c in range(n_combos)])
        base_rows = synthetic_rows(min(rows, 2000))
        baseline = _row_at_a_time(store.path, base_rows)
        out = [Measurement("row at a time (executemany)", 1, len(base_rows), baseline)]
        offset = len(base_rows)
        for batch, n in progress(plan, "writing batches"):
            data = synthetic_rows(n, offset)
            offset += n
            start = time.perf_counter()
            for i in range(0, n, batch):
                store.write_rows(run, data[i : i + batch])
            rate = n / (time.perf_counter() - start)
            out.append(Measurement("ResultStore.write_rows", batch, n, rate, rate / baseline))
        start = time.perf_counter()
        for i in range(0, n, batch):
            store.write_rows(run, data[i : i + batch])
        rate = n / (time.perf_counter() - start)
        out.append(Measurement("same rows again (skipped)", batch, n, rate, rate / baseline))
    return out
