"""``smoothing``: randomized smoothing for multi-label classifiers, MultiGuard-style (Jia et al.,
NeurIPS 2022): Gaussian noise of standard deviation ``sigma`` added to the image at inference,
each label predicted positive when it is positive under a strict majority of ``samples`` noisy
copies (the defended logit is the vote share minus one half). Train the model with the same
noise (``bench train --noise SIGMA``) for it to keep its clean accuracy.

**Attacks on it** run on one noisy copy per forward pass, or, with EOT (``bench run --eot K``),
on the mean logits of K noisy copies: the gradient of that mean is the mean of the K copies'
gradients (expectation over transformation, as AutoAttack's ``version='rand'`` and torchattacks'
EOTPGD average over the defense's randomness). Success, consistency and NT_R are then measured
on the vote.

**Noise and reproducibility.** A row's noise is drawn from a generator seeded with the sha256 of
the row's own pixels (float32 bytes), the defense's ``seed`` and what it is for (the vote or the
attack, and the draw), never from a global generator: a row's output depends on its own input
alone, so rows stay independent of their batch-mates (the sweep's contract), while every new
input an attack tries gets fresh noise. Two forward passes of the *same* input agree, so the
``randomness`` check looks for outputs that jump under a tiny change of the input as well.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

from bench.defenses import register_defense
from bench.defenses.base import Defense
from bench.errors import InvalidParameter


def row_noise(x: Tensor, draws: int, sigma: float, seed: int, purpose: str) -> Tensor:
    """``[draws, B, ...]`` Gaussian noise, each row's from its own pixels' hash (module docstring)."""
    rows = []
    for row in x.detach().float().cpu():
        digest = hashlib.sha256(row.contiguous().numpy().tobytes() + f"|{seed}|{purpose}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        rows.append(torch.randn((draws, *row.shape), generator=gen))
    return (torch.stack(rows, 1) * sigma).to(device=x.device, dtype=x.dtype)


class NoisyCopies(nn.Module):
    """The mean logits of ``draws`` noisy copies of each input (``draws`` = 1: one noisy copy)."""

    def __init__(self, model: nn.Module, sigma: float, draws: int, seed: int) -> None:
        super().__init__()
        self.model, self.sigma, self.draws, self.seed = model, sigma, draws, seed

    def forward(self, x: Tensor) -> Tensor:
        noise = row_noise(x, self.draws, self.sigma, self.seed, "attack")
        copies = (x.unsqueeze(0) + noise).flatten(0, 1)
        return self.model(copies).view(self.draws, x.shape[0], -1).mean(0)


class MajorityVote(nn.Module):
    """Vote share minus one half over ``samples`` noisy copies: positive under a strict majority."""

    def __init__(self, model: nn.Module, sigma: float, samples: int, seed: int) -> None:
        super().__init__()
        self.model, self.sigma, self.samples, self.seed = model, sigma, samples, seed

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        noise = row_noise(x, self.samples, self.sigma, self.seed, "vote")
        copies = (x.unsqueeze(0) + noise).flatten(0, 1)
        votes = (self.model(copies) > 0).float().view(self.samples, x.shape[0], -1).mean(0)
        return votes - 0.5


@register_defense("smoothing")
class Smoothing(Defense):
    """Gaussian noise of ``sigma`` at inference, majority over ``samples`` copies (module docstring)."""

    randomised = True

    def __init__(self, *, sigma: float = 0.25, samples: int = 16, seed: int = 0) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0.0 < sigma <= 1.0:
            raise InvalidParameter("sigma", sigma, "must be in (0, 1] (images lie in [0, 1])")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise InvalidParameter("samples", samples, "must be a positive whole number")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidParameter("seed", seed, "must be a whole number")
        self.sigma, self.samples, self.seed = float(sigma), int(samples), int(seed)

    def defended(self, model: nn.Module) -> nn.Module:
        return MajorityVote(model, self.sigma, self.samples, self.seed)

    def attacked(self, model: nn.Module, eot: int = 1) -> nn.Module:
        return NoisyCopies(model, self.sigma, eot, self.seed)
