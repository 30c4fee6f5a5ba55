"""Figures from the results: FR_S and NT_R against |Ω|, ε or τ (Supp. Fig. 1) and ML-DP RMSD
histograms (Supp. Fig. 2), written as PNG or PDF with matplotlib (no display needed).

* ``size`` / ``eps`` / ``tau``: one panel per metric, one line per attack, mean ± std over
  target combinations (error bars; SSIM is pooled, without bars). ``tau`` shows only the
  attacks that were run at several τ (GMLA's cosine switch).
* ``rmsd``: one panel per attack that reports RMSD (ML-DP with its target definitions):
  how many adversarial examples fall in each RMSD bin, over the successful rows.
* ``iterations``: the success rate against iterations, from the rows' ``success_iteration``,
  one line per attack.

Rates are drawn from 0 with their error bars clipped to [0, 100] %; the legend sits outside
the data; titles name the settings that do not vary; ML-DP, not held to ε, is marked so
where ε indexes the plot.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from bench.errors import AmbiguousChoice, BenchError
from bench.fileio import atomic_write
from bench.names import attack_display
from results.tables import (
    ATTACK_NAMES,
    DATASET_NAMES,
    METRICS,
    MODEL_NAMES,
    TEX_SYMBOLS,
    check_metrics,
    display,
    ordered,
)
from results.views import ANY, AXIS_LABELS, Selection, fetch_dicts, only_attacks, pick, run_ids, summary

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn, not with the command line
    from matplotlib.figure import Figure


class PlotKind(str, Enum):
    size = "size"
    eps = "eps"
    tau = "tau"
    rmsd = "rmsd"
    iterations = "iterations"


UNBOUNDED = {"ml-dp": "ML-DP (unbounded)"}  # not held to ε: marked where ε indexes the plot


FORMATS = (".png", ".pdf")
RMSD_BINS = 20


def plot(
    con: duckdb.DuckDBPyConnection,
    kind: PlotKind | str,
    out: str | Path,
    run: str | None = None,
    selection: Selection = ANY,
    metrics: Sequence[str] = ("fr_s", "nt_r"),
    attacks: Sequence[str] = (),
) -> Path:
    """Draw one figure of one run into ``out`` (``.png`` or ``.pdf``) and return its path."""
    kind = PlotKind(kind)
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise BenchError(f"plot file {out} must end in .png or .pdf")
    stored = run_ids(con, [run] if run else [])
    if len(stored) != 1:
        raise AmbiguousChoice("a plot shows one run", "runs", stored)
    if kind is PlotKind.rmsd:
        fig = _rmsd_figure(con, stored[0], selection, attacks)
    elif kind is PlotKind.iterations:
        fig = _iterations_figure(con, stored[0], selection, attacks)
    else:
        fig = _sweep_figure(con, stored[0], kind.value, selection, check_metrics(metrics), attacks)
    return atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix[1:].lower(), dpi=150))


def label(text: str) -> str:
    """Matplotlib text with the paper's subscripts: FR_S → FR$_{S}$, GMLA_α → GMLA$_{\\alpha}$."""
    text = text.replace("$", r"\$")
    return re.sub(r"_(\w)(?!\w)", lambda m: "$_{" + TEX_SYMBOLS.get(m[1], m[1]) + "}$", text)


def _dodge(xs: Sequence[float], n: int) -> float:
    """A horizontal shift between attacks so their error bars do not overlap."""
    steps = np.diff(sorted(set(xs)))
    return 0.06 * (float(steps.min()) if len(steps) else 1.0) / max(n - 1, 1)


def _run_title(row: dict) -> str:
    return f"{display(MODEL_NAMES, row['model_name'])} on {display(DATASET_NAMES, row['dataset'])}"


def _sweep_figure(
    con: duckdb.DuckDBPyConnection,
    run: str,
    axis: str,
    selection: Selection,
    metrics: list[str],
    attacks: Sequence[str],
) -> Figure:
    rows = only_attacks(summary(con, [run], selection, vary=axis), attacks)
    curves: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        curves[r["attack"]].append(r)
    if axis == "tau":
        curves = {a: c for a, c in curves.items() if len({r["tau"] for r in c}) > 1}
        if not curves:
            raise BenchError(f"no attack of run {run!r} was run at several τ (GMLA with a τ list)")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    names = ordered(set(curves), list(ATTACK_NAMES))
    top = 0.0
    shift = _dodge([r[axis] for c in curves.values() for r in c], len(names))
    for ax, metric in zip(axes, metrics):
        name, arrow, percent = METRICS[metric]
        for i, attack in enumerate(names):
            points = sorted(curves[attack], key=lambda r: r[axis])
            x = np.array([r[axis] for r in points], dtype=float) + (i - (len(names) - 1) / 2) * shift
            if metric == "ssim":
                y, err = np.array([r["ssim_pooled"] for r in points], dtype=float), None
            else:
                y = np.array([r[f"{metric}_mean"] for r in points], dtype=float)
                std = np.array([r[f"{metric}_std"] for r in points], dtype=float)
                err = np.vstack([np.minimum(std, y), np.minimum(std, 100.0 - y)])  # a rate stays in [0, 100] %
                # to 9 digits: DuckDB's parallel avg() may differ in the last bit from one query to the
                # next, and a top of 83.33333333333333 or ...34 gave the axis other ticks (90 or not)
                top = max(top, round(float(np.nanmax(y + err[1])), 9) if len(y) else 0.0)
            name_shown = UNBOUNDED.get(attack, attack_display(attack)) if axis == "eps" else attack_display(attack)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label(name_shown))
        ax.set_xlabel(AXIS_LABELS[axis])
        ax.set_ylabel(label(f"{arrow}{name}") + (" (%)" if percent else ""))
        ax.grid(alpha=0.3)
        if percent:  # from 0, and no inflated axis around an all-zero line
            ax.set_ylim(0.0, max(top * 1.08, 1.0))
            top = 0.0
        if axis == "size":
            ax.set_xticks(sorted({r["size"] for r in rows}))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    fig.suptitle(f"{_run_title(rows[0])}" + _fixed_settings(rows, axis))
    return fig


def _fixed_settings(rows: list[dict], axis: str | None) -> str:
    """ " (|Ω| = 3, ε = 0.01, τ = −0.85)": the settings that do not vary in the figure."""
    fixed = []
    for key in ("size", "eps", "tau"):
        values = sorted({r[key] for r in rows if key in r})
        if key != axis and values:
            fixed.append(f"{AXIS_LABELS[key]} = {', '.join(f'{v:g}' for v in values)}")
    return f" ({'; '.join(fixed)})" if fixed else ""


def _iterations_figure(
    con: duckdb.DuckDBPyConnection, run: str, selection: Selection, attacks: Sequence[str]
) -> Figure:
    """Success rate against iterations: the share of attacked pairs that succeeded by iteration t
    (from the rows' ``success_iteration``), one line per attack."""
    rows = fetch_dicts(
        con,
        """SELECT r.run_id, ru.model_name, ru.dataset, r.attack, c.size, r.eps, r.tau, r.success, r.success_iteration
           FROM results AS r JOIN combinations AS c USING (run_id, combo_id) JOIN runs AS ru USING (run_id)
           WHERE r.run_id = $run""",
        {"run": run},
    )
    rows = only_attacks(pick(rows, selection), attacks)
    if not rows:
        raise BenchError(f"run {run!r} has no rows for that selection")
    by_attack: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_attack[r["attack"]].append(r)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.4, 3.8), layout="constrained")
    ax = fig.subplots()
    for attack in ordered(set(by_attack), list(ATTACK_NAMES)):
        group = by_attack[attack]
        its = np.array([r["success_iteration"] for r in group if r["success"]], dtype=int)
        budget = max(r["success_iteration"] for r in group)
        t = np.arange(budget + 1)
        share = 100.0 * np.searchsorted(np.sort(its), t, side="right") / len(group)
        ax.step(t, share, where="post", label=label(attack_display(attack)))
    ax.set_xlabel("iteration")
    ax.set_ylabel("pairs succeeded (%)")
    ax.set_ylim(0.0, 100.0)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize="small")
    fig.suptitle(f"{_run_title(rows[0])}: success rate against iterations\n" + _fixed_settings(rows, None).strip(" ()"))
    return fig


def _rmsd_figure(con: duckdb.DuckDBPyConnection, run: str, selection: Selection, attacks: Sequence[str]) -> Figure:
    rows = fetch_dicts(
        con,
        """SELECT r.run_id, ru.model_name, ru.dataset, r.attack, c.size, r.eps, r.tau, r.success, r.rmsd
           FROM results AS r JOIN combinations AS c USING (run_id, combo_id) JOIN runs AS ru USING (run_id)
           WHERE r.run_id = $run
             AND r.attack IN (SELECT DISTINCT attack FROM results WHERE run_id = $run AND rmsd IS NOT NULL)""",
        {"run": run},
    )
    if not rows:
        raise BenchError(f"run {run!r} has no RMSD values (ML-DP rows)")
    rows = only_attacks(pick(rows, selection), attacks)
    by_attack: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_attack[r["attack"]].append(r)
    names = ordered(set(by_attack), list(ATTACK_NAMES))
    values = [r["rmsd"] for r in rows if r["rmsd"] is not None]
    edges = np.linspace(0.0, max(values) if values else 1.0, RMSD_BINS + 1)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(4.2 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharex=True)[0]
    for ax, attack in zip(axes, names):
        group = by_attack[attack]
        rmsd = np.array([r["rmsd"] for r in group if r["rmsd"] is not None], dtype=float)
        ax.hist(rmsd, bins=edges, color="tab:blue", edgecolor="white")
        ax.set_title(f"{label(attack_display(attack))}: {len(rmsd)}/{len(group)} reached the target", fontsize="medium")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("RMSD")
        ax.set_ylabel("adversarial examples")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{_run_title(rows[0])}: ML-DP perturbation size")
    return fig
