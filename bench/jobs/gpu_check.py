"""``bench perf gpu``: everything a GPU must show, in one command and one table.

1. the CUDA tests (``tests/test_cuda.py``, from a checkout) on the device;
2. the demo's sweep (the ``fast`` preset, every attack, |Ω| = 1–3) on the device: wall time,
   rows, the engine's occupancy per attack family;
3. the same sweep under ``--precision bf16``: the largest difference of FR_N, FR_S and NT_R
   (per attack and |Ω|) from fp32;
4. ``bench perf sweep``'s ratio: a GMLA + MLA-U sweep's pair·iterations/s ÷ the model's own
   forward+backward rate at B;
5. the model's forward+backward rate at B in contiguous vs channels_last memory layout;
6. a paper-size model (TResNet-M at 224 px, B = 64): its forward+backward images/s and GMLA's
   pair·iterations/s on it.

With ``--device cpu`` the CPU stands in for the GPU (the test suite runs it that way with
``quick``: a small sweep, resnet18 at 64 px instead of TResNet-M).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from rich.console import Console

from bench import numerics
from bench.attacks.perf import measure_attack_perf
from bench.jobs.demo import DATASET, demo_model
from bench.jobs.sweep_perf import measure_sweep, model_seconds
from bench.sweep.build import Inputs, load_inputs
from bench.sweep.config import sweep_config
from bench.sweep.presets import FAST, SweepOptions
from bench.sweep.runner import run_sweep
from results.store import ResultStore

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class GpuCheck:
    """What to run: the model under attack and the sizes of the figures."""

    dataset: str = "stamps"
    model: str | None = None  # default: the demo model (trained first if there is none)
    paper_arch: str = "tresnet_m"
    paper_image_size: int = 224
    paper_batch: int = 64
    sweep: SweepOptions = SweepOptions()  # the demo's: the fast preset's values
    rate_sweep: SweepOptions = SweepOptions(attacks=("gmla", "mla-u"), sizes=(1,), images_per_combination=4)
    cuda_tests: bool = True

    @classmethod
    def quick(cls, dataset: str = "stamps", model: str | None = None) -> GpuCheck:
        """Small enough for a CPU standing in: one size, few images, resnet18 at 64 px."""
        small = SweepOptions(attacks=("gmla", "mla-u", "ml-dp"), sizes=(1,), images_per_combination=2, iterations=5)
        return cls(dataset, model, "resnet18", 64, 4, small, replace(small, attacks=("gmla", "mla-u")), False)


def run_gpu_check(
    check: GpuCheck, device: torch.device, report: Callable[[str], None] = lambda text: None
) -> list[tuple[str, str]]:
    """Run every check on ``device``; returns the table's (what, figure) rows."""
    rows: list[tuple[str, str]] = [("device", _device_name(device))]
    if check.cuda_tests:
        report("CUDA tests")
        rows.append(("CUDA tests (tests/test_cuda.py)", _cuda_tests(device)))
    inputs = _inputs(check, device, report)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-check-") as tmp:
        fp32 = _sweep(check, "fp32", inputs, device, Path(tmp), report)
        bf16 = _sweep(check, "bf16", inputs, device, Path(tmp), report)
    rows.append(("demo sweep fp32: wall time, rows, B", f"{fp32.seconds:.1f} s, {fp32.written} rows, B = {fp32.batch}"))
    rows.append(("demo sweep fp32: occupancy", fp32.occupancy))
    rows.append(("demo sweep bf16: wall time", f"{bf16.seconds:.1f} s ({fp32.seconds / bf16.seconds:.2f}× fp32)"))
    rows.append(("bf16 vs fp32: largest |Δ| of FR_N, FR_S, NT_R (%)", _agreement(fp32.rates, bf16.rates)))
    report("sweep rate vs the model's own")
    perf = measure_sweep(check.dataset, check.model or inputs.model.path, check.rate_sweep, device=str(device))
    rows += [(f"{f.name}: pair·it/s ÷ model fwd+bwd at B = {f.batch}", f"{f.rate_ratio:.2f}") for f in perf.families]
    report("channels_last")
    shape = tuple(inputs.data[0][0].shape)
    batch = fp32.batch
    contiguous = batch / model_seconds(inputs.net, shape, batch, 1, device)
    last = batch / model_seconds(_channels_last(inputs.net), shape, batch, 1, device, channels_last=True)
    rows.append(
        (
            f"model fwd+bwd at B = {batch}: contiguous vs channels_last (images/s)",
            f"{contiguous:.0f} vs {last:.0f} ({last / contiguous:.2f}×)",
        )
    )
    report(f"{check.paper_arch} at {check.paper_image_size} px")
    paper = measure_attack_perf(
        "gmla",
        check.paper_arch,
        check.paper_image_size,
        labels=inputs.graph.n,
        batch=check.paper_batch,
        steps=3,
        single_pairs=1,
        repeats=1,
        device=str(device),
    )
    rows.append(
        (
            f"{check.paper_arch} @ {check.paper_image_size} px, B = {check.paper_batch}",
            f"fwd+bwd {paper.model_rate:.1f} images/s; GMLA {paper.batched_rate:.1f} pair·it/s "
            f"({paper.vs_input:.2f}× the input-gradient rate)",
        )
    )
    return rows


@dataclass
class _SweepFigures:
    seconds: float
    written: int
    batch: int
    occupancy: str
    rates: dict[tuple, tuple[float, float, float]]


def _inputs(check: GpuCheck, device: torch.device, report: Callable[[str], None]) -> Inputs:

    model = check.model
    if model is None and check.dataset == DATASET:
        report("demo model")
        model = str(demo_model(device, Console(quiet=True))[0])
    return load_inputs(check.dataset, model, device=device)


def _sweep(check, precision, inputs: Inputs, device, tmp: Path, report) -> _SweepFigures:
    report(f"demo sweep ({precision})")
    options = replace(check.sweep, precision=precision)
    config = sweep_config(
        check.dataset, inputs.model, inputs.graph, FAST, options, name=f"gpu-{precision}", device=str(device)
    )
    store = ResultStore(tmp / "gpu.duckdb")
    start = time.perf_counter()
    outcome = run_sweep(config, inputs.net, inputs.data, inputs.graph, store, device=device)
    seconds = time.perf_counter() - start
    with store.reader() as con:
        rates = con.execute(
            "SELECT attack, size, fr_n_mean, fr_s_mean, nt_r_mean FROM rate_summary WHERE run_id = ?", [config.run_id]
        ).fetchall()
    occupancy = ", ".join(f"{n} {s.occupancy:.2f}" for n, s in outcome.slot_use.items() if s.ticks)
    return _SweepFigures(seconds, outcome.written, outcome.batch_size, occupancy, {r[:2]: r[2:] for r in rates})


def _agreement(a: dict, b: dict) -> str:
    if set(a) != set(b):
        return "the two sweeps cover other (attack, |Ω|)"
    worst = [max(abs((a[k][i] or 0) - (b[k][i] or 0)) for k in a) for i in range(3)]  # FR_N, FR_S, NT_R
    return ", ".join(f"{w:.1f}" for w in worst)


def _channels_last(net):
    return copy.deepcopy(net).to(memory_format=torch.channels_last)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU standing in: {numerics.cpu_model()}, {torch.get_num_threads()} threads"


def _cuda_tests(device: torch.device) -> str:
    tests = ROOT / "tests" / "test_cuda.py"
    if not tests.exists():
        return "not run: tests/test_cuda.py is in a checkout of the repository, not in the package"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=ROOT,
        env={**os.environ, "BENCH_TEST_DEVICE": str(device)},
        capture_output=True,
        text=True,
    )
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return f"{'passed' if done.returncode == 0 else 'FAILED'}: {last}"
