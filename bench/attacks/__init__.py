"""Attacks by name: GMLA, the six baselines of the paper and the black-box Square (``square``, ``square-g``).

Every attack takes ``(model, images, desired, target_mask, nontarget_mask)`` for a batch of
(image, Ω) pairs and returns an ``AttackResult`` (see ``bench.attacks.base``); the pairs run
through the engine's fixed-shape slots (``bench.attacks.engine``). A new attack is one module
with a ``@register_attack("name")`` class (an Auto-PGD attack writes ``gradient_masks`` and
``step_direction``; see ``bench.attacks.apgd``)::

    from bench.attacks import register_attack
    from bench.attacks.mla_u import MLAU

    @register_attack("my-attack")
    class MyAttack(MLAU):
        display_name = "Mine"
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from bench.attacks.base import Attack, AttackResult  # noqa: F401
from bench.errors import BenchError
from bench.names import ATTACK_NAMES, PLUGIN_NAMES
from bench.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

    from kg.graph import LabelGraph

ATTACKS: Registry[type[Attack]] = Registry("attack")
A = TypeVar("A", bound=Attack)


def register_attack(name: str) -> Callable[[type[A]], type[A]]:
    """Class decorator: register an ``Attack`` subclass under ``name``, the one place an attack's
    name is written: it sets ``cls.name`` and, for the paper's attacks, ``cls.display_name``
    from ``bench.names.ATTACK_NAMES`` (a plugin's class sets its own)."""

    def deco(cls: type[A]) -> type[A]:
        cls.name = name
        if name in ATTACK_NAMES and "display_name" not in vars(cls):
            cls.display_name = ATTACK_NAMES[name]
        ATTACKS.register(name)(cls)
        if name not in ATTACK_NAMES:
            PLUGIN_NAMES[name] = cls.display_name
        return cls

    return deco


def create_attack(name: str, **params) -> Attack:
    """An attack by registered name, e.g. ``create_attack("gmla", eps=0.01, steps=300, tau=-0.85)``."""
    cls = ATTACKS.get(name)
    accepted = attack_parameters(cls)
    unknown_params = sorted(set(params) - set(accepted))
    if unknown_params:
        raise BenchError(f"attack {name!r} has no parameter {unknown_params[0]!r} (parameters: {', '.join(accepted)})")
    return cls(**params)


def attack_parameters(cls: type[Attack]) -> dict[str, object]:
    """Constructor parameters of an attack class and their defaults."""
    return {p.name: p.default for p in inspect.signature(cls).parameters.values()}


def list_attacks() -> list[str]:
    return ATTACKS.names()


def bind_graph(attacks: Iterable[Attack], graph: LabelGraph, output_index: Tensor | None = None) -> None:
    """Give the label graph (node i = output ``output_index[i]``, i by default) to every attack
    that uses one (``Attack.uses_graph``: MLA-KG); the others are left as they are."""
    for attack in attacks:
        if attack.uses_graph:
            attack.set_graph(graph, output_index)


# Importing the attack modules registers them.
from bench.attacks import gmla, gmla_alpha, gmla_beta, ml_dp, mla_c, mla_kg, mla_lp, mla_u, square  # noqa: E402,F401  isort: skip
