"""The dataset interface every loader implements, and the dataset registry."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from bench.errors import BenchError
from bench.registry import Registry
from kg.graph import LabelGraph

DATASETS: Registry[Callable[..., MultiLabelDataset]] = Registry("dataset")


class MultiLabelDataset(Dataset, ABC):
    """A split of a multi-label dataset, labelled in its graph's *extended* label order.

    Items are ``(image, target)``: ``image`` a ``[3, s, s]`` float tensor in [0, 1]
    (``Resize(s) → CenterCrop(s) → ToTensor``, no mean/std normalisation) and ``target`` a
    ``[graph.n]`` float 0/1 tensor where every ancestor of a positive label is positive.
    """

    name: str
    split: str
    graph: LabelGraph
    image_size: int

    @property
    def labels(self) -> tuple[str, ...]:
        return self.graph.nodes

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    @abstractmethod
    def image_id(self, index: int) -> str:
        """A stable identifier of the image (file name or dataset id), stored with results."""

    def targets(self) -> torch.Tensor:
        """All targets ``[len, n]`` without decoding images (override when cheap)."""
        return torch.stack([self[i][1] for i in range(len(self))])

    def fingerprint(self) -> dict[str, Any] | None:
        """What identifies the data in a run's configuration beyond the dataset's name: sha256s
        of a user's images (``folder``, ``bench.benchmark``'s tensors); ``None`` for a public
        dataset, which its name and split identify."""
        return None


def register_dataset(name: str):
    """Decorator: ``@register_dataset("voc")`` on a factory ``(split, root, image_size, **kw)``."""
    return DATASETS.register(name)


def create_dataset(
    name: str, split: str = "test", root=None, image_size: int | None = None, **kwargs
) -> MultiLabelDataset:
    """Build a registered dataset split. ``root`` defaults to ``$BENCH_DATA/datasets/<name>``;
    ``kwargs`` are the dataset's own options (an option it does not take is refused by name)."""
    factory = DATASETS.get(name)
    parameters = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        for key in kwargs:
            if key not in parameters:
                raise BenchError(f"{{{key}}} is not an option of dataset {name!r}", options=[key])
    return factory(split=split, root=root, image_size=image_size, **kwargs)


def list_datasets() -> list[str]:
    return DATASETS.names()
