"""Run ids are the configuration's hash: a refactoring that changes how a configuration is
built or written changes every stored run's id (a finished run would no longer resume). The ids
of a spread of configurations, built by ``sweep_config`` from a preset and options as the
commands build them, pinned to the values the code computed when they were written."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from bench.sweep import SweepModel, SweepOptions, get_preset, sweep_config
from kg.catalog import load_graph

PINNED = Path(__file__).parent / "data" / "run-ids.json"

MODEL = SweepModel(
    nn.Identity(), "demo", {"arch": "resnet18", "graph": "stamps", "image_size": 64}, "models/demo/model.pt", 64
)

VARIANTS: dict[str, dict] = {
    "paper-defaults": {},
    "fast-preset": {"preset": "fast"},
    "options": {
        "options": SweepOptions(
            attacks=("gmla", "mla-u"),
            eps=(0.01, 0.03),
            tau=(-0.5,),
            sizes=(1, 2),
            images_per_combination=4,
            combinations_per_size=3,
            iterations=20,
            steps={"mla-lp": 2},
            seed=7,
            split="train",
        )
    },
    "official-bf16-portable": {
        "options": SweepOptions(closure="official", precision="bf16", cpu_numerics="portable", include_abstract=True)
    },
    "sampled": {"options": SweepOptions(combos="sampled")},
    "named-shard": {"name": "mine", "shard": (1, 4), "device": "cuda"},
    "data-defense-eot": {
        "data": {"images": 3, "sha256": "ab" * 32},
        "defense": {"name": "smoothing", "sigma": 0.25, "samples": 8},
        "eot": 4,
    },
}


def build(variant: dict) -> str:
    """``run_id config_hash`` of a variant (a named run's id is its name: the hash still counts)."""
    preset = get_preset(variant.get("preset", "paper"))
    rest = {k: v for k, v in variant.items() if k not in ("preset", "options")}
    config = sweep_config("stamps", MODEL, load_graph("stamps"), preset, variant.get("options"), **rest)
    return f"{config.run_id} {config.config_hash}"


def test_run_ids_are_those_the_code_computed_when_pinned():
    pinned = json.loads(PINNED.read_text(encoding="utf-8"))
    assert sorted(pinned) == sorted(VARIANTS), "pin every variant (python -m tests.test_run_ids)"
    now = {k: build(v) for k, v in VARIANTS.items()}
    changed = {k: (pinned[k], now[k]) for k in VARIANTS if now[k] != pinned[k]}
    assert not changed, f"run ids changed (pinned, now): {changed}"
    assert len(set(now.values())) == len(now), "two variants share a configuration hash"


if __name__ == "__main__":
    PINNED.write_text(json.dumps({k: build(v) for k, v in VARIANTS.items()}, indent=2) + "\n", encoding="utf-8")
