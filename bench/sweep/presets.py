"""Named sweep settings: ``paper`` (the paper's protocol, the default of ``bench run``) and
``fast`` (the offline demo on a 2-core CPU).

A preset fixes what a sweep does unless an option of ``bench run`` says otherwise: the
Auto-PGD iteration budget N, ε, τ, the target set sizes |Ω|, how many eligible images each
combination Ω attacks, how many combinations of each size, and per-attack budgets for the
two attacks that are not Auto-PGD (MLA-LP's linear programs, ML-DP's DeepFool iterations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

from bench.errors import BenchError, InvalidValue, unknown
from bench.numerics import check_mode
from bench.registry import Registry

COMBOS_ALL = "all"
COMBOS_SAMPLED = "sampled"
COMBO_MODES = (COMBOS_ALL, COMBOS_SAMPLED)


@dataclass(frozen=True)
class Preset:
    """One named sweep setting.

    Attributes:
        name: how users pick it (``--preset``).
        summary: one line saying what it is for.
        iterations: Auto-PGD iterations N of GMLA, GMLA_α, GMLA_β, MLA-U and MLA-C.
        eps, tau: the ε and τ grids (τ reaches GMLA only).
        sizes: the target set sizes |Ω|.
        images_per_combination: the first N eligible images attacked per combination.
        images_by_dataset: dataset → N where it differs (NUS-WIDE: 10, as the official script).
        combinations_per_size: how many combinations of each size to attack; ``None`` = all of
            them (the paper); a number = a seeded sample of the combinations that have eligible
            images (the demo).
        sampled_datasets: datasets whose combinations are sampled by the Open Images rules by
            default (``--combos``).
        attack_steps: iterations of the attacks that do not use N (MLA-LP's linear programs,
            ML-DP's DeepFool steps).
        attack_images: a smaller N for expensive attacks (the first images of each combination).
    """

    name: str
    summary: str
    iterations: int
    eps: tuple[float, ...]
    tau: tuple[float, ...]
    sizes: tuple[int, ...]
    images_per_combination: int
    images_by_dataset: Mapping[str, int] = field(default_factory=dict)
    combinations_per_size: int | None = None
    sampled_datasets: tuple[str, ...] = ("openimages",)
    attack_steps: Mapping[str, int] = field(default_factory=dict)
    attack_images: Mapping[str, int] = field(default_factory=dict)

    def images_for(self, dataset: str) -> int:
        return int(self.images_by_dataset.get(dataset, self.images_per_combination))

    def combos_for(self, dataset: str) -> str:
        return COMBOS_SAMPLED if dataset in self.sampled_datasets else COMBOS_ALL

    def describe(self, dataset: str) -> list[tuple[str, str]]:
        """``(setting, value)`` lines for printing the preset at the start of a sweep."""
        per_attack = ", ".join(f"{a} {n}" for a, n in self.attack_steps.items())
        fewer = ", ".join(f"{a} {n}" for a, n in self.attack_images.items())
        combos = "all" if self.combinations_per_size is None else f"{self.combinations_per_size} (seeded sample)"
        return [
            ("Auto-PGD iterations", str(self.iterations)),
            ("other attacks' iterations", per_attack or "their own defaults"),
            ("ε", ", ".join(f"{e:g}" for e in self.eps)),
            ("τ (GMLA)", ", ".join(f"{t:g}" for t in self.tau)),
            ("|Ω|", ", ".join(str(s) for s in self.sizes)),
            ("images per combination", str(self.images_for(dataset)) + (f" ({fewer})" if fewer else "")),
            ("combinations per |Ω|", combos),
            ("combinations", self.combos_for(dataset)),
        ]


PRESETS: Registry[Preset] = Registry("sweep preset")

PAPER = PRESETS.register("paper")(
    Preset(
        name="paper",
        summary="the paper's protocol: 300 iterations, ε 0.01, τ −0.85, |Ω| = 3, 50 images per combination (10 on "
        "NUS-WIDE), every combination",
        iterations=300,
        eps=(0.01,),
        tau=(-0.85,),
        sizes=(3,),
        images_per_combination=50,
        images_by_dataset={"nus": 10},
        attack_steps={"mla-lp": 10, "ml-dp": 100},
    )
)

# Sized on this project's 2-core CPU (docs/sweeps.md). ε = 0.05: the demo model (resnet18
# trained from scratch in minutes) resists ε = 0.01 on abstract nodes; at 0.03 GMLA switches
# off a whole Ψ for 11 % of the |Ω| = 3 pairs, at 0.05 for 67 %, and the attacks separate as
# in the paper (semantic attacks' successes consistent, GMLA's NT_R lowest). MLA-LP and ML-DP
# need one backward pass per label and step (MLA-LP also one 27,648-variable LP per pair and
# step, ~3.5 s here), so they get fewer images and steps.
FAST = PRESETS.register("fast")(
    Preset(
        name="fast",
        summary="the offline demo: 50 iterations, ε 0.05, |Ω| = 1–3, 8 images on 4 combinations per size",
        iterations=50,
        eps=(0.05,),
        tau=(-0.85,),
        sizes=(1, 2, 3),
        images_per_combination=8,
        combinations_per_size=4,
        attack_steps={"mla-lp": 5, "ml-dp": 50},
        attack_images={"mla-lp": 2, "ml-dp": 4},
    )
)


def get_preset(name: str) -> Preset:
    return PRESETS.get(name)


def preset_names() -> list[str]:
    return PRESETS.names()


def check_combo_mode(mode: str) -> str:
    if mode not in COMBO_MODES:
        raise unknown("combination mode", mode, COMBO_MODES)
    return mode


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep runs, as the user chose it; ``None`` takes the preset's value (:meth:`filled`),
    as timm's ``create_model`` drops the keyword arguments that were not given.

    Values are checked when the options are made, before any model loads or file is written.

    Attributes:
        attacks: registered attack names (``None``: every one, in the paper's order).
        eps, tau: the ε grid (each in (0, 1]) and GMLA's τ grid (each in [−1, 1]).
        sizes: target set sizes |Ω| (each ≥ 1).
        images_per_combination: the first N eligible images attacked per combination.
        combos: ``all`` or ``sampled`` (the Open Images rules).
        combinations_per_size: a seeded sample of this many combinations per |Ω|.
        iterations: Auto-PGD iterations N.
        steps: iterations of the attacks that do not use N, by attack (``{"mla-lp": 2}``: MLA-LP's
            linear programs, ML-DP's steps), over the preset's.
        include_abstract: draw targets from abstract graph nodes too.
        seed: seed of the combination sampling.
        split: the dataset split whose images are attacked.
        closure: Ψ's rule, ``bench`` or ``official`` (the official code's).
        precision: the model's arithmetic, ``fp32`` or ``bf16``.
        cpu_numerics: ``native`` or ``portable`` (CPU code paths pinned, ``bench.numerics``).
    """

    attacks: tuple[str, ...] | None = None
    eps: tuple[float, ...] | None = None
    tau: tuple[float, ...] | None = None
    sizes: tuple[int, ...] | None = None
    images_per_combination: int | None = None
    combos: str | None = None
    combinations_per_size: int | None = None
    iterations: int | None = None
    steps: Mapping[str, int] | None = None
    include_abstract: bool = False
    seed: int = 0
    split: str = "test"
    closure: str = "bench"
    precision: str = "fp32"
    cpu_numerics: str = "native"

    def __post_init__(self) -> None:
        from bench.attacks import ATTACKS
        from bench.precision import check_precision
        from kg.closure_official import check_closure

        for name in ("attacks", "eps", "tau", "sizes"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
                if not value:
                    raise BenchError(f"{{{name}}} is empty: give at least one value", options=[name])
        for name in self.attacks or ():
            ATTACKS.get(name)  # unknown → one line with the closest names
        for e in self.eps or ():
            if not 0 < e <= 1:
                raise InvalidValue("eps", e, "outside (0, 1]")
        for t in self.tau or ():
            if not -1 <= t <= 1:
                raise InvalidValue("tau", t, "outside [-1, 1]")
        if self.sizes is not None:
            object.__setattr__(self, "sizes", tuple(sorted(set(self.sizes))))
            if self.sizes[0] < 1:
                raise InvalidValue("sizes", self.sizes[0], "sizes start at 1")
        for name in ("images_per_combination", "combinations_per_size", "iterations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidValue(name, value, "must be a positive number")
        for attack, value in (self.steps or {}).items():
            ATTACKS.get(attack)
            if int(value) < 1:
                raise InvalidValue("steps", value, f"{attack}'s iterations must be a positive number")
        if self.combos is not None:
            check_combo_mode(self.combos)
        check_closure(self.closure)
        check_precision(self.precision)
        check_mode(self.cpu_numerics)

    @classmethod
    def from_text(cls, **given: Any) -> SweepOptions:
        """Options as a command line gives them: ``attacks`` as ``bench.names.parse_attacks``
        reads it (``"all"`` or ``"gmla,mla-u"``), ``eps`` and ``tau`` as ``parse_floats``, ``sizes``
        as ``parse_sizes`` (text or ``None``); the others as they are."""
        from bench.names import parse_attacks

        readers: dict[str, Callable[[str], Any]] = {
            "attacks": parse_attacks,
            "eps": partial(parse_floats, what="eps"),
            "tau": partial(parse_floats, what="tau"),
            "sizes": parse_sizes,
        }
        for name, read in readers.items():
            if isinstance(given.get(name), str):
                given[name] = read(given[name])
        return cls(**given)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options' names, in order (a command's parameters of the same names fill them)."""
        return tuple(f.name for f in fields(cls))

    def filled(self, preset: Preset, dataset: str) -> SweepOptions:
        """Every option that was not given (``None``) from ``preset`` for ``dataset``."""
        from bench.attacks import ATTACKS, list_attacks
        from bench.names import paper_order

        get = ATTACKS.get
        defaults: dict[str, Any] = {  # black-box (Square) and graph-adaptive (MLA-KG) attacks run when named
            "attacks": paper_order(a for a in list_attacks() if not (get(a).black_box or get(a).uses_graph)),
            "eps": preset.eps,
            "tau": preset.tau,
            "sizes": preset.sizes,
            "images_per_combination": preset.images_for(dataset),
            "combos": preset.combos_for(dataset),
            "combinations_per_size": preset.combinations_per_size,
            "iterations": preset.iterations,
            "steps": {},
        }
        missing = {f.name for f in fields(self) if getattr(self, f.name) is None}
        return replace(self, **{name: defaults[name] for name in missing})


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """``0.01``, ``0.01,0.03`` or ``START:STOP:STEP`` (inclusive) → values, each once, for the
    option ``what`` (``eps``, ``tau``)."""
    values: list[float] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if ":" in part:
                start, stop, step = (float(x) for x in part.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                n = round((stop - start) / step)
                values += [round(start + i * step, 10) for i in range(n + 1)]
            else:
                values.append(float(part))
    except ValueError:
        raise BenchError(
            f"{{{what}}} {text!r}: give a number, a comma list (0.01,0.02) or START:STOP:STEP", options=[what]
        ) from None
    if not values:
        raise BenchError(f"{{{what}}} is empty", options=[what])
    return tuple(dict.fromkeys(values))


def parse_sizes(text: str) -> tuple[int, ...]:
    """``3``, ``1-5`` or ``1,3`` → target set sizes |Ω|, sorted, each once."""
    sizes: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if last < first:
                raise ValueError
            sizes += range(first, last + 1)
    except ValueError:
        raise BenchError(
            f"{{sizes}} {text!r}: give a size (3), a range (1-5) or a list (1,3)", options=["sizes"]
        ) from None
    if not sizes or min(sizes) < 1:
        raise BenchError(f"{{sizes}} {text!r}: sizes start at 1", options=["sizes"])
    return tuple(sorted(set(sizes)))
