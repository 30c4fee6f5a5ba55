"""Model builders by name, the published-checkpoint loaders and the trained-model store.

Every model maps images ``[B, 3, H, W]`` in [0, 1] to logits ``[B, C]`` over the graph's
extended labels; a prediction is ``logits > 0``. Importing this package registers the
built-in models: ``asl`` (TResNet, asymmetric loss), ``ml-decoder``, ``ml-gcn`` and the
small timm backbones (``resnet18``, ``mobilenetv3-small``, ...).

Example::

    from bench.models import create_model, register_model

    model = create_model("resnet18", num_classes=48, image_size=96)

    @register_model("my-net", loss="bce", image_size=224)
    def my_net(num_classes: int, image_size: int, width: int = 64) -> MultiLabelNet: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from bench.errors import BenchError
from bench.models.net import MultiLabelNet
from bench.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and training defaults."""

    name: str
    build: Callable[..., MultiLabelNet]
    loss: str
    image_size: int
    summary: str

    def options(self) -> dict[str, Any]:
        """The builder's keyword options and their defaults (beyond ``num_classes``/``image_size``/``labels``)."""
        params = inspect.signature(self.build).parameters
        return {
            k: p.default
            for k, p in params.items()
            if k not in ("num_classes", "image_size", "labels") and p.kind is p.POSITIONAL_OR_KEYWORD
        }


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, *, loss: str = "bce", image_size: int = 224):
    """Decorator registering a builder ``(num_classes, image_size, **options) -> MultiLabelNet``.

    ``loss`` is the training loss the model's paper uses (``asl`` or ``bce``); ``image_size``
    its usual input size. A builder that also takes ``labels`` receives the label names.
    """

    def deco(fn: Callable[..., MultiLabelNet]) -> Callable[..., MultiLabelNet]:
        summary = (inspect.getdoc(fn) or name).splitlines()[0]
        MODELS.register(name)(ModelSpec(name.lower(), fn, loss, image_size, summary))
        return fn

    return deco


def model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse an option the registered model ``name`` does not take, listing the ones it does."""
    spec = MODELS.get(name)
    known = spec.options()
    bad = sorted(set(options) - set(known))
    if bad:
        listed = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise BenchError(f"model {spec.name!r} has no option {', '.join(bad)} (options: {listed})")


def create_model(
    name: str,
    num_classes: int,
    image_size: int | None = None,
    labels: Sequence[str] | None = None,
    **kwargs: Any,
) -> MultiLabelNet:
    """Build a registered model with ``num_classes`` outputs, weights initialised from scratch.

    ``labels`` (the extended label names) reach builders that use them (ML-GCN's word
    embeddings). ``model.config`` records what rebuilds the same architecture.
    """
    spec = MODELS.get(name)
    if int(num_classes) < 1:
        raise BenchError(f"model {spec.name!r} needs at least one class, got {num_classes}")
    check_model_options(name, kwargs)
    size = int(image_size or spec.image_size)
    extra = (
        {"labels": tuple(labels)} if labels is not None and "labels" in inspect.signature(spec.build).parameters else {}
    )
    model = spec.build(num_classes=int(num_classes), image_size=size, **kwargs, **extra)
    if not isinstance(model, nn.Module):
        raise BenchError(f"model {spec.name!r}: its builder returned a {type(model).__name__}, not a torch.nn.Module")
    # A plugin's plain nn.Module is welcome: what a MultiLabelNet adds (resolved options, a
    # prepare step before training) is optional.
    model.config = {
        "name": spec.name,
        "num_classes": int(num_classes),
        "image_size": size,
        "kwargs": {**spec.options(), **kwargs, **getattr(model, "resolved_kwargs", {})},
    }
    return model


def list_models() -> list[str]:
    return MODELS.names()


from bench.models import asl, ml_decoder, ml_gcn, small  # noqa: E402,F401  (registers the built-ins)
from bench.models.checkpoints import load_checkpoint  # noqa: E402,F401
from bench.models.trained import latest_model, list_trained, load_trained, save_trained  # noqa: E402,F401
