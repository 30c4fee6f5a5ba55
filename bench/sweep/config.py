"""A sweep's configuration: the grid of (attack, ε, τ) settings (``AttackSetting``,
``attack_settings``), the run's ``RunConfig`` from a preset and options (``sweep_config``; its
hash is the run id's suffix) and where each shard writes (``shard_db_path``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, cast

from bench.attacks import ATTACKS, attack_parameters, create_attack
from bench.attacks.apgd import APGDAttack
from bench.attacks.base import Attack
from bench.sweep.inputs import SweepModel
from bench.sweep.planning import check_sizes, label_candidates
from bench.sweep.presets import Preset, SweepOptions
from kg.graph import LabelGraph
from results.schema import Protocol, ResultKey, RunConfig

T = TypeVar("T")

#: The options a run's ``Protocol`` records as the user gave them (or the preset filled them):
#: every field the two share, but ``steps`` (the protocol records each attack's resolved budget).
PROTOCOL_OPTIONS = tuple(f.name for f in fields(Protocol) if f.name in SweepOptions.names() and f.name != "steps")


@dataclass(frozen=True)
class AttackSetting:
    """One (attack, ε, τ) of the grid; ``images`` caps the images per combination it attacks."""

    attack: str
    eps: float
    tau: float
    steps: int
    images: int

    def create(self) -> Attack:
        params: dict[str, object] = {"eps": self.eps, "steps": self.steps}
        if "tau" in attack_parameters(ATTACKS.get(self.attack)):
            params["tau"] = self.tau
        return create_attack(self.attack, **params)

    def key(self, combo_id: int, image_id: str) -> ResultKey:
        return ResultKey.of(combo_id, image_id, self.attack, self.eps, self.tau)


def attack_steps(attack: str, iterations: int, overrides: dict[str, int]) -> int:
    """Iterations of an attack: its override, else N for the Auto-PGD attacks, else its own default."""
    if attack in overrides:
        return int(overrides[attack])
    if issubclass(ATTACKS.get(attack), APGDAttack):
        return iterations
    return int(cast(int, attack_parameters(ATTACKS.get(attack))["steps"]))


def attack_settings(config: RunConfig) -> list[AttackSetting]:
    """The run's grid: every attack × ε, and × τ for the attacks that take τ (the others are
    written with ``τ = config.tau[0]``, the results contract)."""
    steps = dict(config.protocol.steps)
    images = dict(config.protocol.images)
    out = []
    for name in config.attacks:
        takes_tau = "tau" in attack_parameters(ATTACKS.get(name))
        for eps in config.eps:
            for tau in config.tau if takes_tau else config.tau[:1]:
                n = min(int(images.get(name, config.images_per_combination)), config.images_per_combination)
                out.append(AttackSetting(name, eps, tau, steps.get(name, config.iterations), n))
    return out


def sweep_config(
    dataset: str,
    model: SweepModel,
    graph: LabelGraph,
    preset: Preset,
    options: SweepOptions | None = None,
    *,
    name: str = "",
    shard: tuple[int, int] = (0, 1),
    device: str = "",
    data: Mapping[str, Any] | None = None,
    defense: Mapping[str, Any] | None = None,
    eot: int = 1,
) -> RunConfig:
    """The ``RunConfig`` of a sweep: ``options`` with what they leave out taken from ``preset``.

    ``protocol`` records the settings that change the numbers beyond the grid: the split, how
    combinations are chosen, each attack's iterations and images per combination, the closure
    rule, the model's precision and the CPU numerics mode; ``data`` what identifies a user's
    images (the dataset's ``fingerprint()``); ``defense`` the defended model's defense
    (``Defense.config()``, fitted parameters included) and ``eot`` the draws the attacks average.
    """
    o = (options or SweepOptions()).filled(preset, dataset)
    check_sizes(_filled(o.sizes), len(label_candidates(graph, o.include_abstract)), graph)
    attacks, iterations, images = _filled(o.attacks), _filled(o.iterations), _filled(o.images_per_combination)
    steps = {a: attack_steps(a, iterations, {**preset.attack_steps, **(o.steps or {})}) for a in attacks}
    fewer = {a: min(n, images) for a, n in preset.attack_images.items() if a in attacks}
    return RunConfig(
        dataset=dataset,
        model_name=model.name,
        model_card=model.card,
        model_path=model.path,
        graph_name=graph.name,
        graph_sha256=graph.sha256,
        attacks=attacks,
        eps=_filled(o.eps),
        tau=_filled(o.tau),
        sizes=_filled(o.sizes),
        images_per_combination=images,
        iterations=iterations,
        seed=o.seed,
        preset=preset.name,
        name=name,
        shard_index=shard[0],
        shard_count=shard[1],
        device=device,
        extra=Protocol(
            **{name: getattr(o, name) for name in PROTOCOL_OPTIONS},
            steps=steps,
            images=fewer,
            data=data,
            defense=defense,
            eot=eot,
        ).to_extra(),
    )


def _filled(value: T | None) -> T:
    """An option that ``SweepOptions.filled`` has filled in."""
    if value is None:
        raise TypeError("SweepOptions.filled left an option unset")
    return value


def shard_db_path(db: Path, index: int | str, count: int) -> Path:
    """Where shard ``index`` of ``count`` writes: ``<stem>.shard-i-of-n<suffix>`` beside ``db``
    (``db`` itself when there is one shard); ``bench merge`` combines the files. ``index="*"``
    gives the pattern of every shard's file."""
    db = Path(db)
    return db if count == 1 else db.with_name(f"{db.stem}.shard-{index}-of-{count}{db.suffix}")
