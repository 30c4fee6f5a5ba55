"""The attack interface: ``Attack`` checks its inputs once and freezes the model; ``AttackResult``.

An attack works on a batch of *pairs* (image, Ω): ``images [P, 3, H, W]`` in [0, 1], the
desired labels ``[P, L]`` (flipped on the target set, the clean prediction elsewhere), the
target mask ``[P, L]`` (Ψ = h(Ω, G) for the semantic attacks, Ω for MLA-U/MLA-C/MLA-LP/ML-DP)
and the non-target mask ``[P, L]`` (the other outputs). ``L`` is the number of model outputs.
A pair *succeeds* when every target-masked label is predicted as desired (logit > 0 ⇔ 1).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from bench.errors import BenchError


@dataclass
class AttackResult:
    """What an attack returns for ``P`` pairs.

    Attributes:
        adv: ``[P, 3, H, W]`` adversarial images; a failed pair's image comes back unperturbed.
        success: ``[P]`` bool, every target-masked label equals the desired one.
        iterations: ``[P]`` int64, the iteration of the returned image (first success for
            the APGD attacks; 0 = the clean image already succeeds), −1 for a failed pair.
        linf: ``[P]`` ‖x′ − x‖∞.
        l2: ``[P]`` ‖x′ − x‖₂.
    """

    adv: Tensor
    success: Tensor
    iterations: Tensor
    linf: Tensor
    l2: Tensor

    @classmethod
    def build(cls, x: Tensor, adv: Tensor, success: Tensor, iterations: Tensor) -> AttackResult:
        """Reset failed pairs to their clean image and measure the perturbations."""
        success = success.bool()
        adv = torch.where(success.view(-1, *([1] * (x.dim() - 1))), adv, x)
        delta = (adv - x).flatten(1)
        its = torch.where(success, iterations.long(), torch.full_like(iterations.long(), -1))
        return cls(adv.detach(), success, its, delta.abs().amax(1), delta.norm(dim=1))

    def __len__(self) -> int:
        return int(self.success.shape[0])

    def to(self, device: torch.device | str) -> AttackResult:
        return AttackResult(*(t.to(device) for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor, ...]:
        return (self.adv, self.success, self.iterations, self.linf, self.l2)

    @classmethod
    def cat(cls, results: Sequence[AttackResult]) -> AttackResult:
        """Concatenate the results of consecutive chunks of pairs."""
        if not results:
            raise BenchError("no attack results to join (empty batch of pairs)")
        return cls(*(torch.cat(parts) for parts in zip(*(r._tensors() for r in results))))


# ------------------------------------------------------------------- helpers
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
def frozen(model: nn.Module):
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
        raise BenchError(
            f"the model returned NaN or infinite logits for {int(bad.sum())} of {x.shape[0]} images"
        )
    return logits


def reached(logits: Tensor, desired: Tensor, target_mask: Tensor) -> Tensor:
    """``[P]`` bool: every target-masked label is predicted (logit > 0) as desired."""
    return (((logits > 0) == desired) | ~target_mask).all(dim=1)


def input_grad(loss: Tensor, x: Tensor, retain: bool = False) -> Tensor:
    """∂ loss / ∂ x (``x`` requires grad; the model's parameters are frozen)."""
    return torch.autograd.grad(loss, x, retain_graph=retain)[0]


def label_jacobian(model: nn.Module, x: Tensor, per_label: Callable[[Tensor], Tensor], labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per-label values ``per_label(logits)`` ``[P, L]`` and their Jacobian rows for ``labels``.

    Returns ``(values, jac)`` with ``jac[p, k] = ∂ values[p, labels[k]] / ∂ x[p]`` flattened,
    ``[P, len(labels), D]``: one backward pass per label, shared by all pairs of the batch.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        values = per_label(forward(model, x))
        rows = [
            input_grad(values[:, int(k)].sum(), x, retain=True).flatten(1) for k in labels.tolist()
        ]
    jac = torch.stack(rows, 1) if rows else x.new_zeros(x.shape[0], 0, x[0].numel())
    return values.detach(), jac


# ----------------------------------------------------------------- interface
class Attack(ABC):
    """A multi-label attack on batches of (image, Ω) pairs.

    Subclasses set ``display_name`` (tables) and ``semantic`` (target mask Ψ = h(Ω, G) when
    True, Ω when False) and implement ``run``; their constructor's ``steps`` default is the
    attack's own budget. ``__call__`` checks the inputs, moves them to the model's device and
    dtype, freezes the model and calls ``run``. Constructor parameters are keyword-only and
    stored under their own names.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    semantic: ClassVar[bool] = False

    def __init__(self, *, eps: float = 0.01, steps: int = 300) -> None:
        if not 0.0 < float(eps) <= 1.0:
            raise BenchError(f"eps must be in (0, 1] for images in [0, 1]; got {eps}")
        if int(steps) != steps or steps < 1:
            raise BenchError(f"steps must be a positive integer; got {steps}")
        self.eps = float(eps)
        self.steps = int(steps)

    @property
    def bounded(self) -> bool:
        """Whether the perturbation stays inside the ℓ∞ ε-ball (not so for ML-DP, nor MLA-LP by default)."""
        return True

    def config(self) -> dict[str, object]:
        """The registered name and every constructor parameter (for run configurations)."""
        params = inspect.signature(type(self)).parameters
        return {"attack": self.name, **{p: getattr(self, p) for p in params}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "attack")
        return f"{type(self).__name__}({args})"

    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        desired: Tensor,
        target_mask: Tensor,
        nontarget_mask: Tensor,
    ) -> AttackResult:
        """Attack ``P`` pairs; see the module docstring for the arguments."""
        _check_images(images)
        p = images.shape[0]
        for what, t in (("desired labels", desired), ("target mask", target_mask), ("non-target mask", nontarget_mask)):
            if t.dim() != 2 or t.shape[0] != p:
                raise BenchError(f"{what} of shape {tuple(t.shape)} do not fit {p} pairs (expected [{p}, labels])")
        if not desired.shape == target_mask.shape == nontarget_mask.shape:
            raise BenchError("desired labels, target mask and non-target mask must have the same shape")
        empty = ~target_mask.bool().any(dim=1)
        if bool(empty.any()):
            raise BenchError(f"pair {int(empty.nonzero()[0])} has no target label (empty target mask)")
        device, dtype = model_device(model), model_dtype(model)
        x = images.to(device=device, dtype=dtype)
        desired, tmask, ntmask = (t.to(device).bool() for t in (desired, target_mask, nontarget_mask))
        with frozen(model):
            with torch.no_grad():
                logits = forward(model, x)
            if logits.shape[1] != desired.shape[1]:
                raise BenchError(
                    f"the model has {logits.shape[1]} outputs but the labels have {desired.shape[1]} columns"
                )
            result = self.run(model, x, desired, tmask, ntmask)
        result.adv = result.adv.to(images.dtype)
        return result.to(images.device)

    @abstractmethod
    def run(self, model: nn.Module, x: Tensor, desired: Tensor, target_mask: Tensor, nontarget_mask: Tensor) -> AttackResult:
        """The attack proper, on checked inputs on the model's device."""


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise BenchError(f"images must be a [pairs, channels, height, width] tensor; got {shape}")
    if images.shape[0] == 0:
        raise BenchError("empty batch: there are no (image, target set) pairs to attack")
    if not bool(torch.isfinite(images).all()):
        raise BenchError("images contain NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise BenchError(f"images must lie in [0, 1]; got values in [{lo:.3g}, {hi:.3g}]")
