"""``bench perf sweep``: how much of a sweep's wall time the model's forward/backward takes,
and how much the sweep machinery around it (targets, metrics, DB writes, image loading,
planning, the attack's own arithmetic).

The model is wrapped in ``TimedModel``: each forward call is timed, and each backward pass
through it is timed from the moment its output's gradient exists (a hook on the output) to
the moment the input's gradient exists (a hook on the input). The sweep's stages are timed
as usual with the model's time inside each stage taken out, so the shares add up to 100 %.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.sweep.progress import StageTimes

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
class SweepPerf:
    """Seconds per stage (model time separate), their total, and the DuckDB write rate."""

    stages: list[tuple[str, float]]
    seconds: float
    model_share: float
    rows: int
    writes: int
    rows_per_second: float
    device: str


def measure_sweep(
    *,
    dataset: str,
    model: str | None,
    attacks: Sequence[str],
    sizes: Sequence[int],
    images_per_combination: int,
    combinations_per_size: int,
    iterations: int,
    eps: float,
    batch_size: int | None,
    device: str,
) -> SweepPerf:
    """Run a small sweep (``fast`` preset otherwise) into a temporary database and time it."""
    from bench.datasets import create_dataset
    from bench.sweep.inputs import fit_dataset, load_sweep_model, resolve_device
    from bench.sweep.presets import FAST
    from bench.sweep.runner import run_sweep, sweep_config
    from results.store import ResultStore

    dev = resolve_device(device)
    loaded = load_sweep_model(dataset, model, dev)
    net, data, graph = fit_dataset(loaded, create_dataset(dataset, "test", image_size=loaded.image_size))
    timed = TimedModel(net, sync=dev.type == "cuda")
    config = sweep_config(
        dataset=dataset, split="test", model=loaded, graph=graph, preset=FAST, attacks=attacks, eps=(eps,),
        tau=FAST.tau, sizes=sizes, images_per_combination=images_per_combination, combos="all",
        combinations_per_size=combinations_per_size, include_abstract=False, iterations=iterations, seed=0,
        name="perf", device=str(dev),
    )  # fmt: skip
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
    return SweepPerf(
        stages=stages, seconds=wall, model_share=times.get(MODEL_STAGE, 0.0) / wall, rows=outcome.written,
        writes=times.calls.get("writing rows", 0), rows_per_second=outcome.written / write_s if write_s else 0.0,
        device=str(dev),
    )  # fmt: skip
