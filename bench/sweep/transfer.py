"""Transfer of a run's adversarial images to other models (``bench run --transfer-to``; the
official ``cvpr24/compute_asr_transfer.py``).

Each pair's adversarial image, made on the run's model (the *source*), is fed to every
*target* model of the same label space, in the metrics batch that makes the pair's row
(``bench.sweep.rows.make_rows``: the same fixed number of rows, so a pair's transfer row never
depends on its batch-mates). Per pair and target:

* the target's clean prediction on the clean image (logit > 0);
* ``eligible``: that prediction has every label of Ω positive and is globally consistent with
  the graph, as the protocol requires of an attacked image (``bench.sweep.planning``);
* Ψ = h(Ω, G) recomputed from the target's clean prediction (``pair_targets``, the run's
  closure rule and the graph store's descendants of Ω);
* ``success``, ``consistent`` and ``ntr_share`` on the target (``bench.metrics.pair_metrics``
  on the target's logits of the adversarial image), forced false / 0 where not eligible;
* ``source_success``: the row's own success on the source.

Rates over the pairs that succeeded on the source and are eligible on the target are the
``transfer_rates`` view (``results/views.sql``). Targets are not part of the run's
configuration: the run's rows are the same with or without them; a target is recorded by its
rows of the ``transfer`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.attacks.ops import forward, model_dtype
from bench.attacks.targets import pair_targets
from bench.errors import BenchError
from bench.metrics import pair_metrics
from bench.precision import with_precision
from bench.sweep.inputs import SweepModel, fit_dataset
from kg.closure import GraphTensors, global_consistency
from kg.graph import LabelGraph
from results.schema import ResultRow, TransferRow


@dataclass(frozen=True)
class TransferTarget:
    """A model the run's adversarial images are evaluated on: its name in the ``transfer``
    table and the model, outputs in the run graph's node order, on the run's device."""

    name: str
    model: nn.Module

    def with_precision(self, precision: str) -> TransferTarget:
        """The target run in the run's precision (``bench.precision``), as the source is."""
        return TransferTarget(self.name, with_precision(self.model, precision))


def target_name(loaded: SweepModel) -> str:
    """A target's name: a trained run's name (its folder), a checkpoint's file name, or a user's
    model as given (``module:factory``). ``SweepModel.name`` is the architecture of a trained
    run, which two runs of one architecture share."""
    if loaded.own:
        return loaded.name
    return Path(loaded.path).name


def fit_target(loaded: SweepModel, dataset: Any, graph: LabelGraph, name: str | None = None) -> TransferTarget:
    """``loaded`` with its outputs fitted to the run's ``graph`` (as ``fit_dataset`` fits the
    run's model to ``dataset``, the run's split seen in that graph's order); a model whose
    outputs do not fit is refused in one line naming it."""
    name = name or target_name(loaded)
    notes: list[str] = []
    try:
        net, _, fitted = fit_dataset(loaded, dataset, report=notes.append)
    except BenchError as exc:
        raise exc.prefixed(f"transfer target {name}") from None
    if (fitted.nodes, fitted.edges, fitted.n_labels) != (graph.nodes, graph.edges, graph.n_labels):
        raise BenchError(
            f"transfer target {name}: its outputs fit graph {fitted.name!r} ({fitted.n} nodes), not the run's "
            f"graph {graph.name!r} ({graph.n} nodes); a target needs the run's label space"
        )
    return TransferTarget(name, net.eval())


def check_names(targets: Sequence[TransferTarget]) -> None:
    """Two targets of one name would share their rows: refused."""
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise BenchError(f"two transfer targets are named {t.name!r}: give each model once")
        seen.add(t.name)


@dataclass(frozen=True)
class TargetOutcome:
    """One target's values for a metrics batch (``[P]`` bool / float64 tensors on the CPU)."""

    eligible: Tensor
    success: Tensor
    consistent: Tensor
    ntr_share: Tensor


@torch.no_grad()
def evaluate_target(
    model: nn.Module,
    g: GraphTensors,
    omega: Tensor,
    descendants: Tensor | None,
    clean_images: Tensor,
    adv_images: Tensor,
    closure: str = "bench",
) -> TargetOutcome:
    """A target's eligibility and metrics for a batch of pairs (see the module docstring).

    Args:
        model: the target, outputs in ``g``'s node order.
        omega: ``[P, n]`` bool, each pair's Ω over the graph's nodes.
        descendants: ``[P, n]`` bool, Ω's proper descendants (the graph store's), or ``None``.
        clean_images, adv_images: ``[P, 3, H, W]``, on the target's device.
        closure: the run's closure rule (``bench`` or ``official``).
    """
    dtype = model_dtype(model)
    clean_logits = forward(model, clean_images.to(dtype)).float().cpu()
    adv_logits = forward(model, adv_images.to(dtype)).float().cpu()
    if clean_logits.shape[1] != g.n:
        raise BenchError(f"a transfer target has {clean_logits.shape[1]} outputs but graph {g.graph.name!r} has {g.n}")
    omega = omega.cpu().bool()
    positive = clean_logits > 0
    eligible = (positive | ~omega).all(dim=1) & global_consistency(positive.to(g.device), g).cpu()
    # Ψ needs Ω positive: where the target does not predict it (not eligible), Ω is set
    # positive to compute the row's values, which are then discarded
    targets = pair_targets(positive | omega, omega, g, descendants=descendants, closure=closure)
    m = pair_metrics(targets, adv_logits, g, clean_images, adv_images)
    success = m.success & eligible
    return TargetOutcome(
        eligible,
        success,
        m.consistent & success,
        torch.where(success, m.ntr_share, torch.zeros_like(m.ntr_share)),
    )


def transfer_rows(
    targets: Sequence[TransferTarget],
    rows: Sequence[ResultRow],
    g: GraphTensors,
    omega: Tensor,
    descendants: Tensor | None,
    clean_images: Tensor,
    adv_images: Tensor,
    closure: str = "bench",
) -> list[TransferRow]:
    """The ``transfer`` rows of a metrics batch: each of ``rows`` (the first ``len(rows)`` of the
    batch; the rest is padding) on every target."""
    out = []
    for target in targets:
        o = evaluate_target(target.model, g, omega, descendants, clean_images, adv_images, closure)
        for j, r in enumerate(rows):
            out.append(
                TransferRow(
                    target=target.name,
                    combo_id=r.combo_id,
                    image_id=r.image_id,
                    attack=r.attack,
                    eps=r.eps,
                    tau=r.tau,
                    source_success=r.success,
                    eligible=bool(o.eligible[j]),
                    success=bool(o.success[j]),
                    consistent=bool(o.consistent[j]),
                    ntr_share=float(o.ntr_share[j]),
                )
            )
    return out


__all__ = [
    "TargetOutcome",
    "TransferTarget",
    "check_names",
    "evaluate_target",
    "fit_target",
    "target_name",
    "transfer_rows",
]
