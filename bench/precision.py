"""``--precision``: the model's arithmetic in a sweep. ``fp32`` (the default) runs the model as
it is; ``bf16`` runs its forward under ``torch.autocast`` with bfloat16 (the backward follows),
the logits cast back to float32. Attack state, projections and metrics stay in float32."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.errors import unknown

PRECISIONS = ("fp32", "bf16")


class Autocast(nn.Module):
    """``model`` whose forward runs under ``torch.autocast(dtype=bfloat16)`` on its device."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        with torch.autocast(images.device.type, dtype=torch.bfloat16):
            return self.model(images).float()


def check_precision(name: str) -> str:
    """``name`` if it is a precision (``fp32``, ``bf16``); one line with the closest otherwise."""
    if name not in PRECISIONS:
        raise unknown("precision", name, PRECISIONS)
    return name


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    check_precision(precision)
    return model if precision == "fp32" else Autocast(model)
