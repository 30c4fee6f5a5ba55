"""Constructed result rows for the results tests: random but valid runs, combinations and rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from results.schema import Combination, ResultRow, RunConfig
from results.store import ResultStore


def config(dataset: str = "voc", model: str = "asl", **over) -> RunConfig:
    base = dict(
        dataset=dataset,
        model_name=model,
        graph_name=dataset,
        graph_sha256="0" * 64,
        attacks=("mla-u", "gmla"),
        eps=(0.01,),
        tau=(-0.85,),
        sizes=(2, 3),
        images_per_combination=6,
        iterations=300,
        seed=0,
        model_card={"model": model, "labels": ["a", "b", "c"]},
    )
    base.update(over)
    return RunConfig(**base)


@dataclass
class Sweep:
    """What a fake sweep wrote: the config, its combinations and its rows."""

    config: RunConfig
    combinations: list[Combination] = field(default_factory=list)
    rows: list[ResultRow] = field(default_factory=list)


def fake_sweep(cfg: RunConfig, seed: int = 0, combos_per_size: int = 4) -> Sweep:
    """Random rows for every (combination, attack, ε, τ); τ only varies for GMLA.

    Each size gets one combination with no eligible image. ML-DP rows carry RMSD.
    """
    rng = np.random.default_rng(seed)
    sweep = Sweep(cfg)
    combo_id = 0
    for size in cfg.sizes:
        for k in range(combos_per_size + 1):
            labels = tuple(f"l{size}_{k}_{j}" for j in range(size))
            eligible = 0 if k == combos_per_size else int(rng.integers(1, 2 * cfg.images_per_combination))
            attacked = min(eligible, cfg.images_per_combination)
            sweep.combinations.append(Combination(combo_id, labels, eligible, attacked))
            for attack in cfg.attacks:
                taus = cfg.tau if attack == "gmla" else cfg.tau[:1]
                p_success = rng.uniform(0.2, 1.0)
                for eps in cfg.eps:
                    for tau in taus:
                        for img in range(attacked):
                            ok = bool(rng.random() < p_success)
                            sweep.rows.append(
                                ResultRow(
                                    combo_id=combo_id,
                                    image_id=f"im{img}",
                                    attack=attack,
                                    eps=eps,
                                    tau=tau,
                                    success=ok,
                                    consistent=ok and bool(rng.random() < 0.6),
                                    ntr_share=float(rng.uniform(0, 0.1)) if ok else 0.0,
                                    success_iteration=int(rng.integers(1, cfg.iterations + 1)),
                                    linf=float(eps),
                                    l2=float(rng.uniform(0.5, 2)),
                                    seconds=float(rng.uniform(0.01, 0.1)),
                                    ssim=float(rng.uniform(0.9, 1.0)) if ok else None,
                                    rmsd=float(rng.uniform(0.001, 0.05)) if ok and attack == "ml-dp" else None,
                                )
                            )
            combo_id += 1
    return sweep


def store_sweep(store: ResultStore, sweep: Sweep, batch: int = 400) -> str:
    """Write a sweep the way ``bench run`` does: run, combinations, then batches of rows."""
    run = store.begin_run(sweep.config)
    store.write_combinations(run, sweep.combinations)
    for i in range(0, len(sweep.rows), batch):
        store.write_rows(run, sweep.rows[i : i + batch])
    store.write_rows(run, [], complete=[c.combo_id for c in sweep.combinations])
    store.finish_run(run)
    return run
