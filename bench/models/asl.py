"""ASL (Ridnik et al., ICCV 2021): TResNet backbones trained with the asymmetric loss.

The TResNet is timm's (same topology as ASL's; the published checkpoints' leaf names and
in-place ABN weights are converted by ``bench.models.checkpoints``). TResNet takes raw [0, 1]
pixels: its normalisation is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bench.errors import BenchError, unknown
from bench.models import register_model
from bench.models.net import LinearHead, MultiLabelNet, pooled_width, timm_backbone

# TResNet shapes: ASL's M/L/XL are timm's tresnet_m/l/xl; ML-Decoder's L/XL use Bottleneck
# blocks in the first two stages (timm's ``v2``); timm has no v2 XL, so it is built here.
TRESNETS: dict[str, dict[str, Any]] = {
    "tresnet_m": {},
    "tresnet_l": {},
    "tresnet_xl": {},
    "tresnet_v2_l": {},
    "tresnet_v2_xl": {"layers": [3, 8, 34, 5], "width_factor": 1.0, "v2": True},
}


def tresnet(
    variant: str = "tresnet_m", layers: Sequence[int] | None = None, width_factor: float = 1.0, v2: bool = False
) -> nn.Module:
    """A timm TResNet without classifier: a named variant (``tresnet_m``, ``tresnet_l``,
    ``tresnet_xl``, ``tresnet_v2_l``, ``tresnet_v2_xl``) or, with ``variant="custom"``, the shape
    ``layers`` (blocks per stage), ``width_factor`` and ``v2`` (Bottleneck blocks in stages 1-2)."""
    from timm.models.tresnet import TResNet

    if variant == "custom":
        if not layers or len(layers) != 4:
            raise BenchError(f"a custom TResNet needs layers=[n1, n2, n3, n4], got {layers!r}")
        shape: dict[str, Any] = {
            "layers": [int(n) for n in layers],
            "width_factor": float(width_factor),
            "v2": bool(v2),
        }
    elif variant not in TRESNETS:
        raise unknown("TResNet variant", variant, [*TRESNETS, "custom"])
    elif not TRESNETS[variant]:
        return timm_backbone(variant)
    else:
        shape = TRESNETS[variant]
    model = TResNet(num_classes=0, **shape)
    # timm reads the normalisation from this attribute, which nn.Module.__setattr__ types as a tensor or module
    model.pretrained_cfg = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # type: ignore[assignment]
    return model


@register_model("asl", loss="asl", image_size=224)
def asl(
    num_classes: int,
    image_size: int,
    variant: str = "tresnet_m",
    bottleneck: int = 0,
    layers: list[int] | None = None,
    width_factor: float = 1.0,
    v2: bool = False,
) -> MultiLabelNet:
    """ASL: TResNet-M/L/XL with a linear head (``bottleneck=512`` for the Open Images head)."""
    backbone = tresnet(variant, layers, width_factor, v2)
    return MultiLabelNet(backbone, LinearHead(pooled_width(backbone), num_classes, bottleneck=bottleneck))


class AsymmetricLoss(nn.Module):
    """The asymmetric loss of ASL, Eq. (7) of Ridnik et al.:

    ``L+ = (1 - p)^γ+ · log(p)`` and ``L- = p_m^γ- · log(1 - p_m)`` with the shifted
    probability ``p_m = max(p - m, 0)``, ``p = sigmoid(logit)``; the loss is ``-Σ (y L+ + (1-y) L-)``.

    Args:
        gamma_neg, gamma_pos: focusing exponents γ- and γ+ (ASL trains with 4 and 0).
        clip: probability margin m of the asymmetric clipping.
        eps: floor of the probabilities inside the logarithms.
        reduction: ``"sum"`` over labels and batch as ASL does, or ``"mean"`` per image.
        detach_focal_weight: treat the focusing weights as constants in backprop (ASL's
            ``disable_torch_grad_focal_loss``).
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        reduction: str = "sum",
        detach_focal_weight: bool = True,
    ) -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps
        self.reduction = reduction
        self.detach_focal_weight = detach_focal_weight

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        y = targets.to(logits.dtype)
        p = torch.sigmoid(logits.float())
        p_neg = (1 - p + self.clip).clamp(max=1) if self.clip and self.clip > 0 else 1 - p  # 1 - p_m
        loss = y * torch.log(p.clamp(min=self.eps)) + (1 - y) * torch.log(p_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            pt = p * y + p_neg * (1 - y)
            weight = torch.pow(1 - pt, self.gamma_pos * y + self.gamma_neg * (1 - y))
            loss = loss * (weight.detach() if self.detach_focal_weight else weight)
        total = -loss.sum()
        return total if self.reduction == "sum" else total / logits.shape[0]
