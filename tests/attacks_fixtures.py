"""Tiny deterministic float64 models and pair batches for the attack tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A smooth two-layer net on flattened images (float64), logits centred near zero."""

    def __init__(self, shape=(3, 4, 4), labels: int = 5, hidden: int = 8, seed: int = 0, scale: float = 3.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        d = int(torch.tensor(shape).prod())
        self.hidden = nn.Linear(d, hidden).double()
        self.out = nn.Linear(hidden, labels).double()
        with torch.no_grad():
            self.hidden.weight.copy_(torch.randn(hidden, d, generator=gen, dtype=torch.float64) * scale / d**0.5)
            self.hidden.bias.copy_(-self.hidden.weight.sum(1) * 0.5)  # centred for images around 0.5
            self.out.weight.copy_(torch.randn(labels, hidden, generator=gen, dtype=torch.float64))
            self.out.bias.zero_()

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x.flatten(1))))


class LinearNet(nn.Module):
    """z = W x + b on flattened images (float64)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.double())
        self.bias = nn.Parameter(bias.double())

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def flip_targets(logits: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Desired labels flipping ``k`` random labels per row; the target and non-target masks."""
    gen = torch.Generator().manual_seed(seed)
    p, n = logits.shape
    mask = torch.zeros(p, n, dtype=torch.bool)
    for row in range(p):
        mask[row, torch.randperm(n, generator=gen)[:k]] = True
    return (logits > 0) ^ mask, mask, ~mask
