"""The model under attack, row by row: its device and dtype, frozen for attacks, a checked
forward pass, the success test, input gradients and per-label Jacobians (what the steppers,
the engine and the protocol compute with)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from bench.errors import BenchError


def model_device(model: nn.Module) -> torch.device:
    for t in _tensors_of(model):
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    for t in _tensors_of(model):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def _tensors_of(model: nn.Module) -> Iterator[Tensor]:
    yield from model.parameters()
    yield from model.buffers()


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode and no parameter gradients (attacks need input gradients only)."""
    training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)


def forward(model: nn.Module, x: Tensor) -> Tensor:
    """The model's logits ``[P, L]``; non-finite logits are a user-facing error."""
    logits = model(x)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise BenchError(f"the model must return logits of shape [batch, labels]; it returned {shape}")
    bad = ~torch.isfinite(logits).all(dim=1)
    if bool(bad.any()):
        raise BenchError(f"the model returned NaN or infinite logits for {int(bad.sum())} of {x.shape[0]} images")
    return logits


def reached(logits: Tensor, desired: Tensor, target_mask: Tensor) -> Tensor:
    """``[P]`` bool: every target-masked label is predicted (logit > 0) as desired."""
    return (((logits > 0) == desired) | ~target_mask).all(dim=1)


def input_grad(loss: Tensor, x: Tensor, retain: bool = False) -> Tensor:
    """∂ loss / ∂ x (``x`` requires grad; the model's parameters are frozen)."""
    return torch.autograd.grad(loss, x, retain_graph=retain)[0]


def label_jacobian(values: Tensor, x: Tensor, labels: Tensor) -> Tensor:
    """Jacobian rows ``[B, K, D]``: ``jac[b, k] = ∂ values[b, labels[b, k]] / ∂ x[b]`` flattened.

    ``values`` ``[B, L]`` is attached to ``x`` (which requires grad); ``labels`` ``[B, K]`` holds
    each row's labels, −1 where a row has fewer than K (those Jacobian rows are zero). One
    backward pass per k over all B rows: the shapes never depend on which labels a row holds.
    """
    safe = labels.clamp_min(0)
    jac = [
        input_grad(values.gather(1, safe[:, k : k + 1]).sum(), x, retain=True).flatten(1)
        for k in range(labels.shape[1])
    ]
    if not jac:
        return x.new_zeros(x.shape[0], 0, x[0].numel())
    return torch.stack(jac, 1) * (labels >= 0)[..., None]


def label_slots(mask: Tensor, width: int) -> Tensor:
    """``[B, width]`` the labels of each row of ``mask`` ``[B, L]`` in ascending order, padded with −1."""
    most = int(mask.sum(dim=1).max()) if mask.shape[0] else 0
    if most > width:
        raise BenchError(f"a pair constrains {most} labels, more than the {width} planned for the run")
    order = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    ranked = torch.where(mask, order, mask.shape[1]).sort(dim=1).values[:, :width]
    return torch.where(ranked < mask.shape[1], ranked, -1)
