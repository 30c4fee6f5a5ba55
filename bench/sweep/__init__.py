"""Sweeps: from names to a ready sweep (``build``: what every command calls), the paper's
protocol (``planning``: clean predictions, eligible images, the combinations), named settings
(``presets``), the run's configuration (``config``), preparing a run (``prepare``), the pair
queue (``pairs``), the engine's outcomes as result rows (``rows``), one process (``runner``) or
a Ray cluster (``cluster``).

Example::

    from bench.sweep import SweepOptions, build_sweep

    options = SweepOptions(attacks=["gmla", "mla-u"], eps=[0.03], sizes=[1, 2])  # the rest: the preset's
    sweep = build_sweep("stamps", preset="fast", options=options, db="results.duckdb")
    outcome = sweep.run()

or, with a model and dataset of your own in hand (``bench.benchmark`` does this for any
``nn.Module``): ``run_sweep(sweep_config(...), model, dataset, graph, ResultStore(path))``.
"""

from __future__ import annotations

from bench.devices import resolve_device
from bench.sweep.build import Inputs, RayCluster, Sweep, build_sweep, load_inputs
from bench.sweep.config import AttackSetting, attack_settings, shard_db_path, sweep_config
from bench.sweep.inputs import SweepModel, fit_dataset, load_sweep_model
from bench.sweep.planning import (
    CleanPredictions,
    PlannedCombination,
    SamplingRules,
    clean_predictions,
    eligible_images,
    plan_combinations,
    sample_combinations,
    shard_of,
)
from bench.sweep.prepare import SweepOutcome, SweepRequest
from bench.sweep.presets import PRESETS, Preset, SweepOptions, get_preset, preset_names
from bench.sweep.progress import RichSweepProgress, StageTimes, SweepProgress
from bench.sweep.runner import run_sweep
from kg.stores.closures import closure_masks

__all__ = [
    "PRESETS",
    "AttackSetting",
    "CleanPredictions",
    "Inputs",
    "PlannedCombination",
    "Preset",
    "RayCluster",
    "RichSweepProgress",
    "SamplingRules",
    "StageTimes",
    "Sweep",
    "SweepModel",
    "SweepOutcome",
    "SweepProgress",
    "SweepRequest",
    "attack_settings",
    "build_sweep",
    "clean_predictions",
    "closure_masks",
    "eligible_images",
    "fit_dataset",
    "get_preset",
    "load_inputs",
    "load_sweep_model",
    "plan_combinations",
    "preset_names",
    "resolve_device",
    "run_sweep",
    "sample_combinations",
    "shard_db_path",
    "shard_of",
    "sweep_config",
    "SweepOptions",
]
