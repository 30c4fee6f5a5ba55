"""``kg-detector``: reject an input whose prediction breaks the label graph's consistency rules.

The paper's argument, turned into a defense: an attack that ignores the hierarchy (MLA-U,
MLA-C) leaves predictions that break it, a defender who checks them catches it, and GMLA,
which changes Ψ = h(Ω, G), passes. Melacci et al. (TPAMI 2022) reject with logic constraints
among labels in the same way.

The score of a prediction (``logit > 0``) is its number of *violations*: the nodes where the
child rule C(v) or the parent rule P(v) of ``kg.closure.node_rules`` fails (a globally
consistent prediction has none). The detector rejects when the score exceeds
``max_violations``. Left unset, ``prepare`` fits it on a calibration split's clean images as the
smallest count whose clean rejection rate is at most ``target_frr`` (so the false-rejection
rate is bounded on held-out data, not tuned on the attacked images); the fitted value and the
clean rejection rate measured there go into the run's configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from bench.defenses import register_defense
from bench.defenses.base import Defense
from bench.errors import BenchError, InvalidParameter
from kg.closure import GraphTensors, node_rules
from kg.graph import LabelGraph


def violations(pred: Tensor, g: GraphTensors) -> Tensor:
    """``[B]`` long: the nodes of each 0/1 prediction where a consistency rule fails."""
    child_ok, parent_ok = node_rules(pred.bool(), g)
    return (~child_ok | ~parent_ok).sum(dim=1)


@register_defense("kg-detector")
class KGDetector(Defense):
    """Reject a prediction with more than ``max_violations`` rule violations (module docstring)."""

    def __init__(
        self,
        *,
        max_violations: int | None = None,
        target_frr: float = 0.05,
        calibration: str = "train",
        clean_frr: float | None = None,
    ) -> None:
        if max_violations is not None and (not isinstance(max_violations, int) or max_violations < 0):
            raise InvalidParameter("max_violations", max_violations, "must be a whole number of at least 0")
        if not isinstance(target_frr, (int, float)) or not 0.0 <= float(target_frr) < 1.0:
            raise InvalidParameter("target_frr", target_frr, "must be in [0, 1)")
        self.max_violations = None if max_violations is None else int(max_violations)
        self.target_frr, self.calibration, self.clean_frr = float(target_frr), str(calibration), clean_frr
        self._g: GraphTensors | None = None

    def prepare(self, model: nn.Module, graph: LabelGraph, load_split: Callable[[str], Any] | None = None) -> None:
        self._g = GraphTensors(graph)
        if self.max_violations is not None or load_split is None:
            if self.max_violations is None:
                raise BenchError("kg-detector needs max_violations, or a calibration split to fit it on")
            return
        scores = clean_scores(model, load_split(self.calibration), self._g)
        counts = torch.bincount(scores, minlength=self._g.n + 1).double()
        above = 1.0 - counts.cumsum(0) / max(len(scores), 1)  # above[k] = share with more than k violations
        self.max_violations = int((above <= self.target_frr).nonzero()[0])
        self.clean_frr = round(float(above[self.max_violations]), 6)

    def rejects(self, logits: Tensor) -> Tensor:
        if self._g is None or self.max_violations is None:
            raise BenchError("kg-detector is not prepared: call prepare(model, graph, ...) first")
        g = self._g if self._g.device == logits.device else self._g.to(logits.device)
        return violations(logits > 0, g) > self.max_violations


@torch.no_grad()
def clean_scores(model: nn.Module, dataset, g: GraphTensors, batch_size: int = 64) -> Tensor:
    """Violations of the model's clean prediction on every image of ``dataset``."""
    from bench.attacks.ops import model_device
    from bench.datasets import batches

    device, out = model_device(model), []
    was = model.training
    model.eval()
    try:
        for images, _, _ in batches(dataset, batch_size):
            out.append(violations(model(images.to(device)).cpu() > 0, g))
    finally:
        model.train(was)
    if not out:
        raise BenchError("the calibration split has no image to fit kg-detector on")
    return torch.cat(out)
