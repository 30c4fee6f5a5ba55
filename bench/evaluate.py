"""Clean-model evaluation: mAP and per-label AP (``bench.metrics.average_precision``), and the
share of test images whose clean prediction (``logits > 0``) is globally consistent with the
knowledge graph — the images the attacks may use (the official ``store_gcn_consistent.py`` filter).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from bench.devices import resolve_device
from bench.errors import BenchError
from bench.metrics import average_precision, mean_ap
from kg.closure import GraphTensors, global_consistency
from kg.graph import LabelGraph

if TYPE_CHECKING:
    from bench.datasets.base import MultiLabelDataset


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: MultiLabelDataset,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    progress=None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits and targets ``[N, C]`` over the images that decode (CPU tensors), model in eval
    mode, and ``[N]`` their dataset indices; an image that does not decode is skipped, counted
    and reported once (``bench.datasets.batches``).

    ``progress``: an optional ``callable(n_done)`` called after each batch.
    """
    from bench.datasets import batches

    device = resolve_device(device)
    model = model.to(device).eval()
    logits, targets, indices = [], [], []
    for images, y, index in batches(dataset, batch_size=batch_size):
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            out = model(images.to(device))
        logits.append(out.float().cpu())
        targets.append(y.float())
        indices.append(index)
        if progress is not None:
            progress(len(images))
    if not logits:
        raise BenchError("the evaluation split has no image that decodes")
    return torch.cat(logits), torch.cat(targets), torch.cat(indices)


@dataclass
class EvalReport:
    """What ``bench eval`` reports for one model on one split."""

    labels: list[str]
    n_labels: int
    ap: list[float]
    map: float
    map_labels: float  # over the dataset's own labels
    map_abstract: float  # over the graph's abstract nodes
    consistent_share: float
    n_images: int
    consistent: list[bool] = field(repr=False)
    image_ids: list[str] = field(repr=False)
    skipped: int = 0  # images that did not decode

    def to_dict(self, per_image: bool = False) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("consistent", "image_ids")}
        out["ap"] = dict(zip(self.labels, self.ap))
        del out["labels"]
        if per_image:
            out["consistent_images"] = [i for i, ok in zip(self.image_ids, self.consistent) if ok]
        return out


def report_from_logits(logits: Tensor, targets: Tensor, graph: LabelGraph, image_ids: list[str]) -> EvalReport:
    """mAP / per-label AP of ``logits`` and the globally consistent share of ``logits > 0``."""
    if logits.shape[1] != graph.n:
        raise BenchError(f"the model has {logits.shape[1]} outputs but graph {graph.name!r} has {graph.n} nodes")
    ap = average_precision(logits, targets)
    consistent = global_consistency(logits > 0, GraphTensors(graph))
    k = graph.n_labels
    return EvalReport(
        labels=list(graph.nodes),
        n_labels=k,
        ap=[float(a) for a in ap],
        map=mean_ap(ap),
        map_labels=mean_ap(ap[:k]),
        map_abstract=mean_ap(ap[k:]),
        consistent_share=float(consistent.float().mean()),
        n_images=int(logits.shape[0]),
        consistent=consistent.tolist(),
        image_ids=image_ids,
    )


def evaluate(model: nn.Module, dataset, batch_size: int = 64, device=None, progress=None) -> EvalReport:
    """Evaluate ``model`` on a ``MultiLabelDataset`` split (its ``graph`` gives the label order);
    images that do not decode are left out and counted in ``skipped``."""
    logits, targets, indices = predict(model, dataset, batch_size, device, progress)
    ids = [dataset.image_id(int(i)) for i in indices]
    report = report_from_logits(logits, targets, dataset.graph, ids)
    report.skipped = len(dataset) - len(ids)
    return report
