"""ASL: the asymmetric loss against its formula, and the published TResNet checkpoint layout."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import BenchError
from bench.models import create_model, load_checkpoint
from bench.models.asl import AsymmetricLoss
from bench.models.checkpoints import tresnet_shape


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def asl_by_hand(logits, targets, gamma_neg, gamma_pos, clip, eps=1e-8) -> float:
    """Ridnik et al. Eq. (7), one term at a time: -Σ [y (1-p)^γ+ log p + (1-y) p_m^γ- log(1-p_m)]."""
    total = 0.0
    for x, y in zip(logits, targets):
        p = _sigmoid(x)
        if y:
            total += (1 - p) ** gamma_pos * math.log(max(p, eps))
        else:
            p_m = max(p - clip, 0.0)
            total += p_m**gamma_neg * math.log(max(1 - p_m, eps))
    return -total


@pytest.mark.parametrize(
    "gamma_neg,gamma_pos,clip",
    [(4.0, 0.0, 0.05), (4.0, 1.0, 0.05), (2.0, 1.0, 0.0), (0.0, 0.0, 0.0), (3.0, 2.0, 0.2)],
)
def test_asymmetric_loss_matches_formula(gamma_neg, gamma_pos, clip):
    logits = [3.0, -2.0, 0.0, 0.5, -0.04, 6.0, -7.5]
    targets = [1, 0, 1, 0, 0, 0, 1]
    loss = AsymmetricLoss(gamma_neg, gamma_pos, clip)(
        torch.tensor([logits]), torch.tensor([targets], dtype=torch.float32)
    )
    expected = asl_by_hand(logits, targets, gamma_neg, gamma_pos, clip)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7), (
        f"ASL({gamma_neg},{gamma_pos},{clip}) = {loss.item()}, formula gives {expected}"
    )


def test_asymmetric_loss_zero_gamma_is_bce_and_mean_reduction():
    x = torch.tensor([[1.5, -0.3, 2.0], [0.0, -4.0, 0.7]])
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="sum")
    got = AsymmetricLoss(0.0, 0.0, 0.0)(x, y)
    assert got.item() == pytest.approx(bce.item(), rel=1e-5), (
        f"γ = m = 0 must be summed BCE: {got.item()} vs {bce.item()}"
    )
    mean = AsymmetricLoss(0.0, 0.0, 0.0, reduction="mean")(x, y)
    assert mean.item() == pytest.approx(bce.item() / 2, rel=1e-5), "reduction='mean' must divide by the batch size"


def test_asymmetric_loss_focal_weight_is_constant_in_backprop():
    """ASL's disable_torch_grad_focal_loss: d/dx of w·log(1-p_m) with w held fixed."""
    x = torch.tensor([[0.8]], requires_grad=True)
    AsymmetricLoss(4.0, 0.0, 0.05)(x, torch.zeros(1, 1)).backward()
    p = _sigmoid(0.8)
    p_m = p - 0.05
    expected = -(p_m**4) * (-1 / (1 - p_m)) * p * (1 - p)  # weight fixed; d log(1-p_m)/dx = -p(1-p)/(1-p_m)
    assert x.grad.item() == pytest.approx(expected, rel=1e-5), (
        f"gradient {x.grad.item()} != {expected} (weight must be detached)"
    )


# ----------------------------------------------------------------- published TResNet layout
# ASL's TResNet (src/models/tresnet/tresnet.py): conv2d_ABN = Sequential(Conv2d, InPlaceABN) →
# leaves ``.0`` / ``.1``; a strided conv with anti-aliasing is Sequential(conv2d_ABN, AA) →
# ``.0.0`` / ``.0.1``: BasicBlock conv1 of layer2's first block, Bottleneck conv2 of the first
# blocks of layer3 and layer4. InPlaceABN has no num_batches_tracked and applies |w| + eps.
ANTI_ALIASED = ("body.layer2.0.conv1.", "body.layer3.0.conv2.", "body.layer4.0.conv2.")


def asl_layout(timm_state: dict[str, torch.Tensor], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Our (timm-named) state → the published ASL key layout, with signed in-place-ABN weights."""
    out = {}
    for key, value in timm_state.items():
        if not key.startswith("backbone."):
            out[key] = value
            continue
        key = key.removeprefix("backbone.")
        if key.endswith("num_batches_tracked"):
            continue
        prefix = next((p for p in ANTI_ALIASED if key.startswith(p)), None)
        conv, bn = (".0.0.", ".0.1.") if prefix else (".0.", ".1.")
        is_bn = ".bn." in key
        key = key.replace(".conv.", conv).replace(".bn.", bn)
        if is_bn and key.endswith(".weight") and not value.is_meta:
            sign = torch.where(torch.rand(value.shape, generator=generator) < 0.5, -1.0, 1.0)
            value = sign * (value - 1e-5)  # InPlaceABN applies |w| + 1e-5
        out[key] = value
    return out


def randomised_state(model: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random weights and BN statistics (BN weights ≥ 0.5, so the ABN sign is recoverable)."""
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
        elif key.endswith("running_var") or (".bn." in key and key.endswith("weight")):
            state[key] = 0.5 + torch.rand(value.shape, generator=generator)
        else:
            state[key] = 0.1 * torch.randn(value.shape, generator=generator)
    return state


TINY = {"variant": "custom", "layers": [1, 1, 1, 1], "width_factor": 0.25, "v2": False}


@pytest.fixture(scope="module")
def tiny_tresnet_state():
    gen = torch.Generator().manual_seed(0)
    reference = create_model("asl", 7, **TINY)
    state = randomised_state(reference, gen)
    reference.load_state_dict(state)
    return reference.eval(), state, asl_layout(state, gen)


def test_asl_coco_layout_loads_exactly(tmp_path, tiny_tresnet_state):
    reference, _, published = tiny_tresnet_state
    for key in (
        "body.conv1.0.weight",
        "body.layer1.0.conv1.1.running_var",
        "body.layer2.0.conv1.0.0.weight",
        "body.layer3.0.conv2.0.1.bias",
        "body.layer3.0.downsample.1.0.weight",
        "head.fc.weight",
    ):
        assert key in published, f"test layout lacks the published key {key}"
    path = tmp_path / "MS_COCO_TRresNet_M_224_81.8.pth"
    names = {i: f"class{i}" for i in range(7)}
    torch.save({"model": published, "num_classes": 7, "idx_to_class": names}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "asl" and ckpt.options == {**TINY, "bottleneck": 0}, f"sniffed {ckpt.arch} {ckpt.options}"
    assert ckpt.class_names == [f"class{i}" for i in range(7)], f"class names {ckpt.class_names}"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = ckpt.model(x), reference(x)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), f"logits differ by {(got - want).abs().max():.2e}"


def test_asl_open_images_bottleneck_head(tmp_path):
    gen = torch.Generator().manual_seed(2)
    shape = {"variant": "custom", "layers": [1, 2, 1, 1], "width_factor": 0.25, "v2": False}
    reference = create_model("asl", 9, **shape, bottleneck=16)
    state = randomised_state(reference, gen)
    reference.load_state_dict(state)
    published = asl_layout(state, gen)
    assert "head.fc.embedding_generator.0.weight" in published and "head.fc.FC.bias" in published, (
        "bottleneck head keys"
    )
    path = tmp_path / "Open_ImagesV6_TRresNet_L_448.pth"
    torch.save({"model": published, "num_classes": 9, "idx_to_class": {str(i): f'"""c{i}"""' for i in range(9)}}, path)
    ckpt = load_checkpoint(path, arch="asl", num_classes=9)
    assert ckpt.options == {**shape, "bottleneck": 16}, f"detected {ckpt.options}"
    assert ckpt.model.config["image_size"] == 448, "ASL checkpoints default to 448 px"
    x = torch.rand(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        assert torch.allclose(ckpt.model(x), reference.eval()(x), atol=1e-5, rtol=1e-4), (
            "bottleneck model logits differ"
        )


@pytest.mark.parametrize("variant", ["tresnet_m", "tresnet_l", "tresnet_xl", "tresnet_v2_l", "tresnet_v2_xl"])
def test_published_tresnet_shapes_are_recognised(variant):
    """The published M/L/XL (ASL) and L/XL (ML-Decoder) key layouts name their variant (shapes only, on 'meta')."""
    with torch.device("meta"):
        state = create_model("asl", 3, variant=variant).state_dict()
    assert tresnet_shape(asl_layout(state, None), variant) == {"variant": variant}, f"{variant} layout not recognised"


def test_asl_refuses_mismatched_files(tmp_path, tiny_tresnet_state):
    _, _, published = tiny_tresnet_state
    path = tmp_path / "asl.pth"
    torch.save({"model": published, "num_classes": 7}, path)
    with pytest.raises(BenchError, match=r"has 7 outputs, expected 20"):
        load_checkpoint(path, num_classes=20)
    with pytest.raises(BenchError, match=r"is an ASL \(TResNet\) checkpoint, not ML-GCN"):
        load_checkpoint(path, arch="ml-gcn")
    broken = dict(published)
    broken["body.layer1.0.se.fc1.weight"] = broken["body.layer1.0.se.fc1.weight"][:-1]
    torch.save({"model": broken}, path)
    with pytest.raises(BenchError) as err:
        load_checkpoint(path)
    assert "backbone.body.layer1.0.se.fc1.weight" in str(err.value) and "\n" not in str(err.value), (
        f"message: {err.value}"
    )
    torch.save({"model": {k: v for k, v in published.items() if not k.startswith("body.layer4.")}}, path)
    with pytest.raises(BenchError, match=r"incomplete TResNet body \(blocks per stage \[1, 1, 1, 0\]\)"):
        load_checkpoint(path)
    torch.save({"model": {k: v for k, v in published.items() if k != "body.layer2.0.se.fc2.bias"}}, path)
    with pytest.raises(BenchError, match=r"1 missing keys \(backbone.body.layer2.0.se.fc2.bias\)"):
        load_checkpoint(path)
    torch.save({"model": published, "num_classes": 80}, path)
    with pytest.raises(BenchError, match="declares num_classes=80"):
        load_checkpoint(path)
