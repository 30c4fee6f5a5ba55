"""The attacks' display names, in the paper's row order: the one definition that the attack
classes (``display_name``), tables, plots and the report read (importing it loads no torch)."""

from __future__ import annotations

from collections.abc import Iterable

ATTACK_NAMES = {
    "mla-u": "MLA-U",
    "mla-c": "MLA-C",
    "mla-lp": "MLA-LP",
    "gmla-alpha": "GMLA_α",
    "gmla-beta": "GMLA_β",
    "gmla": "GMLA",
    "ml-dp": "ML-DP",
    "square": "Square",
    "square-g": "Square-G",
    "mla-kg": "MLA-KG",
}


#: The per-pair worst case over a run's attacks (the ``worst_case`` view, results/views.sql):
#: a row of the tables and the report under the attacks, never a registered attack.
WORST_CASE = "worst-case"
WORST_CASE_NAME = "Worst case"


def paper_order(names: Iterable[str]) -> tuple[str, ...]:
    """Attack names in the paper's row order, others after them alphabetically, the worst case last."""
    known = list(ATTACK_NAMES)
    return tuple(sorted(names, key=lambda a: (a == WORST_CASE, known.index(a) if a in known else len(known), a)))


#: Plugins' display names, by attack name: ``bench.attacks.register_attack`` writes them here,
#: so that naming an attack never imports the attacks (or torch).
PLUGIN_NAMES: dict[str, str] = {}


def attack_display(name: str) -> str:
    """A built-in attack's paper name, a registered plugin's ``display_name``, "Worst case" for the
    worst case over attacks, else the name as stored."""
    if name in ATTACK_NAMES:
        return ATTACK_NAMES[name]
    if name == WORST_CASE:
        return WORST_CASE_NAME
    if name not in PLUGIN_NAMES:
        from bench.registry import load_plugins  # installed plugins register on their first use

        load_plugins()
    return PLUGIN_NAMES.get(name) or name


def parse_attacks(text: str) -> tuple[str, ...] | None:
    """``all`` (``None``: every registered attack that is neither black-box nor graph-aware, in the
    paper's order; Square and MLA-KG run when named) or a comma list of attack names,
    lower-cased and each once, as ``bench run --attack`` and ``bench.benchmark`` take them."""
    if text.strip().lower() == "all":
        return None
    return tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
