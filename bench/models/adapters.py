"""Adapters that put a researcher's own classifier on a label graph.

The suite's models output one logit per node of the graph's *extended* labels (the dataset's
labels and the abstract nodes above them), as the paper's models do: they were trained on the
extended label sets (VOC 20 + 15 = 35). A classifier trained on the dataset's labels alone has
no logit for an abstract node, so ``ExtendedLogits`` gives it one:

    an abstract node is as positive as its most positive descendant label
    (its logit is the largest logit among the dataset labels below it).

Why this rule: the extended ground truth marks a node positive exactly when one of its
descendant labels is positive (``LabelGraph.extend_labels``); the maximum is the one logit rule
with that property for every prediction threshold (a node's prediction ``logit > 0`` is then the
OR of its labels' predictions), so every clean prediction of the adapted model is globally
consistent with the graph above the labels, and attacks see a subgradient through the label
that decides the node. How it departs from the paper: a trained extended model can put an
abstract node on or off independently of its labels (an inconsistent prediction the paper's
NT_R and FR_S count); an adapted model cannot, so on it an attack can break consistency only
among the dataset labels (where one is the graph's parent of another), never between a label
and the abstract nodes above it. Tables of adapted models are therefore compared with each
other, not with the paper's.

``OutputOrder`` puts a model's outputs in the graph's node order when they come in another;
``fit_model`` picks what a model needs by its number of outputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from bench.errors import BenchError
from kg.graph import LabelGraph

ADAPTER_RULE = "max over descendant labels"


class ExtendedLogits(nn.Module):
    """``model``'s logits over ``graph.labels`` → logits over every node of ``graph``: the labels'
    own, then each abstract node's as the largest of its descendant labels' (module docstring)."""

    def __init__(self, model: nn.Module, graph: LabelGraph) -> None:
        super().__init__()
        self.model, self.graph = model, graph
        below = torch.zeros(graph.n - graph.n_labels, graph.n_labels, dtype=torch.bool)
        for row, node in enumerate(range(graph.n_labels, graph.n)):
            labels = [d for d in graph.descendants(node) if d < graph.n_labels]
            if not labels:
                raise BenchError(
                    f"abstract node {graph.nodes[node]!r} of graph {graph.name!r} has no dataset label below it: "
                    "its logit cannot come from the model's labels"
                )
            below[row, labels] = True
        self.register_buffer("below", below, persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        logits = self.model(images)
        if logits.shape[-1] != self.graph.n_labels:
            graph = self.graph
            raise BenchError(f"the model has {logits.shape[-1]} outputs, not {graph.name!r}'s {graph.n_labels} labels")
        below: Tensor = self.below  # type: ignore[assignment]  # a registered buffer
        masked = logits.unsqueeze(1).masked_fill(~below, float("-inf"))  # [B, abstract, labels]
        return torch.cat([logits, masked.amax(dim=2)], dim=1)


class OutputOrder(nn.Module):
    """``model``'s outputs (named ``names``) reordered into ``order`` (a subset or all of them)."""

    def __init__(self, model: nn.Module, names: Sequence[str], order: Sequence[str]) -> None:
        super().__init__()
        position = {name: i for i, name in enumerate(names)}
        missing = [name for name in order if name not in position]
        if missing:
            raise BenchError(f"the model's labels lack {', '.join(missing[:5])} (graph nodes)")
        self.model = model
        self.register_buffer("index", torch.tensor([position[n] for n in order]), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).index_select(-1, self.index)


def fit_model(
    model: nn.Module, graph: LabelGraph, labels: Sequence[str] | None, image: Tensor
) -> tuple[nn.Module, str]:
    """``model`` with outputs over ``graph``'s nodes in its order, and how it was fitted: as it
    is, its outputs reordered by ``labels``, or extended from the labels by ``ExtendedLogits``."""
    with torch.no_grad():
        outputs = int(model(image.unsqueeze(0)).shape[-1])
    names = list(labels) if labels is not None else None
    if names is not None and len(names) != outputs:
        raise BenchError(f"the model has {outputs} outputs but {len(names)} labels were named")
    if outputs == graph.n:
        if names is None or names == list(graph.nodes):
            return model, "extended labels"
        return OutputOrder(model, names, graph.nodes), "extended labels, reordered"
    if outputs == graph.n_labels:
        if names is not None and names != list(graph.labels):
            model = OutputOrder(model, names, graph.labels)
        return ExtendedLogits(model, graph), f"dataset labels; abstract nodes: {ADAPTER_RULE}"
    raise BenchError(
        f"the model has {outputs} outputs, but graph {graph.name!r} has {graph.n_labels} labels and {graph.n} nodes "
        "(the model's outputs must be the labels or all the nodes)"
    )


def parameters_sha256(tensors: Iterable[Tensor]) -> str:
    """The sha256 of tensors' float32 bytes, in order (a model's weights, a set of images)."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
