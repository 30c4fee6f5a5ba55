"""Small timm backbones with a linear multi-label head, trained from scratch (practical on CPU).

``resnet10t`` (the demo's: a ResNet-10 with a three-convolution stem, which learns the
stamps faster than ResNet-18 at 1.2× its images per second), ``resnet18``, ``resnet34``,
``resnet50``, ``mobilenetv3-small``, ``mobilenetv3-large`` and ``timm`` (any timm architecture
by ``arch=``). Inputs are ImageNet-normalised inside the model.
"""

from __future__ import annotations

from bench.models import register_model
from bench.models.net import LinearHead, MultiLabelNet, pooled_width, timm_backbone

SMALL = {
    "resnet10t": "resnet10t",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenetv3-small": "mobilenetv3_small_100",
    "mobilenetv3-large": "mobilenetv3_large_100",
}


def linear_model(arch: str, num_classes: int, dropout: float = 0.0) -> MultiLabelNet:
    backbone = timm_backbone(arch)
    return MultiLabelNet(backbone, LinearHead(pooled_width(backbone), num_classes, dropout=dropout))


def _register(name: str, arch: str) -> None:
    def build(num_classes: int, image_size: int, dropout: float = 0.0) -> MultiLabelNet:
        return linear_model(arch, num_classes, dropout)

    build.__doc__ = f"timm {arch} from scratch with a linear head (CPU-friendly)."
    register_model(name, loss="bce", image_size=96)(build)


for _name, _arch in SMALL.items():
    _register(_name, _arch)


@register_model("timm", loss="bce", image_size=224)
def timm_model(num_classes: int, image_size: int, arch: str = "resnet18", dropout: float = 0.0) -> MultiLabelNet:
    """Any timm architecture (``arch=``) from scratch with a linear head."""
    return linear_model(arch, num_classes, dropout)
