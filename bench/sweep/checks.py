"""Reliability checks on every run: signs that a number from this run cannot be trusted.

AutoAttack's ``checks.py`` is the model (Croce & Hein): before trusting a low fooling rate, make
sure the attack could have worked. Each check returns a ``Check``: ``pass``, ``flag`` or
``skip``, the measured value and one line saying what was measured and, when flagged, what it
means and what to do. The sweep runs them on a small sample of its own pairs (the first
``SAMPLE`` pairs of its queue, so the same run checks the same pairs) before any attack, and the
ones that need the run's rows after its last one; ``results.store.ResultStore.write_checks``
stores them in the ``checks`` table, ``bench run`` prints them in one line, ``bench table``
and ``bench report`` show the flagged ones beside the run.

Before the attacks (``PROBES``, a registry: a plugin adds one with ``@register_check``):

* ``randomness``: two forward passes of the same images differ, or of images one float step
  apart in one pixel (a defense whose noise is seeded by its input): the model is randomised
  (dropout left on, noise, a randomised defense), so one gradient is one draw; attack it with
  gradients averaged over draws (EOT) or remove the randomness.
* ``probabilities``: every clean output lies in [0, 1]: the model returns probabilities, not
  logits; the attacks' BCE then applies a sigmoid to a sigmoid and their ``logit > 0`` test is
  always true. Return the logits (drop the final sigmoid).
* ``gradients``: the input gradient of MLA-U's loss is exactly zero on a share of the pairs
  (a quantising or non-differentiable layer, saturated outputs): gradient attacks cannot move.
* ``loss-progress``: ten signed-gradient steps of ε/4 on MLA-U's loss do not lower it on at
  least half of the pairs: the gradients do not point downhill (masked or shattered gradients).
* ``unbounded-eps``: MLA-U with ε = 1 (the whole image) and the run's iterations must reach Ω on
  nearly every pair (``UNBOUNDED_SHARE``); if not, the attack or the model's gradients are
  broken, and low fooling rates at the run's ε mean nothing.

After the rows (``run_checks_after``):

* ``black-box``: a black-box attack of the run (``Attack.black_box``, e.g. Square) fools more
  pairs at some ε than the best white-box attack at that ε: a classic sign of gradient masking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.attacks import ATTACKS, create_attack
from bench.attacks.ops import forward, frozen, input_grad
from bench.attacks.targets import PairTargets
from bench.registry import Registry

SAMPLE = 8  # pairs each probe uses
ZERO_GRADIENT_SHARE = 0.1  # a larger share of pairs with zero input gradient flags the run
PROGRESS_SHARE = 0.5  # the loss must fall on at least this share of pairs
PROGRESS_STEPS = 10
UNBOUNDED_SHARE = 0.9  # MLA-U at ε = 1 must reach Ω on at least this share of pairs
RANDOM_TOLERANCE = 1e-5  # relative difference of two forward passes still called deterministic
STATUSES = ("pass", "flag", "skip")


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``status`` in ``STATUSES``, the measured ``value`` and one line."""

    name: str
    status: str
    value: float | None
    detail: str

    @property
    def flagged(self) -> bool:
        return self.status == "flag"


@dataclass(frozen=True)
class Probe:
    """What the checks before the attacks work on: the model (frozen, in the run's precision),
    a sample of the run's pairs (clean images and targets), the run's largest ε and its
    iterations."""

    model: nn.Module
    images: Tensor  # [k, 3, S, S] on the model's device
    targets: PairTargets  # of the k pairs: clean prediction, Ω, Ψ
    eps: float
    iterations: int
    eot: int = 1  # the attacks average this many draws of a randomised model's randomness

    def inputs(self) -> tuple[Tensor, Tensor, Tensor]:
        """MLA-U's ``(desired, target mask, non-target mask)`` on the model's device."""
        device = self.images.device
        desired, tmask, ntmask = self.targets.attack_inputs(semantic=False)
        return desired.to(device), tmask.to(device), ntmask.to(device)

    def loss(self, x: Tensor) -> Tensor:
        """``[k]`` MLA-U's loss (BCE of Ω's outputs towards the desired values) at ``x``."""
        desired, tmask, _ = self.inputs()
        logits = forward(self.model, x).float()
        bce = F.binary_cross_entropy_with_logits(logits, desired.float(), reduction="none")
        return (bce * tmask).sum(dim=1)


PROBES: Registry[Callable[[Probe], Check]] = Registry("check")


def register_check(name: str) -> Callable[[Callable[[Probe], Check]], Callable[[Probe], Check]]:
    """Decorator: ``@register_check("name")`` on a function ``(Probe) -> Check`` run before every sweep."""
    return PROBES.register(name)


@register_check("randomness")
@torch.no_grad()
def randomness(probe: Probe) -> Check:
    nudged = probe.images.clone()  # one pixel one float step up: a deterministic model barely moves
    nudged[:, 0, 0, 0] = torch.nextafter(nudged[:, 0, 0, 0], torch.ones_like(nudged[:, 0, 0, 0]))
    first = forward(probe.model, probe.images).float()
    again, moved = forward(probe.model, probe.images).float(), forward(probe.model, nudged).float()
    diff = float(torch.maximum((first - again).abs(), (first - moved).abs()).max())
    scale = 1.0 + float(first.abs().max())
    if diff > RANDOM_TOLERANCE * scale and probe.eot > 1:
        return Check(
            "randomness",
            "pass",
            diff,
            f"the model is randomised (outputs differ by up to {diff:.3g}) and the attacks average {probe.eot} draws "
            "of its randomness (EOT)",
        )
    if diff > RANDOM_TOLERANCE * scale:
        return Check(
            "randomness",
            "flag",
            diff,
            f"two forward passes of the same images (or of images one float step apart) differ by up to {diff:.3g}: "
            "the model is randomised, so each gradient is one draw; average gradients over draws (EOT) or remove "
            "the randomness before trusting FR_N",
        )
    return Check("randomness", "pass", diff, "forward passes of the same images, and one float step apart, agree")


@register_check("probabilities")
@torch.no_grad()
def probabilities(probe: Probe) -> Check:
    out = forward(probe.model, probe.images).float()
    inside = float(((out >= 0) & (out <= 1)).float().mean())
    if inside == 1.0:
        return Check(
            "probabilities",
            "flag",
            inside,
            "every output lies in [0, 1]: the model returns probabilities, not logits, so the attacks' BCE applies "
            "a sigmoid to a sigmoid and 'logit > 0' is always true; return the logits (drop the final sigmoid)",
        )
    return Check("probabilities", "pass", inside, f"{100 * inside:.0f}% of the outputs lie in [0, 1]: logits")


@register_check("gradients")
def gradients(probe: Probe) -> Check:
    x = probe.images.detach().clone().requires_grad_(True)
    grad = input_grad(probe.loss(x).sum(), x).flatten(1)
    zero = float((grad.abs().amax(dim=1) == 0).float().mean())
    share = f"{100 * zero:.0f}% of {len(x)} pairs"
    if zero > ZERO_GRADIENT_SHARE:
        return Check(
            "gradients",
            "flag",
            zero,
            f"the input gradient of the loss is exactly zero on {share}: gradient attacks cannot move there (a "
            "quantising or non-differentiable layer, or saturated outputs); use a black-box attack (square) or BPDA",
        )
    return Check("gradients", "pass", zero, f"zero input gradients on {share}")


@register_check("loss-progress")
def loss_progress(probe: Probe) -> Check:
    x0 = probe.images.detach()
    x = x0.clone()
    with torch.no_grad():
        start = probe.loss(x)
    for _ in range(PROGRESS_STEPS):
        x.requires_grad_(True)
        step = input_grad(probe.loss(x).sum(), x).sign()
        with torch.no_grad():
            x = torch.min(torch.max(x - probe.eps / 4 * step, x0 - probe.eps), x0 + probe.eps).clamp(0, 1)
    with torch.no_grad():
        end = probe.loss(x)
    fell = float((end < start).float().mean())
    what = f"{PROGRESS_STEPS} signed-gradient steps of ε/4 lowered the loss on {100 * fell:.0f}% of the pairs"
    if fell < PROGRESS_SHARE:
        return Check(
            "loss-progress",
            "flag",
            fell,
            what + ": the gradients do not point downhill (masked or shattered gradients); a low FR_N may be the "
            "attack's failure, not robustness",
        )
    return Check("loss-progress", "pass", fell, what)


@register_check("unbounded-eps")
def unbounded_eps(probe: Probe) -> Check:
    desired, tmask, ntmask = probe.inputs()
    attack = create_attack("mla-u", eps=1.0, steps=probe.iterations)
    reached = float(attack(probe.model, probe.images, desired, tmask, ntmask).success.float().mean())
    what = f"MLA-U with ε = 1 and {probe.iterations} iterations reached Ω on {100 * reached:.0f}% of the pairs"
    if reached < UNBOUNDED_SHARE:
        return Check(
            "unbounded-eps",
            "flag",
            reached,
            what + f" (expected at least {100 * UNBOUNDED_SHARE:.0f}%): with the whole image to change the attack "
            "should always win, so its gradients or the model are broken",
        )
    return Check("unbounded-eps", "pass", reached, what)


def run_probes(probe: Probe, names: list[str] | None = None) -> list[Check]:
    """The checks before the attacks (every registered one, or ``names``), the model frozen."""
    with frozen(probe.model):
        return [PROBES.get(name)(probe) for name in (names if names is not None else PROBES.names())]


def black_box_check(rates: list[tuple[float, str, float]]) -> Check:
    """``black-box`` from ``(ε, attack, FR_N)`` over the same pairs (rows within the ε-ball)."""
    blind = {a for a in ATTACKS.names() if getattr(ATTACKS.get(a), "black_box", False)}
    worst: tuple[float, float, str, float, str] | None = None  # (gap, ε, black-box attack, its FR_N, white-box)
    seen = False
    for eps in sorted({r[0] for r in rates}):
        here = [(a, fr) for e, a, fr in rates if e == eps]
        black = [(fr, a) for a, fr in here if a in blind]
        white = [(fr, a) for a, fr in here if a not in blind]
        if not black or not white:
            continue
        seen = True
        (b_fr, b_name), (w_fr, w_name) = max(black), max(white)
        if worst is None or b_fr - w_fr > worst[0]:
            worst = (b_fr - w_fr, eps, b_name, b_fr, w_name)
    if not seen or worst is None:
        return Check("black-box", "skip", None, "the run has no black-box attack beside a white-box one")
    gap, eps, b_name, b_fr, w_name = worst
    what = f"at ε = {eps:g}, {b_name} fooled {100 * b_fr:.1f}% of its pairs, {100 * (b_fr - gap):.1f}% for {w_name}"
    if gap > 0:
        return Check(
            "black-box",
            "flag",
            gap,
            what + ": a black-box attack beats the gradient attacks, a classic sign of gradient masking; "
            "trust the worst case over attacks, not a white-box number alone",
        )
    return Check("black-box", "pass", gap, what + " (the best white-box attack)")


def summary_line(checks: list[Check]) -> str:
    """One line: each flagged check with its meaning, then how many passed or were skipped."""
    flagged = [c for c in checks if c.flagged]
    counts = ", ".join(
        f"{sum(c.status == s for c in checks)} {s}" for s in ("pass", "skip") if any(c.status == s for c in checks)
    )
    if not flagged:
        return f"checks: {counts or 'none'}"
    return "checks: " + "; ".join(f"⚠ {c.name}: {c.detail}" for c in flagged) + (f" ({counts})" if counts else "")
