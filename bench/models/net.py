"""The one shape every model has: images in [0, 1] → normalise → timm backbone → head → logits.

``MultiLabelNet.forward(images [B, 3, H, W]) -> logits [B, C]``; a prediction is ``logits > 0``.
The normalisation a backbone expects (its timm config's mean/std; none for TResNet) lives
inside the model, so attacks perturb raw [0, 1] pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn


class TimmBackbone(Protocol):
    """What this package calls on a timm model beyond ``nn.Module`` (timm types none of it)."""

    num_features: int

    def forward_features(self, x: Tensor) -> Tensor: ...

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor: ...


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics are fixed buffers, not weights."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.is_identity = all(float(m) == 0.0 for m in mean) and all(float(v) == 1.0 for v in std)

    def forward(self, x: Tensor) -> Tensor:
        return x if self.is_identity else (x - self.mean) / self.std


class BottleneckFC(nn.Module):
    """ASL's Open Images head: pooled features → ``bottleneck`` embedding → class logits."""

    def __init__(self, num_features: int, num_classes: int, bottleneck: int) -> None:
        super().__init__()
        self.embedding_generator = nn.Sequential(nn.Linear(num_features, bottleneck))
        self.FC = nn.Linear(bottleneck, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.FC(self.embedding_generator(x))


class LinearHead(nn.Module):
    """A fully connected layer on the pooled features (``fc``; ``BottleneckFC`` when ``bottleneck > 0``)."""

    def __init__(self, num_features: int, num_classes: int, bottleneck: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if bottleneck > 0:
            self.fc: nn.Module = BottleneckFC(num_features, num_classes, bottleneck)
        else:
            self.fc = nn.Linear(num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))


class MultiLabelNet(nn.Module):
    """``head(backbone(normalize(images)))``.

    Args:
        backbone: a timm model built with ``num_classes=0``.
        head: maps the backbone's features to ``[B, C]`` logits.
        pooled: give the head pooled vectors (``forward_head(pre_logits=True)``) instead of the
            feature map (ML-Decoder attends over the map).
        mean, std: input normalisation; defaults to the backbone's timm configuration.

    ``config`` (set by ``create_model``) holds what rebuilds the same architecture:
    ``{"name", "num_classes", "image_size", "kwargs"}``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        pooled: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        self.normalize = Normalize(
            mean if mean is not None else cfg.get("mean", (0.0, 0.0, 0.0)),
            std if std is not None else cfg.get("std", (1.0, 1.0, 1.0)),
        )
        self.backbone = backbone
        self.head = head
        self.pooled = pooled
        self.config: dict[str, Any] = {}
        self.resolved_kwargs: dict[str, Any] = {}

    def features(self, images: Tensor) -> Tensor:
        backbone = cast(TimmBackbone, self.backbone)
        x = backbone.forward_features(self.normalize(images))
        return backbone.forward_head(x, pre_logits=True) if self.pooled else x

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))

    def prepare(self, train_targets: Tensor) -> None:
        """Fit what the head learns from the training labels alone (ML-GCN's co-occurrence graph)."""
        prepare = getattr(self.head, "prepare", None)
        if prepare is not None:
            prepare(train_targets)


def timm_backbone(arch: str, **kwargs: Any) -> nn.Module:
    """A timm model without classifier, built from scratch (no weights are downloaded)."""
    import timm

    try:
        return timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            from bench.errors import unknown

            raise unknown("timm backbone", arch, timm.list_models()) from None
        raise


def pooled_width(backbone: nn.Module) -> int:
    """Width of ``forward_head(pre_logits=True)``: the features a linear head sees."""
    return int(getattr(backbone, "head_hidden_size", None) or cast(TimmBackbone, backbone).num_features)
