"""Sweeps: the paper's protocol (``protocol``), named settings (``presets``), the runner that
packs (combination, image) pairs into batches and writes result rows (``runner``), and the
offline demo pipeline (``demo``).

Example::

    from bench.sweep import get_preset, run_sweep, sweep_config

    config = sweep_config(dataset="stamps", split="test", model=loaded, graph=graph,
                          preset=get_preset("fast"), attacks=["gmla", "mla-u"], eps=[0.03],
                          tau=[-0.85], sizes=[1, 2], images_per_combination=6, combos="all",
                          combinations_per_size=3, include_abstract=False, iterations=40, seed=0)
    outcome = run_sweep(config, model, dataset, graph, ResultStore(path))
"""

from __future__ import annotations

from bench.sweep.inputs import SweepModel, fit_dataset, load_sweep_model, resolve_device
from bench.sweep.presets import PRESETS, Preset, get_preset, preset_names
from bench.sweep.progress import RichSweepProgress, StageTimes, SweepProgress
from bench.sweep.protocol import (
    CleanPredictions,
    PlannedCombination,
    SamplingRules,
    clean_predictions,
    eligible_images,
    plan_combinations,
    sample_combinations,
    shard_of,
)
from bench.sweep.runner import (
    AttackSetting,
    SweepOutcome,
    attack_settings,
    closure_masks,
    run_sweep,
    shard_db_path,
    sweep_config,
)

__all__ = [
    "PRESETS",
    "AttackSetting",
    "CleanPredictions",
    "PlannedCombination",
    "Preset",
    "RichSweepProgress",
    "SamplingRules",
    "StageTimes",
    "SweepModel",
    "SweepOutcome",
    "SweepProgress",
    "attack_settings",
    "clean_predictions",
    "closure_masks",
    "eligible_images",
    "fit_dataset",
    "get_preset",
    "load_sweep_model",
    "plan_combinations",
    "preset_names",
    "resolve_device",
    "run_sweep",
    "sample_combinations",
    "shard_db_path",
    "shard_of",
    "sweep_config",
]
