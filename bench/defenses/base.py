"""The defense interface: what a defended model predicts, what an attack differentiates, and
which inputs it rejects.

A sweep against a defended model (``bench run --defense NAME``) uses the defense in three places:

* ``defended(model)``: the defended model's prediction (``logit > 0`` as everywhere). The clean
  predictions (which images are eligible) and every row's metrics (success, consistency,
  NT_R) come from it.
* ``attacked(model, eot)``: what the attacks run on and differentiate. For a deterministic
  defense, the model itself; for a randomised one, one draw of its randomness per forward
  pass, or the mean logits of ``eot`` draws (expectation over transformation).
* ``rejects(logits)``: ``[B]`` bool, the inputs a detector refuses (``None`` for a defense that
  rejects nothing). A row then records ``detected``: a pair counts as fooled after detection
  only if it succeeds and is not detected.

``prepare`` fits what the defense learns from clean data (the detector's threshold) before the
run's configuration is made: ``config()`` holds every parameter that changes the numbers,
fitted ones included, and goes into the run's configuration and id.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

from kg.graph import LabelGraph


class Defense:
    """A defense (module docstring). Subclasses take keyword-only parameters, stored under their
    own names (``config`` reads them back)."""

    name: ClassVar[str] = ""
    randomised: ClassVar[bool] = False  # its prediction draws noise: attacks need EOT

    def prepare(self, model: nn.Module, graph: LabelGraph, load_split: Callable[[str], Any] | None = None) -> None:
        """Fit what the defense learns from clean data (``load_split(name)``: a split of the run's
        dataset, for a defense that calibrates on one); a defense rebuilt from a run's
        configuration holds its fitted parameters already and is prepared without one."""

    def config(self) -> dict[str, object]:
        params = inspect.signature(type(self)).parameters
        return {"defense": self.name, **{p: getattr(self, p) for p in params}}

    def defended(self, model: nn.Module) -> nn.Module:
        return model

    def attacked(self, model: nn.Module, eot: int = 1) -> nn.Module:
        return model

    def rejects(self, logits: Tensor) -> Tensor | None:
        return None

    def describe(self) -> str:
        """One line for the run's summary and the tables."""
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "defense")
        return f"{self.name}({args})"
