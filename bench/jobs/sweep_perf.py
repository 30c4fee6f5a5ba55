"""``bench perf sweep``: how much of a sweep's wall time the model's forward/backward takes,
and how much the sweep machinery around it (targets, metrics, DB writes, image loading,
planning, the attack's own arithmetic).

The model is wrapped in ``TimedModel``: each forward call is timed, and each backward pass
through it is timed from the moment its output's gradient exists (a hook on the output) to
the moment the input's gradient exists (a hook on the input). The sweep's stages are timed
as usual with the model's time inside each stage taken out, so the shares add up to 100 %.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks.ops import frozen
from bench.devices import resolve_device
from bench.errors import BenchError
from bench.numerics import PORTABLE_ENV
from bench.plugins import plugin_modules
from bench.registry import child_process_env
from bench.sweep.build import load_inputs
from bench.sweep.config import sweep_config
from bench.sweep.presets import FAST, SweepOptions
from bench.sweep.progress import StageTimes
from bench.sweep.runner import run_sweep
from results.store import ResultStore

MODEL_STAGE = "model forward + backward"


class TimedModel(nn.Module):
    """``model`` with the wall time of its forward calls and backward passes added up."""

    def __init__(self, model: nn.Module, sync: bool = False) -> None:
        super().__init__()
        self.model = model
        self.sync = sync
        self.seconds = 0.0
        self._backward_from: float | None = None

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    def forward(self, images: Tensor) -> Tensor:
        start = self._now()
        out = self.model(images)
        self.seconds += self._now() - start
        if torch.is_grad_enabled() and out.requires_grad and images.requires_grad:
            out.register_hook(self._backward_starts)
            images.register_hook(self._backward_ends)
        return out

    def _backward_starts(self, grad: Tensor) -> None:
        self._backward_from = self._now()

    def _backward_ends(self, grad: Tensor) -> None:
        if self._backward_from is not None:
            self.seconds += self._now() - self._backward_from
            self._backward_from = None


class StageTimesWithoutModel(StageTimes):
    """Stage times with the model's own time inside each stage left out (it goes to ``MODEL_STAGE``)."""

    def __init__(self, model: TimedModel) -> None:
        super().__init__()
        self.model = model
        self.calls: dict[str, int] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        before, start = self.model.seconds, time.perf_counter()
        try:
            yield
        finally:
            inside = self.model.seconds - before
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - start - inside
            self[MODEL_STAGE] = self.get(MODEL_STAGE, 0.0) + inside
            self.calls[stage] = self.calls.get(stage, 0) + 1


@dataclass
class FamilyPerf:
    """One attack family's slot use and speed against the model's own.

    ``rate_ratio`` = the family's pair·iterations/s over its wall time (metrics and writes
    included) ÷ the model's forward + backward rate at B with the same input gradients per
    iteration (``model_seconds[k]``: one forward and k input gradients on B images).
    """

    name: str
    batch: int
    ticks: int
    live: int
    occupancy: float
    seconds: float
    model_seconds: dict[int, float]
    gradient_ticks: dict[int, int]

    @property
    def pair_iterations_per_second(self) -> float:
        return self.live / self.seconds if self.seconds else 0.0

    @property
    def model_rate(self) -> float:
        """Pair·iterations/s of the bare model at B with every slot live (weighted by the ticks' gradients)."""
        busy = sum(n * self.model_seconds[k] for k, n in self.gradient_ticks.items())
        return self.batch * self.ticks / busy if busy else 0.0

    @property
    def rate_ratio(self) -> float:
        return self.pair_iterations_per_second / self.model_rate if self.model_rate else 0.0


@dataclass
class SweepPerf:
    """Seconds per stage (model time separate), their total, the DuckDB write rate, and each
    attack family's slot use and speed against the model's own."""

    stages: list[tuple[str, float]]
    seconds: float
    model_share: float
    rows: int
    writes: int
    rows_per_second: float
    device: str
    families: list[FamilyPerf]


def model_seconds(
    model: nn.Module,
    image_shape: tuple[int, ...],
    batch: int,
    gradients: int,
    device: torch.device,
    repeats: int = 3,
    channels_last: bool = False,
) -> float:
    """Best-of-``repeats`` seconds of one forward and ``gradients`` input gradients on ``batch``
    images (in channels_last memory layout when asked)."""

    x = torch.rand(batch, *image_shape, device=device, dtype=next(model.parameters()).dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    best = float("inf")
    with frozen(model):
        for round_ in range(repeats + 1):  # round 0 warms up
            start = time.perf_counter()
            xg = x.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(xg)
                ell = F.binary_cross_entropy_with_logits(logits, (logits > 0).to(logits.dtype), reduction="none")
                for k in range(gradients):
                    torch.autograd.grad(ell[:, k % ell.shape[1]].sum(), xg, retain_graph=k < gradients - 1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:
                best = min(best, time.perf_counter() - start)
    return best


def measure_sweep(
    dataset: str, model: str | None, options: SweepOptions, batch_size: int | None = None, device: str = "auto"
) -> SweepPerf:
    """Run a small sweep (``options``, the ``fast`` preset for the rest, every combination)
    into a temporary database and time it."""
    dev = resolve_device(device)
    inputs = load_inputs(dataset, model, device=dev)
    net, data, graph = inputs.net, inputs.data, inputs.graph
    timed = TimedModel(net, sync=dev.type == "cuda")
    options = replace(options, combos="all")
    config = sweep_config(dataset, inputs.model, graph, FAST, options, name="perf", device=str(dev))
    import torchmetrics.functional.image  # noqa: F401  (a one-time import of seconds: keep it out of the figures)

    times = StageTimesWithoutModel(timed)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp) / "perf.duckdb")
        start = time.perf_counter()
        outcome = run_sweep(config, timed, data, graph, store, device=dev, batch_size=batch_size, times=times)
        wall = time.perf_counter() - start
    stages = sorted(((k, v) for k, v in times.items()), key=lambda kv: -kv[1])
    other = wall - sum(v for _, v in stages)
    stages.append(("other (progress display, loops)", max(other, 0.0)))
    write_s = times.get("writing rows", 0.0)
    shape = tuple(data[0][0].shape)
    families = [
        FamilyPerf(
            name,
            st.batch,
            st.ticks,
            st.live,
            st.occupancy,
            st.seconds,
            {k: model_seconds(net, shape, st.batch, k, dev) for k in st.gradient_ticks},
            dict(st.gradient_ticks),
        )
        for name, st in outcome.slot_use.items()
    ]
    return SweepPerf(
        stages=stages,
        seconds=wall,
        model_share=times.get(MODEL_STAGE, 0.0) / wall,
        rows=outcome.written,
        writes=times.calls.get("writing rows", 0),
        rows_per_second=outcome.written / write_s if write_s else 0.0,
        device=str(dev),
        families=families,
    )


# ---------------------------------------------------------------------- bench perf numerics
PROBE_BATCH = 32  # the model-bound probe: resnet18 at 64 px, forward + one input gradient at B = 32
_NUMERICS_CHILD = """
import json, sys
from bench import numerics
mode, args = sys.argv[1], json.loads(sys.argv[2])
if mode != "unpinned":
    numerics.pin(mode)
import importlib
for module in args["plugins"]:  # the parent's own datasets and models, registered on import
    importlib.import_module(module)
import warnings
warnings.simplefilter("ignore", RuntimeWarning)  # unpinned: MKL not strict, on purpose
from bench.jobs.sweep_perf import measure_sweep
from bench.sweep.presets import SweepOptions
options = SweepOptions(**args["options"], cpu_numerics="native" if mode == "unpinned" else mode)
r = measure_sweep(args["dataset"], args["model"], options, args["batch"], "cpu")
import timm, torch
from bench.jobs.sweep_perf import model_seconds
net = timm.create_model("resnet18", pretrained=False, num_classes=20).eval()  # model-bound: random weights
probe = model_seconds(net, (3, 64, 64), args["probe_batch"], 1, torch.device("cpu"))
paths = {"mkl": numerics.mkl_branch(), "onednn": numerics.onednn_isa(), "aten": numerics.aten_capability()}
print(json.dumps({"seconds": r.seconds, "work": sum(f.live for f in r.families), "probe": probe, **paths}))
"""

NUMERICS_MODES = ("native", "portable", "unpinned")


@dataclass
class NumericsPerf:
    """One CPU-numerics mode's best round: pair·iterations per second of the whole sweep, and
    images per second of the model-bound probe (resnet18 at 64 px, forward + input gradient)."""

    mode: str
    mkl: str
    onednn: str
    aten: str
    seconds: float
    work: int
    probe_seconds: float
    probe_batch: int = PROBE_BATCH

    @property
    def rate(self) -> float:
        return self.work / self.seconds if self.seconds else 0.0

    @property
    def probe_rate(self) -> float:
        return self.probe_batch / self.probe_seconds if self.probe_seconds else 0.0


def compare_numerics(
    dataset: str,
    model: str | None,
    options: SweepOptions,
    batch_size: int | None = None,
    rounds: int = 2,
    probe_batch: int = PROBE_BATCH,
) -> list[NumericsPerf]:
    """The same small sweep on the CPU in a fresh process per mode (the modes are fixed when
    torch starts), modes interleaved for ``rounds`` rounds; each keeps its fastest round, and
    the fastest of the model-bound probe.
    ``unpinned`` is MKL's own default (not strict), the baseline before ``native`` pinned it."""

    args: dict[str, Any] = {"dataset": dataset, "model": model, "batch": batch_size, "plugins": plugin_modules()}
    args["probe_batch"] = probe_batch
    args["options"] = {k: v for k, v in asdict(options).items() if k != "cpu_numerics"}
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}  # each child pins its own
    env.update(child_process_env())
    best: dict[str, NumericsPerf] = {}
    for _ in range(rounds):
        for mode in NUMERICS_MODES:
            done = subprocess.run(
                [sys.executable, "-c", _NUMERICS_CHILD, mode, json.dumps(args)], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise BenchError(f"the {mode} sweep failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            paths = (r["mkl"], r["onednn"], r["aten"])
            perf = NumericsPerf(mode, *paths, r["seconds"], r["work"], r["probe"], probe_batch)
            kept = best.setdefault(mode, perf)  # each figure its best round
            if perf.rate > kept.rate:
                kept.seconds, kept.work = perf.seconds, perf.work
            kept.probe_seconds = min(kept.probe_seconds, perf.probe_seconds)
    return [best[m] for m in NUMERICS_MODES]
