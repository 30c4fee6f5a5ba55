"""The paper's tables from the ``rate_summary`` view, rendered as rich, Markdown, LaTeX or CSV.

* **Paper layout** (Supp. Table 1): rows = (model, attack), column groups = datasets, each
  with ↑FR_N, ↑FR_S, ↓NT_R (mean ± std over target combinations, in %) and ↑SSIM.
* **Ablation layout** (Supp. Table 2): rows = |Ω|, column groups = metrics, each with one
  column per attack (GMLA_α / GMLA_β / GMLA by default).

SSIM is pooled over the successful images of all combinations (the paper: one mean, no
std) unless ``ssim="combinations"`` asks for mean ± std of the per-combination means.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum

import duckdb
from rich import box
from rich.table import Table

from bench.errors import AmbiguousChoice, BenchError, unknown
from bench.names import ATTACK_NAMES, WORST_CASE, attack_display
from results.views import (
    ANY,
    Selection,
    check_notes,
    defense_notes,
    fetch_dicts,
    only_attacks,
    pick,
    run_ids,
    run_protocol,
    summary,
    unfinished_notes,
)


class TableFormat(str, Enum):
    rich = "rich"
    markdown = "markdown"
    latex = "latex"
    csv = "csv"


#: metric key → (label, arrow: which way is better, shown in %)
METRICS = {
    "fr_n": ("FR_N", "↑", True),
    "fr_s": ("FR_S", "↑", True),
    "nt_r": ("NT_R", "↓", True),
    "ssim": ("SSIM", "↑", False),
    "det": ("Det.", "↓", True),  # a defense's detector: the share of successes it rejected
    "fr_n_after": ("FR_N after det.", "↑", True),  # successes the detector let through
}
DETECTOR_METRICS = ("det", "fr_n_after")  # shown by default only for a run against a detector
SSIM_MODES = ("pooled", "combinations")

ABLATION_ATTACKS = ("gmla-alpha", "gmla-beta", "gmla")
MODEL_NAMES = {"ml-gcn": "ML-GCN", "asl": "ASL", "ml-decoder": "ML-Decoder"}
DATASET_NAMES = {"voc": "PASCAL-VOC", "nus": "NUS-WIDE", "openimages": "OpenImages", "stamps": "Stamps"}


def display(names: dict[str, str], key: str) -> str:
    """The paper's spelling of an attack, model or dataset name (the name itself if unknown)."""
    return names.get(key, key)


def ordered(keys: set[str], known: Sequence[str]) -> list[str]:
    """The paper's order for known names, then the others alphabetically; the worst case over
    attacks last (as ``bench.names.paper_order``)."""
    rank = {k: i for i, k in enumerate(known)}
    return sorted(keys, key=lambda k: (k == WORST_CASE, rank.get(k, len(rank)), k))


def check_metrics(metrics: Sequence[str], ssim: str = SSIM_MODES[0]) -> list[str]:
    """The metrics asked for (all when none); unknown names and SSIM modes suggest known ones."""
    if ssim not in SSIM_MODES:
        raise unknown("SSIM mode", ssim, SSIM_MODES)
    out = [m.lower() for m in metrics] or [m for m in METRICS if m not in DETECTOR_METRICS]
    for m in out:
        if m not in METRICS:
            raise unknown("metric", m, METRICS)
    return out


@dataclass(frozen=True)
class Cell:
    mean: float | None
    std: float | None
    percent: bool


@dataclass(frozen=True)
class Group:
    """A column group (a dataset, or a metric) and its columns as (key, label)."""

    key: str
    label: str
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Row:
    keys: tuple[str, ...]
    labels: tuple[str, ...]
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Layout:
    title: str
    row_headers: tuple[str, ...]
    groups: tuple[Group, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()  # printed under the table

    def by_group(self) -> list[Layout]:
        """One layout per column group (a wide table printed in parts)."""
        out, start = [], 0
        for g in self.groups:
            cells = slice(start, start + len(g.columns))
            rows = tuple(Row(r.keys, r.labels, r.cells[cells]) for r in self.rows)
            out.append(Layout(f"{self.title}: {g.label}", self.row_headers, (g,), rows, self.notes))
            start += len(g.columns)
        return out


UNBOUNDED_NOTE = "ML-DP is not held to ε: its perturbation is unbounded (measured by RMSD)."
WORST_CASE_NOTE = (
    "Worst case: an image and Ω count as fooled if any attack of the run fooled them within ε, over every τ "
    "(a perturbation larger than ε does not count); FR_S, NT_R and SSIM are those of the attack that did "
    "(a consistent one first, then the lowest NT_R)."
)


def _cell(summary_row: dict | None, metric: str, ssim: str) -> Cell:
    percent = METRICS[metric][2]
    if summary_row is None:
        return Cell(None, None, percent)
    if metric == "ssim" and ssim == "pooled":
        return Cell(summary_row["ssim_pooled"], None, percent)
    return Cell(summary_row[f"{metric}_mean"], summary_row[f"{metric}_std"], percent)


def _metric_label(metric: str) -> str:
    label, arrow, _ = METRICS[metric]
    return f"{arrow}{label}"


def _title(rows: list[dict], selection: Selection) -> str:
    """The |Ω|, ε and τ the table shows: the ones asked for, else those stored."""
    parts = []
    for axis, label in (("size", "|Ω|"), ("eps", "ε"), ("tau", "τ")):
        wanted = getattr(selection, axis)
        values = [wanted] if wanted is not None else sorted({r[axis] for r in rows})
        parts.append(f"{label} = " + ", ".join(f"{v:g}" for v in values))
    return "; ".join(parts)


def paper_layout(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[str] = (),
    selection: Selection = ANY,
    metrics: Sequence[str] = (),
    attacks: Sequence[str] = (),
    ssim: str = "pooled",
) -> Layout:
    """Models × attacks as rows, datasets × metrics as columns (Supp. Table 1)."""
    asked = bool(metrics)
    metrics = check_metrics(metrics, ssim)
    runs = run_ids(con, runs)
    rows = only_attacks(summary(con, runs, selection), attacks)
    if not asked and any(r.get("det_mean") is not None for r in rows):
        metrics += list(DETECTOR_METRICS)
    owner: dict[tuple[str, str], str] = {}
    for r in rows:
        key = (r["model_name"], r["dataset"])
        if owner.setdefault(key, r["run_id"]) != r["run_id"]:
            raise AmbiguousChoice(
                f"runs {owner[key]!r} and {r['run_id']!r} both hold {key[0]} on {key[1]}",
                "runs",
                [owner[key], r["run_id"]],
            )
    by_cell = {(r["model_name"], r["attack"], r["dataset"]): r for r in rows}
    datasets = ordered({r["dataset"] for r in rows}, list(DATASET_NAMES))
    models = list(dict.fromkeys(r["model_name"] for r in sorted(rows, key=lambda r: runs.index(r["run_id"]))))
    groups = tuple(Group(d, display(DATASET_NAMES, d), tuple((m, _metric_label(m)) for m in metrics)) for d in datasets)
    out = []
    for model in models:
        for attack in ordered({r["attack"] for r in rows if r["model_name"] == model}, list(ATTACK_NAMES)):
            cells = tuple(_cell(by_cell.get((model, attack, d)), m, ssim) for d in datasets for m in metrics)
            out.append(Row((model, attack), (display(MODEL_NAMES, model), attack_display(attack)), cells))
    in_table = {r["attack"] for r in rows}
    notes = (UNBOUNDED_NOTE,) * ("ml-dp" in in_table) + (WORST_CASE_NOTE,) * (WORST_CASE in in_table)
    shown = list(dict.fromkeys(r["run_id"] for r in rows))
    notes += unfinished_notes(con, shown) + defense_notes(con, shown) + check_notes(con, shown)
    return Layout(_title(rows, selection), ("Model", "Attack"), groups, tuple(out), notes)


def ablation_layout(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[str] = (),
    selection: Selection = ANY,
    metrics: Sequence[str] = ("fr_n", "fr_s", "nt_r"),
    attacks: Sequence[str] = (),
    ssim: str = "pooled",
) -> Layout:
    """|Ω| as rows, metrics × attacks as columns (Supp. Table 2) for one run."""
    metrics = check_metrics(metrics, ssim)
    stored = run_ids(con, runs)
    if len(stored) != 1:
        raise AmbiguousChoice("the ablation layout shows one run", "runs", stored)
    rows = summary(con, stored, selection, vary="size")
    if attacks:
        rows = only_attacks(rows, attacks)
    else:
        rows = [r for r in rows if r["attack"] in ABLATION_ATTACKS]
        if not rows:
            raise BenchError(
                f"run {stored[0]!r} has no GMLA_α, GMLA_β or GMLA rows: name the attacks to show with {{attacks}}",
                options=["attacks"],
            )
    by_cell = {(r["size"], r["attack"]): r for r in rows}
    names = ordered({r["attack"] for r in rows}, list(ATTACK_NAMES))
    sizes = sorted({r["size"] for r in rows})
    if selection.size is not None:
        sizes = [s for s in sizes if s == selection.size]
    groups = tuple(Group(m, _metric_label(m), tuple((a, attack_display(a)) for a in names)) for m in metrics)
    out = tuple(
        Row((str(s),), (str(s),), tuple(_cell(by_cell.get((s, a)), m, ssim) for m in metrics for a in names))
        for s in sizes
    )
    first = rows[0]
    title = f"{display(MODEL_NAMES, first['model_name'])} on {display(DATASET_NAMES, first['dataset'])}; "
    title += _title(rows, selection)
    notes = (WORST_CASE_NOTE,) * (WORST_CASE in names) + unfinished_notes(con, stored) + check_notes(con, stored)
    return Layout(title, ("|Ω|",), groups, out, notes)


TRANSFER_METRICS = ("fr_n", "fr_s", "nt_r")
TRANSFER_NOTE = (
    "Transfer: the run's adversarial images on other models, pooled over |Ω|, over the pairs that fooled the run's "
    "model and whose clean prediction on the target is consistent with the graph with every label of Ω positive "
    "(Ψ from that prediction)."
)


def transfer_layout(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[str] = (),
    selection: Selection = ANY,
    metrics: Sequence[str] = TRANSFER_METRICS,
    attacks: Sequence[str] = (),
    ssim: str = "pooled",
) -> Layout:
    """Attacks as rows, transfer targets × (FR_N, FR_S, NT_R) as columns, for one run: the
    ``transfer_rates`` view (``bench run --transfer-to``), in %; one value per cell (pooled)."""
    metrics = check_metrics(metrics, ssim)
    if "ssim" in metrics:
        raise BenchError("the transfer layout shows fr_n, fr_s and nt_r: the transfer table holds no SSIM")
    if selection.size is not None:
        raise BenchError(
            "the transfer layout pools every |Ω| (the transfer_rates view): leave out {size}, or read one |Ω| "
            "from the transfer table with SQL",
            options=["size"],
        )
    stored = run_ids(con, runs)
    rows = fetch_dicts(
        con,
        "SELECT * FROM transfer_rates WHERE list_contains($runs, run_id) ORDER BY run_id, target, attack, eps, tau",
        {"runs": stored},
    )
    holding = sorted({r["run_id"] for r in rows}, key=stored.index)
    if not holding:
        raise BenchError(
            f"run(s) {', '.join(stored)} have no transfer rows: add targets with `bench run … --transfer-to MODEL`"
        )
    if len(holding) > 1:
        raise AmbiguousChoice("the transfer layout shows one run", "runs", holding)
    rows = only_attacks(pick(rows, selection, vary="size"), attacks)
    run = holding[0]
    model = fetch_dicts(con, "SELECT model_name FROM runs WHERE run_id = ?", [run])[0]["model_name"]
    by_cell = {(r["attack"], r["target"]): r for r in rows}
    targets = sorted({r["target"] for r in rows})
    names = ordered({r["attack"] for r in rows}, list(ATTACK_NAMES))
    groups = tuple(Group(t, t, tuple((m, _metric_label(m)) for m in metrics)) for t in targets)
    out = tuple(
        Row(
            (a,),
            (attack_display(a),),
            tuple(_transfer_cell(by_cell.get((a, t)), m) for t in targets for m in metrics),
        )
        for a in names
    )
    parts = []
    for axis, label in (("eps", "ε"), ("tau", "τ")):
        wanted = getattr(selection, axis)
        values = [wanted] if wanted is not None else sorted({r[axis] for r in rows})
        parts.append(f"{label} = " + ", ".join(f"{v:g}" for v in values))
    title = f"Transfer from {display(MODEL_NAMES, model)} (run {run}); " + "; ".join(parts)
    counts = []
    for t in targets:
        mine = [r for r in rows if r["target"] == t]
        fooled, eligible = sum(r["source_successes"] for r in mine), sum(r["pairs"] for r in mine)
        counts.append(f"{t}: {eligible} of the {fooled} pairs that fooled the run's model are eligible on it.")
    notes = (TRANSFER_NOTE, *counts) + (UNBOUNDED_NOTE,) * ("ml-dp" in names) + unfinished_notes(con, [run])
    return Layout(title, ("Attack",), groups, out, notes)


def _transfer_cell(row: dict | None, metric: str) -> Cell:
    return Cell(None if row is None else row[metric], None, True)


# ---------------------------------------------------------------------- renderers
def format_cell(cell: Cell, digits: int = 1) -> str:
    """``mean ± std`` (% metrics with ``digits`` decimals, SSIM with 2), ``–`` when empty."""
    if cell.mean is None:
        return "–"
    d = digits if cell.percent else 2
    return fixed(cell.mean, d) + ("" if cell.std is None else f" ± {fixed(cell.std, d)}")


def fixed(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, halves rounded up, after dropping the last bits of
    noise (12 significant digits): aggregates that DuckDB sums in another order, equal up to
    their last bit, print the same (6.25 and 6.2500000000001 both give 6.3)."""
    rounded = Decimal(f"{value:.12g}").quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return str(abs(rounded) if rounded == 0 else rounded)  # no "-0.0"


def _headers(layout: Layout, sep: str) -> list[str]:
    return list(layout.row_headers) + [f"{g.label}{sep}{label}" for g in layout.groups for _, label in g.columns]


def _shown_labels(layout: Layout) -> list[list[str]]:
    """Row labels with a repeated leading label blanked (the model shown once per group)."""
    out, previous = [], None
    for row in layout.rows:
        labels = list(row.labels)
        if len(labels) > 1 and labels[0] == previous:
            labels[0] = ""
        else:
            previous = labels[0]
        out.append(labels)
    return out


def to_rich(layout: Layout, digits: int = 1) -> Table:
    """A rich table; each group's label heads its first column, sections end with a rule."""
    table = Table(title=layout.title, caption=" ".join(layout.notes) or None, header_style="bold", box=box.SIMPLE_HEAVY)
    for header in layout.row_headers:
        table.add_column(header, no_wrap=True)
    for g in layout.groups:
        for i, (_, label) in enumerate(g.columns):
            table.add_column(f"{g.label if i == 0 else ''}\n{label}", justify="right", no_wrap=True)
    shown = _shown_labels(layout)
    for i, row in enumerate(layout.rows):
        last_of_group = i + 1 == len(layout.rows) or (len(row.labels) > 1 and shown[i + 1][0] != "")
        table.add_row(*shown[i], *(format_cell(c, digits) for c in row.cells), end_section=last_of_group)
    return table


def to_markdown(layout: Layout, digits: int = 1) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    headers = _headers(layout, " ")
    lines = [
        f"**{esc(layout.title)}**",
        "",
        "| " + " | ".join(esc(h) for h in headers) + " |",
        "|" + "|".join(":--" if i < len(layout.row_headers) else "--:" for i in range(len(headers))) + "|",
    ]
    for labels, row in zip(_shown_labels(layout), layout.rows):
        lines.append("| " + " | ".join([esc(x) for x in labels] + [format_cell(c, digits) for c in row.cells]) + " |")
    lines += [f"\n*{esc(note)}*" for note in layout.notes]
    return "\n".join(lines) + "\n"


TEX_SYMBOLS = {
    "α": r"\alpha",
    "β": r"\beta",
    "Ω": r"\Omega",
    "ε": r"\epsilon",
    "τ": r"\tau",
    "↑": r"\uparrow",
    "↓": r"\downarrow",
    "±": r"\pm",
    "–": "--",
}


def tex(text: str) -> str:
    """Plain text with the paper's symbols → LaTeX (FR_N → FR$_{N}$, GMLA_α → GMLA$_{\\alpha}$)."""
    text = re.sub(r"[&%#$\\{}]", lambda m: r"\textbackslash{}" if m[0] == "\\" else "\\" + m[0], text)
    text = text.replace("|Ω|", "$|\\Omega|$")
    text = re.sub(r"_(\w(?!\w))?", lambda m: "$_{" + TEX_SYMBOLS.get(m[1], m[1]) + "}$" if m[1] else r"\_", text)
    for symbol, command in TEX_SYMBOLS.items():
        text = text.replace(symbol, command if symbol == "–" else f"${command}$")
    return text


def to_latex(layout: Layout, digits: int = 1) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): group headers with \\cmidrule."""
    n_head = len(layout.row_headers)
    spec = "l" * n_head + "".join(" " + "c" * len(g.columns) for g in layout.groups)
    group_line, rules, start = ["" for _ in range(n_head)], [], n_head + 1
    for g in layout.groups:
        group_line.append(rf"\multicolumn{{{len(g.columns)}}}{{c}}{{{tex(g.label)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(g.columns) - 1}}}")
        start += len(g.columns)
    column_line = [tex(h) for h in layout.row_headers] + [tex(label) for g in layout.groups for _, label in g.columns]
    lines = [
        f"% {tex(layout.title)}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(group_line) + r" \\",
        " ".join(rules),
        " & ".join(column_line) + r" \\",
        r"\midrule",
    ]
    shown = _shown_labels(layout)
    for i, row in enumerate(layout.rows):
        if i and n_head > 1 and shown[i][0]:
            lines.append(r"\midrule")
        cells = [tex(x) for x in shown[i]] + [tex(format_cell(c, digits)) for c in row.cells]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"] + [f"% {tex(note)}" for note in layout.notes]
    return "\n".join(lines) + "\n"


def to_csv(layout: Layout) -> str:
    """One line per row; ``<group>_<column>_mean`` / ``_std`` columns at full precision."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    head = [h.strip("|").replace("Ω", "size").lower() for h in layout.row_headers]
    writer.writerow(
        head + [f"{g.key}_{key}_{part}" for g in layout.groups for key, _ in g.columns for part in ("mean", "std")]
    )
    for row in layout.rows:
        values = []
        for cell in row.cells:
            values += ["" if v is None else f"{v:.6g}" for v in (cell.mean, cell.std)]
        writer.writerow(list(row.keys) + values)
    return buf.getvalue()


def render(layout: Layout, fmt: TableFormat | str, digits: int = 1) -> Table | str:
    """The layout in one format: a rich ``Table``, or Markdown/LaTeX/CSV text."""
    fmt = TableFormat(fmt)
    if fmt is TableFormat.rich:
        return to_rich(layout, digits)
    if fmt is TableFormat.markdown:
        return to_markdown(layout, digits)
    if fmt is TableFormat.latex:
        return to_latex(layout, digits)
    return to_csv(layout)


DEFENSE_METRICS = ("fr_n", "fr_s", "nt_r", "det")
CLEAN_COLUMNS = (("map", "mAP"), ("consistent", "consistent"), ("rejected", "rejected"))


def defense_layout(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[str] = (),
    selection: Selection = ANY,
    metrics: Sequence[str] = DEFENSE_METRICS,
    attacks: Sequence[str] = (),
    ssim: str = "pooled",
) -> Layout:
    """The defended-model comparison: one block of rows per run (its model and defense, or
    none), each attack a row; columns: the clean images (mAP, consistent predictions, rejected
    by the defense's detector, in %; ``clean_stats``) and the attack's FR_N, FR_S, NT_R and
    detection (mean ± std over combinations, as the paper layout)."""
    metrics = check_metrics(metrics or DEFENSE_METRICS, ssim)
    stored = run_ids(con, runs)
    rows = only_attacks(summary(con, stored, selection), attacks)
    clean = {
        r["run_id"]: r for r in fetch_dicts(con, "SELECT * FROM clean_stats WHERE list_contains(?, run_id)", [stored])
    }
    by_cell = {(r["run_id"], r["attack"]): r for r in rows}
    groups = (
        Group("clean", "Clean images", CLEAN_COLUMNS),
        Group("attack", "Attack", tuple((m, _metric_label(m)) for m in metrics)),
    )
    out = []
    for run in stored:
        config = fetch_dicts(con, "SELECT model_name FROM runs WHERE run_id = ?", [run])[0]
        protocol = run_protocol(con, run)
        defense = protocol.defense
        name = "none" if not defense else defense["defense"] + (f" (EOT {protocol.eot})" if protocol.eot > 1 else "")
        stats = clean.get(run, {})
        base = tuple(Cell(None if stats.get(k) is None else 100 * stats[k], None, True) for k, _ in CLEAN_COLUMNS)
        for attack in ordered({r["attack"] for r in rows if r["run_id"] == run}, list(ATTACK_NAMES)):
            cells = base + tuple(_cell(by_cell.get((run, attack)), m, ssim) for m in metrics)
            model = display(MODEL_NAMES, config["model_name"])
            out.append(Row((run, name, attack), (f"{model} ({run})", name, attack_display(attack)), cells))
    notes = defense_notes(con, stored) + unfinished_notes(con, stored) + check_notes(con, stored)
    return Layout(
        "Defended models: " + _title(rows, selection), ("Model (run)", "Defense", "Attack"), groups, tuple(out), notes
    )
