"""A toy dataset and model for the sweep tests, registered like a user's plugin.

``sweep-toy``: 8 × 8 images, each the sum of the fixed ±1 patterns of its 1–3 leaf labels
(scaled by ``STRENGTH``) on a grey background, labelled in a small graph's extended order.
The model ``sweep-toy`` is linear: output v = (Σ of the matched-filter responses of the
leaves at or below v − ½) · ``GAIN``, so its clean predictions are the extended ground truth
(always consistent with the graph), and an ℓ∞ perturbation of about ``STRENGTH / 2`` can
switch a label off. Importing this module registers both (a subprocess imports it before
``bench.cli.main``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bench.datasets.base import MultiLabelDataset, register_dataset
from bench.datasets.labels import extended_targets
from bench.errors import BenchError, unknown
from bench.models import register_model
from bench.models.card import ModelCard
from bench.models.trained import models_dir, save_trained
from kg.catalog import load_graph
from kg.graph import LabelGraph

NAME = "sweep-toy"
CONV = "sweep-toy-conv"  # the toy model with a convolution beside its filters (oneDNN's kernels)
SIDE = 8
STRENGTH = 0.12
GAIN = 8.0
LABELS = ("cat", "dog", "lion", "car", "bus", "apple")
ABSTRACT = ("pet", "animal", "vehicle")
EDGES = (("pet", "cat"), ("pet", "dog"), ("animal", "pet"), ("animal", "lion"), ("vehicle", "car"), ("vehicle", "bus"))
SPLIT_SIZES = {"train": 40, "test": 60}


def toy_graph() -> LabelGraph:
    nodes = LABELS + ABSTRACT
    pos = {n: i for i, n in enumerate(nodes)}
    return LabelGraph(NAME, nodes, tuple((pos[p], pos[c]) for p, c in EDGES), len(LABELS))


def patterns() -> Tensor:
    """``[labels, 3·SIDE²]`` fixed ±1 patterns, one per leaf label."""
    rng = np.random.default_rng(1234)
    return torch.from_numpy(rng.choice([-1.0, 1.0], size=(len(LABELS), 3 * SIDE * SIDE))).float()


class ToyDataset(MultiLabelDataset):
    name = NAME

    def __init__(self, split: str, graph: LabelGraph) -> None:
        self.split, self.graph, self.image_size = split, graph, SIDE
        rng = np.random.default_rng([7, list(SPLIT_SIZES).index(split)])
        n = SPLIT_SIZES[split]
        own = np.zeros((n, len(LABELS)), dtype=np.float32)
        for i in range(n):
            own[i, rng.choice(len(LABELS), size=int(rng.integers(1, 4)), replace=False)] = 1
        p = patterns()
        noise = torch.from_numpy(rng.uniform(-0.02, 0.02, size=(n, p.shape[1]))).float()
        flat = 0.5 + STRENGTH * torch.from_numpy(own) @ p / 2 + noise
        self._images = flat.clamp(0, 1).view(n, 3, SIDE, SIDE)
        self._targets = extended_targets(graph, own)

    def __len__(self) -> int:
        return len(self._targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self._images[index], self._targets[index]

    def image_id(self, index: int) -> str:
        return f"toy/{self.split}/{index:04d}"

    def targets(self) -> Tensor:
        return self._targets.clone()


class ToyNet(nn.Module):
    """Linear matched filters summed over each node's leaves (see the module docstring); with
    ``conv``, plus a small fixed convolution → tanh → linear path, so that a sweep on it runs
    oneDNN's and ATen's kernels as well as MKL's."""

    def __init__(self, num_classes: int, conv: bool = False) -> None:
        super().__init__()
        self.conv: nn.Module | None = None
        if conv:
            g = torch.Generator().manual_seed(5)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.mix = nn.Linear(4 * SIDE * SIDE, num_classes)
            with torch.no_grad():
                for p in (*self.conv.parameters(), *self.mix.parameters()):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        graph = toy_graph()
        p = patterns()
        scale = STRENGTH / 2 * p.shape[1]  # response of a present label
        below = torch.from_numpy(graph.reachability() + np.eye(graph.n, dtype=np.float32))[:, : len(LABELS)]
        self.linear = nn.Linear(p.shape[1], num_classes)
        with torch.no_grad():
            self.linear.weight.copy_(GAIN * below @ p / scale)
            self.linear.bias.copy_(GAIN * (-0.5 - (below @ p).sum(1) * 0.5 / scale))
        self.config: dict = {}
        self.resolved_kwargs: dict = {}

    def forward(self, images: Tensor) -> Tensor:
        out = self.linear(images.flatten(1))
        if self.conv is not None:
            out = out + self.mix(torch.tanh(self.conv(images)).flatten(1))
        return out

    def prepare(self, train_targets: Tensor) -> None:
        pass


def toy_dataset(split: str = "test", root=None, image_size=None, graph: str | None = None, **_) -> ToyDataset:
    """The loader: like the real ones, it refuses an unknown split, a data root that is not a
    folder and an unknown graph name (the toy's images are made, not read)."""
    if split not in SPLIT_SIZES:
        raise unknown("split", split, list(SPLIT_SIZES))
    if root is not None and not Path(root).is_dir():
        raise BenchError(f"{NAME} data root {root} is not a folder")
    if graph is not None and graph != NAME:
        load_graph(graph)  # an unknown name is one line, as with the real loaders
    return ToyDataset(split, toy_graph())


def _register() -> None:
    from bench.datasets.base import DATASETS
    from bench.models import MODELS

    if NAME not in DATASETS:
        register_dataset(NAME)(toy_dataset)
    if NAME not in MODELS:
        register_model(NAME, loss="bce", image_size=SIDE)(lambda num_classes, image_size: ToyNet(num_classes))
    if CONV not in MODELS:
        register_model(CONV, loss="bce", image_size=SIDE)(lambda num_classes, image_size: ToyNet(num_classes, True))


def save_toy_model(name: str = "toy-model", model_name: str = NAME) -> str:
    """Save the toy model (or ``CONV``) as a trained run of ``sweep-toy``; returns the run directory."""
    from bench.models import create_model

    graph = toy_graph()
    model = create_model(model_name, graph.n, SIDE)
    card = ModelCard(
        model=model_name,
        model_kwargs={},
        dataset=NAME,
        labels=list(graph.nodes),
        n_labels=graph.n_labels,
        graph=graph.name,
        graph_sha256=graph.sha256,
        image_size=SIDE,
        run_name=name,
        created="2025-01-01T00:00:00+00:00",
    )
    run_dir = models_dir(NAME) / name
    save_trained(run_dir, model, card)
    return str(run_dir)


_register()
__all__ = ["CONV", "NAME", "ToyDataset", "ToyNet", "save_toy_model", "toy_graph"]
