"""The paper's metrics: FR_N, FR_S, NT_R, SSIM and RMSD (``cvpr24/compute_asr.py``; docs/attacks.md, Metrics).

Per pair (image, Ω), from the clean and adversarial predictions (logit > 0):

* **success** (FR_N): every label of Ω is flipped (turn-off: predicted 0) after the attack;
  only Ω is checked, not Ψ.
* **consistent** (FR_S): successful *and* the adversarial prediction is locally consistent
  with the graph at every target k ∈ Ω (``kg.closure.consistent_at``).
* **ntr_share** (NT_R): for a successful pair, the share of the outputs outside Ψ = h(Ω, G)
  (from the clean prediction, for every attack) whose prediction changed; 0 for a failed pair
  (it counts as unperturbed). With a node → output map every output outside Ψ counts (the
  official Open Images script mixed node and output indices here).
* **ssim**: ``torchmetrics`` SSIM (data_range 1) between clean and adversarial image,
  successful pairs only (NaN otherwise; computed on every row so that a row's value never
  depends on the others).
* **rmsd**: √(‖x − x′‖²/N), N = pixel values per image (Supp. Eq. 13), in [0, 1] units
  (×255 for 8-bit units), successful pairs only; ``linf``, ``l2`` of every pair.

Clean models: ``average_precision`` (per label) and ``mean_ap`` (mAP over the labels that have
positives), the non-interpolated AP of ``sklearn.metrics.average_precision_score``, by torchmetrics.

Per combination Ω: FR_N = mean(success), FR_S = mean(consistent), NT_R = mean(ntr_share),
each over **all** attacked images of the combination (so FR_S ≤ FR_N); SSIM and RMSD are
means over the successful ones. Reported: mean ± std (population, ``np.std``) over the
combinations, as fractions; SSIM also pooled over all successful images.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import Tensor

from bench.attacks.targets import PairTargets
from bench.errors import BenchError
from kg.closure import GraphTensors, consistent_at


@dataclass
class PairMetrics:
    """Per-pair values (``[P]`` tensors on the CPU)."""

    success: Tensor
    consistent: Tensor
    ntr_share: Tensor
    ssim: Tensor
    rmsd: Tensor
    linf: Tensor
    l2: Tensor
    flipped: Tensor  # [P, n_out] bool: outputs outside Ψ the attack changed (NT_R's numerator; successes only)

    def __len__(self) -> int:
        return int(self.success.shape[0])


def pair_metrics(
    targets: PairTargets,
    adv_logits: Tensor,
    g: GraphTensors,
    clean_images: Tensor,
    adv_images: Tensor,
) -> PairMetrics:
    """The per-pair metrics of an attack's outcome.

    Args:
        targets: the pairs' clean prediction, Ω and Ψ (``bench.attacks.targets.pair_targets``).
        adv_logits: ``[P, n_out]`` the model's logits on the adversarial images.
        g: the graph's tensors, for the local consistency at the targets.
        clean_images, adv_images: ``[P, 3, H, W]`` in [0, 1], pair by pair.
    """
    p = len(targets)
    if adv_logits.shape != targets.clean.shape:
        raise BenchError(
            f"adversarial logits of shape {tuple(adv_logits.shape)} do not match {tuple(targets.clean.shape)}"
        )
    if clean_images.shape != adv_images.shape or clean_images.shape[0] != p:
        raise BenchError(
            f"need one clean and one adversarial image per pair ({p}); got {tuple(clean_images.shape)} and "
            f"{tuple(adv_images.shape)}"
        )
    if not bool(torch.isfinite(adv_logits).all()):
        raise BenchError("the adversarial logits contain NaN or infinite values")
    clean, omega, psi = (t.cpu() for t in (targets.clean, targets.omega, targets.psi))
    adv = adv_logits.detach().cpu() > 0
    success = ((adv != clean) | ~omega).all(dim=1)
    local = consistent_at(targets.graph_view(adv).to(g.device), targets.graph_view(omega).to(g.device), g).cpu()
    consistent = success & local
    flipped = (adv != clean) & ~psi & success[:, None]
    changed = flipped.sum(dim=1).double()
    watched = (~psi).sum(dim=1).double()
    ntr_share = torch.where(success & (watched > 0), changed / watched.clamp_min(1), torch.zeros_like(changed))

    # Norms in float64 on the images' device: only [P] vectors cross to the CPU.
    delta = (adv_images.detach().double() - clean_images.detach().double()).flatten(1)
    linf, l2, root_mean_sq = (
        v.cpu() for v in (delta.abs().amax(dim=1), delta.norm(dim=1), delta.pow(2).mean(dim=1).sqrt())
    )
    nan = torch.full((p,), float("nan"), dtype=torch.float64)
    ssim = nan.clone()
    if bool(success.any()):
        from torchmetrics.functional.image import (
            structural_similarity_index_measure,  # slow to import (~4 s)
        )

        # Every row, on the images' own device and dtype (float32 on a GPU is far faster than
        # float64 on the CPU): a pair's SSIM must not depend on which rows share its batch.
        # a Tensor: the function returns a tuple only with return_full_image / return_contrast_sensitivity
        every = cast(
            Tensor,
            structural_similarity_index_measure(
                adv_images.detach(), clean_images.detach(), data_range=1.0, reduction="none"
            ),
        )
        every = every.double().cpu()
        ssim = torch.where(success, every, nan)
    rmsd = torch.where(success, root_mean_sq, nan)
    return PairMetrics(success, consistent, ntr_share, ssim, rmsd, linf, l2, flipped)


@dataclass(frozen=True)
class CombinationRates:
    """One target combination's rates (fractions) over its ``n`` attacked images."""

    combination: Hashable
    n: int
    fr_n: float
    fr_s: float
    nt_r: float
    ssim: float  # NaN when no image succeeded
    rmsd: float  # NaN when no image succeeded


def combination_rates(m: PairMetrics, combination: Sequence[Hashable] | Tensor | np.ndarray) -> list[CombinationRates]:
    """Per-combination FR_N, FR_S, NT_R (over all attacked images), SSIM and RMSD (successful ones).

    ``combination[p]`` names pair p's target combination (a list, a tensor or an array of ids:
    tensor and array elements are compared by value); the result follows first appearance.
    """
    keys = combination.tolist() if isinstance(combination, (Tensor, np.ndarray)) else list(combination)
    if len(keys) != len(m):
        raise BenchError(f"{len(keys)} combination ids for {len(m)} pairs")
    groups: dict[Hashable, list[int]] = {}
    for p, key in enumerate(keys):
        groups.setdefault(key, []).append(p)
    success, consistent, ntr = (t.numpy().astype(np.float64) for t in (m.success, m.consistent, m.ntr_share))
    ssim, rmsd = m.ssim.numpy(), m.rmsd.numpy()
    out = []
    for key, rows in groups.items():
        ok = m.success.numpy()[rows]
        out.append(
            CombinationRates(
                combination=key,
                n=len(rows),
                fr_n=float(success[rows].mean()),
                fr_s=float(consistent[rows].mean()),
                nt_r=float(ntr[rows].mean()),
                ssim=float(ssim[rows][ok].mean()) if ok.any() else float("nan"),
                rmsd=float(rmsd[rows][ok].mean()) if ok.any() else float("nan"),
            )
        )
    return out


@dataclass(frozen=True)
class Summary:
    """Mean ± std over combinations (fractions), and SSIM pooled over successful images."""

    n_combinations: int
    fr_n: tuple[float, float]
    fr_s: tuple[float, float]
    nt_r: tuple[float, float]
    ssim: tuple[float, float]
    rmsd: tuple[float, float]
    ssim_pooled: float


def summarize(rates: Sequence[CombinationRates], m: PairMetrics | None = None) -> Summary:
    """Mean and population std (``np.std``) over combinations; SSIM/RMSD skip combinations with
    no success. ``ssim_pooled`` (the official script's single SSIM) needs the pair metrics ``m``."""
    if not rates:
        raise BenchError("no target combinations to summarise")

    def stat(values: list[float]) -> tuple[float, float]:
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))

    pooled = float("nan")
    if m is not None and bool(m.success.any()):
        pooled = float(m.ssim[m.success].mean())
    return Summary(
        n_combinations=len(rates),
        fr_n=stat([r.fr_n for r in rates]),
        fr_s=stat([r.fr_s for r in rates]),
        nt_r=stat([r.nt_r for r in rates]),
        ssim=stat([r.ssim for r in rates]),
        rmsd=stat([r.rmsd for r in rates]),
        ssim_pooled=pooled,
    )


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Per-column AP of ``scores [N, C]`` against 0/1 ``targets [N, C]``; NaN where a column has no positive.

    AP is the mean, over a label's positive images, of the precision among the images scored at
    least as high (tied scores share the precision at the end of their tie group).
    """
    from torchmetrics.functional.classification import multilabel_average_precision

    if scores.shape != targets.shape or scores.dim() != 2:
        raise BenchError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal [N, C] shapes")
    positives = (targets > 0).sum(0)
    with warnings.catch_warnings():  # a label without positives: NaN below, no warning
        warnings.filterwarnings("ignore", message="No positive samples")
        ap = multilabel_average_precision(
            scores.double(), (targets > 0).long(), num_labels=scores.shape[1], average=None, thresholds=None
        )
    return torch.where(positives > 0, ap.double(), torch.full_like(ap, math.nan, dtype=torch.float64)).float()


def mean_ap(ap: Tensor) -> float:
    """Mean over the labels that have positives (NaN APs are left out)."""
    valid = ap[~torch.isnan(ap)]
    return float(valid.mean()) if len(valid) else math.nan
