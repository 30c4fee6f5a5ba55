"""``bench table | sql | runs | plot | merge`` and ``bench perf db``: read and combine results."""

from __future__ import annotations

import io
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

from bench.cli.apps import MixedNumericsOption, ReadDbOption, app, output_file
from bench.cli.console import FormatOption, RowFormat, console, make_console, write_rows
from bench.errors import BenchError
from bench.fileio import write_text
from bench.paths import demo_hint
from results.plots import PlotKind, plot
from results.query import check_read_only, export_query, run_query
from results.store import READ_LOCK_TIMEOUT, ResultStore, default_db_path, read_results
from results.tables import (
    SSIM_MODES,
    TableFormat,
    ablation_layout,
    defense_layout,
    paper_layout,
    render,
    transfer_layout,
)
from results.views import Selection, fetch_dicts, run_ids


class TableLayout(str, Enum):
    paper = "paper"
    ablation = "ablation"
    transfer = "transfer"
    defenses = "defenses"


def given_runs(value: list[str] | None) -> list[str] | None:
    """``--run``: a blank run id is refused (it would read as "no run given")."""
    for run in value or []:
        if not run.strip():
            raise BenchError("--run '': name a run (`bench runs` lists them)")
    return value


RunsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--run",
        "-r",
        callback=given_runs,
        help="Run id (repeat for several; default: every run, where one is needed: the only one).",
        show_default=False,
    ),
]
SizeOption = Annotated[
    int | None,
    typer.Option("--size", help="Target set size |Ω| (needed when a run holds several).", show_default=False),
]
EpsOption = Annotated[
    float | None, typer.Option("--eps", help="ε (needed when a run holds several).", show_default=False)
]
TauOption = Annotated[
    float | None, typer.Option("--tau", help="τ (needed when an attack was run at several).", show_default=False)
]
AttackOption = Annotated[
    list[str] | None,
    typer.Option("--attack", "-a", help="Attack to show (repeat; default: all stored).", show_default=False),
]

SUFFIX_FORMATS = {
    ".md": TableFormat.markdown,
    ".tex": TableFormat.latex,
    ".csv": TableFormat.csv,
    ".txt": TableFormat.rich,
}


def _show(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    return str(value)


@app.command("table", rich_help_panel="Results")
def table(
    db: ReadDbOption = None,
    run: RunsOption = None,
    layout: Annotated[
        TableLayout,
        typer.Option(
            "--layout",
            "-l",
            help="paper (models × attacks by dataset), ablation (|Ω| rows), transfer (attacks × the models of "
            "bench run --transfer-to) or defenses (each run's defense, clean numbers and attacks side by side).",
        ),
    ] = TableLayout.paper,
    fmt: Annotated[
        TableFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="rich, markdown, latex (booktabs) or csv (default: from --out, else rich).",
            show_default=False,
        ),
    ] = None,
    size: SizeOption = None,
    eps: EpsOption = None,
    tau: TauOption = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help="fr_n, fr_s, nt_r, ssim, det, fr_n_after (repeat; default: the layout's).",
            show_default=False,
        ),
    ] = None,
    attack: AttackOption = None,
    ssim: Annotated[
        str, typer.Option("--ssim", help=f"{' or '.join(SSIM_MODES)}: the paper's one pooled mean, or mean ± std.")
    ] = SSIM_MODES[0],
    digits: Annotated[int, typer.Option("--digits", help="Decimals of the % metrics.", min=0, max=6)] = 1,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", callback=output_file, help="Write to this file (.md, .tex, .csv, .txt).", show_default=False
        ),
    ] = None,
) -> None:
    """Print the paper's result table: mean ± std over target combinations, in %.

    The paper layout has models × attacks as rows and datasets × (FR_N, FR_S, NT_R, SSIM) as
    columns (Supp. Table 1); the ablation layout has |Ω| as rows and GMLA_α / GMLA_β / GMLA
    per metric (Supp. Table 2); the transfer layout has attacks as rows and the models a run's
    adversarial images were fed to (bench run --transfer-to) × (FR_N, FR_S, NT_R) as columns,
    pooled over |Ω| and over the pairs that fooled the run's model; the defenses layout puts
    runs of one model under different defenses (bench run --defense) side by side: clean mAP,
    consistency and rejection, then FR_N, FR_S, NT_R and detection per attack.

    Example: bench table --size 3
    Example: bench table --run stamps-demo --layout ablation --format latex --out ablation.tex
    Example: bench table --run stamps-demo --layout defenses --size 2
    """
    if out is not None:  # a folder, or one that does not exist, is refused by output_file at the parser
        if out.suffix.lower() not in SUFFIX_FORMATS:
            raise BenchError(
                f"--out {out}: a table is written as {', '.join(sorted(SUFFIX_FORMATS))}, not "
                f"{out.suffix or 'a file without extension'}"
            )
    if fmt is None:
        fmt = SUFFIX_FORMATS.get(out.suffix.lower() if out else "", TableFormat.rich)
    build = {
        TableLayout.paper: paper_layout,
        TableLayout.ablation: ablation_layout,
        TableLayout.transfer: transfer_layout,
        TableLayout.defenses: defense_layout,
    }[layout]
    kwargs = {"metrics": metric} if metric else {}
    with read_results(db) as con:
        result = build(con, run or [], Selection(size, eps, tau), attacks=attack or [], ssim=ssim, **kwargs)
    rendered = render(result, fmt, digits)
    if out is None:
        if isinstance(rendered, Table):
            print_layout(result, digits)
        else:
            typer.echo(rendered, nl=False)
        return
    if isinstance(rendered, Table):
        rendered = print_wide(rendered, make_console(record=True, file=io.StringIO())).export_text()
    console.print(f"wrote {write_text(out, rendered)}")


WRAP_AT = 120  # a wider rich table is printed one column group at a time


def print_layout(layout, digits: int = 1) -> None:
    """A result table in the terminal; one wider than ``WRAP_AT`` columns is printed one column
    group (dataset or metric) at a time."""
    rendered = render(layout, "rich", digits)
    if make_console(width=10_000).measure(rendered).maximum > WRAP_AT and len(layout.groups) > 1:
        for part in layout.by_group():
            print_wide(render(part, "rich", digits))
        return
    print_wide(rendered)


def print_wide(rendered: Table | str, target: Console | None = None) -> Console:
    """Print a table at its natural width, wider than the terminal if need be (never cropped)."""
    target = target or console
    width = max(target.width, make_console(width=10_000).measure(rendered).maximum)
    wide = make_console(width=width, file=target.file, record=target.record)
    wide.print(rendered)
    return wide


@app.command("sql", rich_help_panel="Results")
def sql(
    query: Annotated[
        str,
        typer.Argument(help="One SELECT (views: combination_rates, rate_summary, worst_case, run_overview, ...)."),
    ] = "",
    db: ReadDbOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            callback=output_file,
            help="Write all rows to a .csv or .parquet file ('-': CSV to stdout).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows to print (--out writes all).", min=1)] = 50,
    allow_files: Annotated[
        bool,
        typer.Option(
            "--allow-files",
            help="Let the query read files you can read (read_csv, read_parquet, …) to join your own data; off by "
            "default.",
        ),
    ] = False,
    url: Annotated[
        bool,
        typer.Option(
            "--url", help="Print the database's read-only SQLAlchemy URL (for pandas, notebooks, BI tools) and exit."
        ),
    ] = False,
    fmt: FormatOption = RowFormat.table,
) -> None:
    """Run read-only SQL on the results and print a table.

    Tables: runs, combinations, results, checks (each run's reliability checks), transfer.
    Views: combination_rates (per combination), rate_summary (mean ± std over combinations),
    worst_case (per pair, the worst over the run's attacks), label_rates, run_overview,
    transfer_rates. The query sees the results
    database only: no other file (unless --allow-files) and no extension installed from the
    network.

    Example: bench sql "SELECT attack, size, fr_s_mean FROM rate_summary WHERE run_id = 'stamps-demo' ORDER BY size"
    Example: bench sql "SELECT * FROM results WHERE run_id = 'stamps-demo'" --out results.parquet
    Example: bench sql "SELECT attack, size, fr_n_mean FROM rate_summary WHERE run_id = 'stamps-demo'" --format json
    Example: bench sql "SELECT name, status, detail FROM checks WHERE run_id = 'stamps-demo'"
    """
    if url:
        typer.echo(ResultStore(db, create=False, lock_timeout=READ_LOCK_TIMEOUT).url)
        return
    if not query.strip():
        raise BenchError("give one SELECT statement (or --url for the database's SQLAlchemy URL)")
    check_read_only(query)  # a writing statement is refused whatever the database
    store = ResultStore(db, create=False, lock_timeout=READ_LOCK_TIMEOUT)
    if out is not None and str(out) == "-":  # every row as CSV on standard output
        out, fmt = None, RowFormat.csv
    if out is not None:
        export_query(store, query, out, allow_files)
        console.print(f"wrote {out}")
        return
    if fmt is not RowFormat.table:
        write_rows(*run_query(store, query, None, allow_files), fmt)
        return
    names, rows = run_query(store, query, limit, allow_files)
    shown = Table(header_style="bold")
    for name in names:
        shown.add_column(name, no_wrap=True)
    for row in rows[:limit]:
        shown.add_row(*(_show(v) for v in row))
    print_wide(shown)
    if len(rows) > limit:
        console.print(f"first {limit} rows shown; --limit N for more, --out FILE for all", style="dim")


@app.command("runs", rich_help_panel="Results")
def runs(db: ReadDbOption = None, fmt: FormatOption = RowFormat.table) -> None:
    """List the runs in a results database with their progress.

    Example: bench runs --db shard0.duckdb
    """
    with read_results(db) as con:
        rows = fetch_dicts(con, "SELECT * FROM run_overview ORDER BY created, run_id")
    if fmt is not RowFormat.table:
        names = list(rows[0]) if rows else []
        write_rows(names, [list(r.values()) for r in rows], fmt)
        return
    if not rows:
        console.print(f"no runs yet{demo_hint(db if db is not None else default_db_path())}", soft_wrap=True)
        return
    shown = Table(header_style="bold")
    shown.add_column("run", no_wrap=True)
    for name in ("dataset", "model", "attacks", "grid", "progress", "finished"):
        shown.add_column(name)
    for r in rows:
        grid = f"|Ω| {_show(r['sizes'])}; ε {_show(r['eps'])}; τ {_show(r['tau'])}"
        progress = (
            f"{r['complete']}/{r['combinations']} combinations, {r['rows']} rows, "
            f"shards {len(r['shards'])}/{r['shard_count']}"
        )
        shown.add_row(
            r["run_id"], r["dataset"], r["model_name"], _show(r["attacks"]), grid, progress, _show(r["finished"])
        )
    console.print(shown)


@app.command("report", rich_help_panel="Results")
def report_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", callback=output_file, help="The .html file to write.")] = Path(
        "report.html"
    ),
    db: ReadDbOption = None,
    run: RunsOption = None,
) -> None:
    """Write one self-contained HTML report of a run: provenance, tables, plots, adversarial examples, drill-down.

    Opens offline in any browser (images and plots embedded, nothing fetched). Adversarial
    examples appear when the run saved them (bench run --save-images N). With --run given
    several times, one report per run: OUT's name with -RUN added (report-RUN.html).

    Example: bench report --run stamps-demo --out report.html
    """
    import time

    from results.report import build_report

    if out.suffix.lower() not in (".html", ".htm"):
        raise BenchError(f"--out {out}: a report is an .html file")
    store = ResultStore(db, create=False, lock_timeout=READ_LOCK_TIMEOUT)
    with store.reader() as con:
        chosen = run_ids(con, run or [])  # the runs named (each checked), else every stored one
        if not run and len(chosen) != 1:
            raise BenchError(f"the database holds {len(chosen)} runs: pick one with --run ({', '.join(chosen[:5])})")
        for one in chosen:
            started = time.perf_counter()
            page = build_report(con, one, store.artifacts(one))
            target = out if len(chosen) == 1 else out.with_name(f"{out.stem}-{one}{out.suffix}")
            path = write_text(target, page)
            console.print(f"wrote {path} ({len(page.encode()) / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s)")


@app.command("plot", rich_help_panel="Results")
def plot_cmd(
    kind: Annotated[
        PlotKind,
        typer.Argument(
            help="size (vs |Ω|), eps, tau (sweeps, Supp. Fig. 1), rmsd (ML-DP, Supp. Fig. 2) "
            "or iterations (success rate vs Auto-PGD iterations)."
        ),
    ],
    db: ReadDbOption = None,
    run: RunsOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            callback=output_file,
            help="A .png or .pdf file (default: RUN-KIND.png here, one per --run).",
            show_default=False,
        ),
    ] = None,
    size: SizeOption = None,
    eps: EpsOption = None,
    tau: TauOption = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", help="fr_n, fr_s, nt_r, ssim (repeat; default fr_s and nt_r).", show_default=False
        ),
    ] = None,
    attack: AttackOption = None,
) -> None:
    """Draw FR_S and NT_R against |Ω|, ε or τ per attack, ML-DP RMSD histograms, or success against iterations.

    Example: bench plot size --run stamps-demo --out size.pdf
    Example: bench plot tau --size 5
    """
    named = len(set(run or []))
    if out is not None and named > 1:
        raise BenchError(f"--out names one file and --run {named} runs: leave --out out (RUN-KIND.png each)")
    with read_results(db) as con:
        chosen: list[str | None] = list(run_ids(con, run or []))  # every named run checked before any figure
        if not run and len(chosen) != 1:
            chosen = [None]  # several stored and none named: plot() asks for --run
        selection, metrics = Selection(size, eps, tau), metric or ("fr_s", "nt_r")
        for one in chosen:
            target = out or Path(f"{one}-{kind.value}.png")
            path = plot(con, kind, target, one, selection, metrics, attack or [])
            console.print(f"wrote {path}")


@app.command("merge", rich_help_panel="Results")
def merge(
    files: Annotated[
        list[Path],
        typer.Argument(help="Results files to merge (e.g. one per --shard).", exists=True, dir_okay=False),
    ],
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            callback=output_file,
            help="Results database to merge into (default: $BENCH_DATA/results.duckdb).",
            show_default=False,
        ),
    ] = None,
    allow_mixed_numerics: MixedNumericsOption = False,
) -> None:
    """Merge results files (shards of one sweep) into one database; refuses mismatched runs.

    Rows already present are skipped, so merging a file twice changes nothing. A run whose
    rows on the two sides were computed on machines of different numerics fingerprints is
    refused unless --allow-mixed-numerics (recorded in the machines table).

    Example: bench merge shard0.duckdb shard1.duckdb --db all.duckdb
    """
    for path in files:  # each must read as a results database before the target is opened or made
        with read_results(path):
            pass
    store = ResultStore(db)
    shown = Table(header_style="bold")
    for name in ("file", "runs", "rows added"):
        shown.add_column(name)
    for path in track(files, description="merging", console=console, transient=True):
        (report,) = store.merge([path], allow_mixed=allow_mixed_numerics)
        shown.add_row(str(report.path), ", ".join(report.runs), str(report.rows_added))
    console.print(shown)
    console.print(f"merged into {store.path}")
