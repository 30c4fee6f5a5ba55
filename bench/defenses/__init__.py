"""Defenses by name: what a defended model predicts, what the attacks differentiate, and what
it rejects. A defense is part of a run's configuration and run id (``bench run --defense``).

Built in: ``kg-detector`` (reject a prediction that breaks the label graph's consistency rules,
``bench.defenses.detector``) and ``smoothing`` (Gaussian noise at inference, prediction by
majority vote, MultiGuard-style, ``bench.defenses.smoothing``). A plugin adds one with
``@register_defense("name")`` on a ``Defense`` subclass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor, nn

from bench.defenses.base import Defense
from bench.errors import BenchError, InvalidParameter, InvalidValue
from bench.registry import Registry
from kg.graph import LabelGraph

DEFENSES: Registry[type[Defense]] = Registry("defense")
D = TypeVar("D", bound=Defense)


def register_defense(name: str) -> Callable[[type[D]], type[D]]:
    """Class decorator: register a ``Defense`` subclass under ``name`` (sets ``cls.name``)."""

    def deco(cls: type[D]) -> type[D]:
        cls.name = name
        DEFENSES.register(name)(cls)
        return cls

    return deco


def defense_parameters(cls: type[Defense]) -> dict[str, object]:
    return {p.name: p.default for p in inspect.signature(cls).parameters.values()}


def create_defense(spec: str) -> Defense:
    """A defense from ``name`` or ``name:key=value,key=value`` (numbers as numbers)."""
    name, _, rest = spec.strip().partition(":")
    cls = DEFENSES.get(name.strip())
    accepted = defense_parameters(cls)
    params: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in accepted:
            known = ", ".join(accepted) or "none"
            raise BenchError(f"defense {name!r}: {item!r} is not key=value with a parameter of it ({known})")
        params[key] = _value(value.strip())
    try:
        return cls(**params)
    except (InvalidValue, InvalidParameter) as exc:  # a parameter inside the spec
        raise BenchError(f"defense {name!r}: {exc.parameter} = {exc.value!r}: {exc.reason}") from None


def _value(text: str) -> object:
    """A spec's value: a number when it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def defense_from_config(config: Mapping[str, Any]) -> Defense:
    """The defense a run's configuration records (``Defense.config()``)."""
    params = {k: v for k, v in config.items() if k != "defense"}
    return DEFENSES.get(str(config["defense"]))(**params)


def list_defenses() -> list[str]:
    return DEFENSES.names()


@dataclass
class Defended:
    """A run's model under its defense (``None``: undefended): ``predict`` makes the clean
    predictions and the rows' metrics, the attacks run on ``attacked``, ``rejects`` flags the
    adversarial predictions a detector refuses (``None`` without one)."""

    predict: nn.Module
    attacked: nn.Module
    rejects: Callable[[Tensor], Tensor | None]
    defense: Defense | None = None


def defended(model: nn.Module, config: Mapping[str, Any] | None, eot: int, graph: LabelGraph) -> Defended:
    """``model`` under the defense a run's configuration records (``Protocol.defense``, ``eot``)."""
    if config is None:
        return Defended(model, model, lambda logits: None)
    defense = defense_from_config(config)
    defense.prepare(model, graph)
    return Defended(defense.defended(model), defense.attacked(model, eot), defense.rejects, defense)


# Importing the modules registers the built-in defenses.
from bench.defenses import detector, smoothing  # noqa: E402, F401  isort: skip
