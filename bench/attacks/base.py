"""The attack interface: ``Attack`` checks its inputs once and freezes the model; ``AttackResult``.

An attack works on a batch of *pairs* (image, Ω): ``images [P, 3, H, W]`` in [0, 1], the
desired labels ``[P, L]`` (flipped on the target set, the clean prediction elsewhere), the
target mask ``[P, L]`` (Ψ = h(Ω, G) for the semantic attacks, Ω for MLA-U/MLA-C/MLA-LP/ML-DP)
and the non-target mask ``[P, L]`` (the other outputs). ``L`` is the number of model outputs.
A pair *succeeds* when every target-masked label is predicted as desired (logit > 0 ⇔ 1).
"""

from __future__ import annotations

import inspect
from abc import ABC
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from bench.attacks.engine import Outcome, Stepper, Task, running
from bench.attacks.ops import model_device, model_dtype
from bench.errors import BenchError, InvalidValue
from kg.graph import LabelGraph


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
        logits: ``[P, L]`` the model's logits on ``adv``, from the attack's own forward pass.
    """

    adv: Tensor
    success: Tensor
    iterations: Tensor
    linf: Tensor
    l2: Tensor
    logits: Tensor

    @classmethod
    def build(cls, x: Tensor, adv: Tensor, success: Tensor, iterations: Tensor, logits: Tensor) -> AttackResult:
        """Measure the perturbations of pairs whose failed ones already hold their clean image."""
        delta = (adv - x).flatten(1)
        return cls(
            adv.detach(), success.bool(), iterations.long(), delta.abs().amax(1), delta.norm(dim=1), logits.detach()
        )

    def __len__(self) -> int:
        return int(self.success.shape[0])

    def to(self, device: torch.device | str) -> AttackResult:
        return AttackResult(*(t.to(device) for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor, ...]:
        return (self.adv, self.success, self.iterations, self.linf, self.l2, self.logits)


# ----------------------------------------------------------------- interface
class Attack(ABC):
    """A multi-label attack on batches of (image, Ω) pairs.

    Subclasses set ``semantic`` (target mask Ψ = h(Ω, G) when True, Ω when False) and, in
    their class body, ``stepper_class``: the ``Stepper`` (``bench.attacks.engine``) that runs
    the attack on B slots; their constructor's ``steps`` default is the attack's own budget.
    ``register_attack`` sets ``name`` and, for the paper's attacks, ``display_name`` (from
    ``bench.names``; a plugin sets its own). ``__call__`` checks the inputs, moves them to the
    model's device and dtype and runs the pairs through the engine's driver
    (``engine.running``). Constructor parameters are keyword-only and stored under their own
    names.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    semantic: ClassVar[bool] = False
    black_box: ClassVar[bool] = False  # queries the model's outputs only (the ``black-box`` check)
    uses_graph: ClassVar[bool] = False  # needs the label graph (``set_graph``) before it runs, e.g. MLA-KG
    stepper_class: ClassVar[type[Stepper]]
    graph_edges: Tensor | None = None  # [E, 2] (parent, child) in the model's output space, from ``set_graph``

    def __init__(self, *, eps: float = 0.01, steps: int = 300) -> None:
        if not 0.0 < float(eps) <= 1.0:
            raise InvalidValue("eps", eps, "must be in (0, 1] for images in [0, 1]")
        if int(steps) != steps or steps < 1:
            raise InvalidValue("steps", steps, "must be a positive integer")
        self.eps = float(eps)
        self.steps = int(steps)

    @property
    def bounded(self) -> bool:
        """Whether the perturbation stays inside the ℓ∞ ε-ball (not so for ML-DP, nor MLA-LP by default)."""
        return True

    def family(self) -> Hashable:
        """Attacks of one family share a batch of slots (their stepper handles them all)."""
        return (type(self), repr(self))

    def config(self) -> dict[str, object]:
        """The registered name and every constructor parameter (for run configurations)."""
        params = inspect.signature(type(self)).parameters
        return {"attack": self.name, **{p: getattr(self, p) for p in params}}

    def set_graph(self, graph: LabelGraph, output_index: Tensor | None = None) -> None:
        """Give the attack the label graph's edges, in the model's output space: graph node i is
        output ``output_index[i]`` (output i when omitted). Only attacks with ``uses_graph`` read
        them; not part of ``config()`` (a run's configuration records the graph's sha256)."""
        if output_index is None:
            index = torch.arange(graph.n)
        else:
            index = torch.as_tensor(output_index, dtype=torch.long).flatten().cpu()
            if index.numel() != graph.n:
                raise BenchError(f"the node → output map has {index.numel()} entries for {graph.n} graph nodes")
            if bool((index < 0).any()) or index.unique().numel() != index.numel():
                raise BenchError("the node → output map must send each graph node to its own output (no negatives)")
        edges = torch.tensor(graph.edges, dtype=torch.long).view(-1, 2)
        self.graph_edges = index[edges]

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
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        max_targets: int | None = None,
    ) -> AttackResult:
        """Attack ``P`` pairs (see the module docstring), B = ``batch_size`` (default P) at a time.

        ``progress`` is called with the number of pairs that finish at each iteration;
        ``max_targets`` bounds every pair's target mask (default: the largest here; ML-DP takes
        that many Jacobian rows per pair, so pass the same bound to compare runs bitwise).
        """
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
        tasks = (Task(i, 0, x[i], desired[i], tmask[i], ntmask[i]) for i in range(p))
        done: dict[object, Outcome] = {}
        max_targets = max_targets or int(tmask.sum(dim=1).max())
        with running([self], model, tasks, batch_size or p, max_targets=max_targets) as finished_per_tick:
            for finished in finished_per_tick:
                done.update((o.key, o) for o in finished)
                if progress is not None and finished:
                    progress(len(finished))
        out = [done[i] for i in range(p)]
        result = AttackResult.build(
            x,
            torch.stack([o.adv for o in out]),
            torch.tensor([o.success for o in out], device=device),
            torch.tensor([o.iterations for o in out], device=device),
            torch.stack([o.logits for o in out]),
        )
        result.adv = result.adv.to(images.dtype)
        return result.to(images.device)


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
