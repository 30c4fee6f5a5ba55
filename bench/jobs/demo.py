"""``bench demo``: the whole pipeline offline on the clip-art dataset ``stamps``.

1. build ``stamps`` at the demo recipe's image size (cached after the first time);
2. train the demo model (``bench train --preset demo``), or reuse the newest model trained
   with exactly that recipe, so a second demo skips training;
3. print its test mAP and the share of globally consistent predictions (its model card);
4. sweep |Ω| = 1–3 with all seven attacks under the ``fast`` preset into
   ``<out>/results.duckdb`` as run ``stamps-demo`` (a re-run resumes or finds it done);
5. the paper layout for each |Ω| and the ablation layout (also as ``tables.md``), and the
   plots ``size.png`` (FR_S and NT_R against |Ω|) and ``rmsd.png`` (ML-DP at |Ω| = 3), in ``<out>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from bench.datasets import create_dataset
from bench.errors import BenchError
from bench.fileio import write_text
from bench.models.trained import list_trained
from bench.paths import RESULTS_NAME, demo_results
from bench.sweep.build import load_inputs
from bench.sweep.config import sweep_config
from bench.sweep.prepare import SweepOutcome
from bench.sweep.presets import FAST
from bench.sweep.progress import RichSweepProgress, StageTimes
from bench.sweep.runner import run_sweep
from bench.train import preset_config, run_dir_for, train
from results.plots import plot
from results.report import build_report
from results.store import ResultStore
from results.tables import ablation_layout, paper_layout, render
from results.views import Selection

DEMO_EXAMPLES = 1  # adversarial examples saved per combination and attack, for report.html
DEMO_RUN = "stamps-demo"
DATASET = "stamps"
NOT_RECIPE = ("device", "train_seconds")  # recorded in a card's recipe, not part of it


@dataclass
class DemoReport:
    """What the demo made: the sweep, the tables (rich layouts), the figures, the stage times."""

    outcome: SweepOutcome
    tables: list = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    times: StageTimes = field(default_factory=StageTimes)
    folder: Path = Path(".")


def demo_model(device: torch.device, console: Console, retrain: bool = False):
    """``(run_dir, card)`` of the newest model trained with the demo recipe, training one if none."""
    config = preset_config("demo").resolved()
    wanted = config.to_dict()
    if not retrain:
        for run_dir, card in list_trained(DATASET):
            if {k: v for k, v in card.recipe.items() if k not in NOT_RECIPE} == wanted:
                console.print(f"model: reusing {run_dir.name} (trained with the demo recipe; --retrain for a new one)")
                return run_dir, card
    run_dir = run_dir_for(config, f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    console.print(
        f"model: training {config.model} on {DATASET} at {config.image_size} px for {config.epochs} epochs "
        f"(the demo recipe, `bench train --preset demo`) → {run_dir}"
    )
    result = train(config, run_dir=run_dir, device=device)
    return result.run_dir, result.card


def _results_file(out: Path, config, console: Console):
    """The demo's results store; a file holding another ``stamps-demo`` (another model) is moved aside."""
    path = out / RESULTS_NAME
    store = ResultStore(path)
    try:
        stored = store.run_config(DEMO_RUN)
    except BenchError:
        return store
    if stored.config_hash == config.config_hash:
        return store
    aside = path.with_name(f"results.{time.strftime('%Y%m%d-%H%M%S')}.duckdb")
    path.rename(aside)
    console.print(f"the demo results of another model moved to {aside}")
    return ResultStore(path)


def run_demo(out: Path | None, device: torch.device, console: Console, retrain: bool = False) -> DemoReport:
    """Run the demo pipeline (module docstring), narrating on ``console``; returns what it made."""
    out = Path(out) if out is not None else demo_results().parent
    out.mkdir(parents=True, exist_ok=True)
    times = StageTimes()
    started = time.perf_counter()
    _print_preset(console)
    size = preset_config("demo").resolved().image_size
    with times("dataset"):
        create_dataset(DATASET, "train", image_size=size)
        test = create_dataset(DATASET, "test", image_size=size)
    with times("model"):
        run_dir, card = demo_model(device, console, retrain)
    console.print(
        f"model {run_dir.name}: test mAP {card.test_map:.3f}, globally consistent predictions "
        f"{100 * (card.consistency_share or 0):.1f}% of {len(test)} test images (from its model card)"
    )
    inputs = load_inputs(DATASET, str(run_dir), device=device)
    config = sweep_config(DATASET, inputs.model, inputs.graph, FAST, name=DEMO_RUN, device=str(device))
    store = _results_file(out, config, console)
    with times("sweep"), RichSweepProgress(console) as progress:
        outcome = run_sweep(
            config,
            inputs.net,
            inputs.data,
            inputs.graph,
            store,
            device=device,
            progress=progress,
            save_images=DEMO_EXAMPLES,
        )
    report = DemoReport(outcome, times=times, folder=out)
    with times("tables and plots"):
        _tables_and_plots(store, config, out, report)
    times["total"] = time.perf_counter() - started
    return report


def _print_preset(console: Console) -> None:
    table = Table(title=f"preset fast: {FAST.summary}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in FAST.describe(DATASET):
        table.add_row(key, value)
    console.print(table)


def _tables_and_plots(store, config, out: Path, report: DemoReport) -> None:
    eps, tau = config.eps[0], config.tau[0]
    with store.reader() as con:
        report.tables = [paper_layout(con, [DEMO_RUN], Selection(k, eps, tau)) for k in config.sizes]
        report.tables.append(ablation_layout(con, [DEMO_RUN], Selection(None, eps, tau)))
        markdown = "\n".join(str(render(t, "markdown")) for t in report.tables)
        report.figures.append(write_text(out / "tables.md", markdown))
        report.figures.append(plot(con, "size", out / "size.png", DEMO_RUN, Selection(None, eps, tau)))
        try:
            report.figures.append(plot(con, "rmsd", out / "rmsd.png", DEMO_RUN, Selection(max(config.sizes), eps, tau)))
        except BenchError as exc:  # no ML-DP success in a tiny sweep: say so, keep the rest
            report.notes.append(f"no RMSD plot: {exc}")
        page = build_report(con, DEMO_RUN, store.artifacts(DEMO_RUN))
    report.figures.append(write_text(out / "report.html", page))
