"""One target set Ω on the first eligible images of a split (what ``bench attack`` runs).

The images are the ones ``bench run`` would attack for Ω (``protocol.first_eligible``); each
gets its consistent target set Ψ = h(Ω, G), the attack runs on all of them in one batch and
the metrics are the sweep's (``bench.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.attacks import bind_graph
from bench.attacks.base import Attack, AttackResult
from bench.attacks.pairs import attack_pairs
from bench.attacks.targets import PairTargets, omega_masks, pair_targets
from bench.errors import BenchError, InvalidValue
from bench.examples import save_example, stem_for
from bench.metrics import PairMetrics, Summary, combination_rates, pair_metrics, summarize
from bench.sweep.planning import first_eligible
from kg.closure import GraphTensors
from kg.graph import LabelGraph


@dataclass
class TargetSetResult:
    """Per attacked image (in ``image_ids`` order): targets, the attack's result and metrics."""

    image_ids: list[str]
    images: torch.Tensor  # the clean images [P, 3, H, W]
    clean_logits: torch.Tensor  # [P, n_out]
    pairs: PairTargets
    result: AttackResult
    metrics: PairMetrics
    summary: Summary


def attack_target_set(
    model: nn.Module,
    data,
    graph: LabelGraph,
    attack: Attack,
    targets: Sequence[str],
    images: int,
    *,
    turn_on: bool = False,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> TargetSetResult:
    """Attack Ω = ``targets`` on the first ``images`` eligible images of ``data``."""
    if images < 1:
        raise InvalidValue("images", images, "must be at least 1")
    omega_row = omega_masks(graph, [list(targets)])[0]
    chosen, clean = first_eligible(model, data, graph, omega_row, images, turn_on, device)
    if not chosen:
        state = "negative" if turn_on else "positive"
        raise BenchError(f"no image of the split has every target ({', '.join(targets)}) predicted {state}")
    x = torch.stack([data[i][0] for i in chosen])
    g = GraphTensors(graph, device)
    pairs = pair_targets(clean, omega_row.expand(len(chosen), -1), g, turn_on=turn_on)
    bind_graph([attack], graph)  # MLA-KG's edges (Attack.uses_graph)
    result = attack_pairs(attack, model, x, pairs, batch_size=batch_size, progress=progress)
    metrics = pair_metrics(pairs, result.logits, g, x, result.adv)  # the engine's own forward on the images
    summary = summarize(combination_rates(metrics, [tuple(targets)] * len(chosen)), metrics)
    return TargetSetResult([data.image_id(i) for i in chosen], x, clean, pairs, result, metrics, summary)


def save_target_set(folder: Path, run: TargetSetResult, attack: Attack, graph: LabelGraph) -> None:
    """Each pair's adversarial example into ``folder`` (PNGs + .npz, as ``bench run --save-images``)."""
    for p, image_id in enumerate(run.image_ids):
        save_example(
            folder,
            stem_for(0, attack.name, attack.eps, getattr(attack, "tau", 0.0), image_id),
            run.images[p],
            run.result.adv[p],
            attack.eps,
            attack.name,
            run.clean_logits[p],
            run.result.logits[p],
            run.pairs.omega[p],
            run.pairs.psi[p],
            list(graph.nodes),
        )
