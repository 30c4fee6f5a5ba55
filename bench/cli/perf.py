"""``bench perf kg | attack | sweep | db``: the product's own speed, as ratios measured in one run.

Each command parses its options, calls one library function (``kg.perf``, ``bench.attacks.perf``,
``bench.jobs.sweep_perf``, ``results.perf``) and prints what it measured.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress, track
from rich.table import Table

from bench.cli.apps import (
    CpuNumericsOption,
    DeviceOption,
    ModelDatasetOption,
    ModelOption,
    PairBatchOption,
    canonical_graph,
    perf_app,
)
from bench.cli.console import console, styled
from kg.catalog import graph_names, load_graph


# --------------------------------------------------------------------- perf kg
@perf_app.command("kg")
def perf_kg(
    dataset: Annotated[
        str,
        typer.Option(
            "--graph",
            "-g",
            callback=canonical_graph,
            help="Graph whose labels are combined ('synthetic': a random tree of 20 labels + 15 abstract nodes).",
        ),
    ] = "voc",
    k: Annotated[int, typer.Option("--size", min=1, help="Combination size |Ω|.")] = 3,
    repeats: Annotated[int, typer.Option(help="Repeats of the single round trip (the median is reported).")] = 5,
    store: Annotated[
        str, typer.Option("--graph-store", help="ladybug (a temporary file) or neo4j (the server of NEO4J_URI).")
    ] = "ladybug",
) -> None:
    """Time all combinations of k labels in one Cypher round trip against one round trip each.

    Runs on a temporary Ladybug store (or on the Neo4j server, under a graph name of its own,
    dropped afterwards) and checks that both give the graph's own ancestors and descendants.
    One round trip per combination is timed on a sample of at most 1,000.

    Example: bench perf kg --graph nus --size 3
    """
    from kg.perf import measure_kg, synthetic_tree
    from kg.stores import check_store

    check_store(store)

    if dataset == "synthetic" or (dataset == "voc" and "voc" not in graph_names()):
        if dataset != "synthetic":
            console.print(
                "kg/graphs/voc.json is not there yet: using a random tree of 20 labels + 15 abstract nodes",
                style="yellow",
            )
        graph = synthetic_tree()
    else:
        graph = load_graph(dataset)
    with Progress(console=console, transient=True) as progress:
        perf = measure_kg(
            graph,
            k,
            repeats,
            track=lambda xs: progress.track(xs, description="one round trip per combination"),
            store_kind=store,
        )
    where = "Ladybug" if store == "ladybug" else "Neo4j"
    table = Table(
        title=f"{perf.combinations:,} combinations of {k} of the {graph.n_labels} labels of {graph.name!r} ({where})",
        show_edge=False,
    )
    for column in ("method", "round trips", "time", "per combination"):
        table.add_column(column, justify="left" if column == "method" else "right")
    single, looped = perf.together, perf.one_each * perf.combinations
    table.add_row(
        f"one round trip (median of {repeats})",
        "1",
        f"{single * 1e3:,.1f} ms",
        f"{single / perf.combinations * 1e6:,.2f} µs",
    )
    table.add_row(
        f"one per combination ({perf.sampled:,} timed)",
        f"{perf.combinations:,}",
        f"{looped * 1e3:,.1f} ms",
        f"{perf.one_each * 1e6:,.1f} µs",
    )
    console.print(table)
    mark = lambda ok: ("✓", "green") if ok else ("✗", "red")
    console.print(
        styled(
            f"ratio {perf.ratio:,.1f}× ",
            mark(perf.ratio >= 10),
            f" (goal ≥ 10×); single round trip {single:.3f} s ",
            mark(single < 1),
            " (goal < 1 s)",
        )
    )
    if not perf.identical:
        console.print(styled(("the answers differ", "bold red"), " from the graph's own ancestors and descendants"))
        raise typer.Exit(1)
    console.print(
        styled(("identical answers", "green"), " from both methods, equal to the graph's own ancestors and descendants")
    )


@perf_app.command("attack")
def perf_attack_command(
    attack: Annotated[
        str, typer.Option("--attack", "-a", help="An Auto-PGD attack: gmla, gmla-alpha, gmla-beta, mla-u, mla-c.")
    ] = "gmla",
    arch: Annotated[
        str, typer.Option("--arch", help="timm architecture (random initialisation, nothing downloaded).")
    ] = "resnet18",
    image_size: Annotated[int, typer.Option("--image-size", help="Image side in pixels.", min=16)] = 64,
    labels: Annotated[int, typer.Option("--labels", help="Model outputs.", min=1)] = 20,
    batch: Annotated[
        int, typer.Option("--batch-size", "-b", help="Pairs per batch B (and the model's batch).", min=1)
    ] = 16,
    steps: Annotated[int, typer.Option("--iterations", help="Attack iterations per run.", min=1)] = 10,
    single_pairs: Annotated[
        int, typer.Option("--single-pairs", help="Pairs timed one at a time for the batching ratio.", min=1)
    ] = 4,
    repeats: Annotated[
        int, typer.Option("--repeats", help="Timed interleaved rounds; each time is the best of them.", min=1)
    ] = 3,
    device: DeviceOption = "auto",
) -> None:
    """Time the attack engine: (pairs × iterations)/s against the model's own forward + backward.

    (a) the model's forward + backward in images/s at batch B, as in training (parameter
    gradients) and (a′) with the input gradient only (the least work of one attack step);
    (b) the attack's (pairs × iterations)/s with B pairs per call; (c) the same, one pair per
    call. Prints (b)/(a), (b)/(a′) (GMLA needs two input gradients per step) and (b)/(c).
    Each time is the best of --repeats interleaved rounds.

    Example: bench perf attack --arch resnet18 --image-size 64 --batch-size 32 --iterations 10
    Example: bench perf attack --attack mla-u --device cuda --batch-size 128
    """
    from bench.attacks.perf import measure_attack_perf

    with console.status("timing") as status:
        perf = measure_attack_perf(
            attack=attack,
            arch=arch,
            image_size=image_size,
            labels=labels,
            batch=batch,
            steps=steps,
            single_pairs=single_pairs,
            repeats=repeats,
            device=device,
            progress=lambda s: status.update(f"timing {s}"),
        )
    table = Table(title=f"{perf.attack} on {perf.arch} @ {perf.image_size} px, {perf.labels} labels, {perf.device}")
    table.add_column("measurement")
    table.add_column("batch", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        "(a) model forward + backward, as in training",
        str(perf.batch),
        f"{perf.model_rate:.1f} img/s",
        f"(b)/(a) = {perf.vs_model:.2f}",
    )
    table.add_row(
        "(a′) model forward + input-gradient backward",
        str(perf.batch),
        f"{perf.input_rate:.1f} img/s",
        f"(b)/(a′) = {perf.vs_input:.2f}",
    )
    table.add_row(f"(b) {perf.attack}, batched", str(perf.batch), f"{perf.batched_rate:.1f} pair·it/s", "")
    table.add_row(
        f"(c) {perf.attack}, one pair at a time",
        "1",
        f"{perf.single_rate:.1f} pair·it/s",
        f"(b)/(c) = {perf.vs_single:.1f}×",
    )
    console.print(table)


# ---------------------------------------------------------------------- bench perf sweep
@perf_app.command("sweep")
def perf_sweep_command(
    dataset: ModelDatasetOption = "stamps",
    model: ModelOption = None,
    attacks: Annotated[str, typer.Option("--attack", "-a", help="Comma list or all.")] = "gmla,mla-u",
    size: Annotated[str, typer.Option("--size", help="|Ω| sizes.")] = "1-2",
    images_per_combo: Annotated[int, typer.Option("--images-per-combo", help="Images per combination.")] = 8,
    combos_per_size: Annotated[int, typer.Option("--combos-per-size", help="Combinations per |Ω|.")] = 4,
    iterations: Annotated[int, typer.Option("--iterations", help="Auto-PGD iterations.")] = 20,
    eps: Annotated[float, typer.Option("--eps", help="ε.")] = 0.05,
    batch_size: PairBatchOption = None,
    device: DeviceOption = "auto",
    cpu_numerics: CpuNumericsOption = "native",
) -> None:
    """Where a sweep's time goes: the model's forward/backward against the sweep machinery.

    Runs a small sweep into a temporary database with the model wrapped in timers (forward
    calls, and backward passes from the output's gradient to the input's) and reports each
    stage's share of the wall time, rows written per second into DuckDB, and per attack
    family the engine's batch occupancy and its pair·iterations/s against the model's own
    forward+backward rate at the same B.

    Example: bench perf sweep --dataset stamps --attack gmla,mla-u --size 1-2
    """
    from bench.jobs.sweep_perf import measure_sweep
    from bench.sweep.presets import SweepOptions

    options = SweepOptions.from_text(  # checked here, before the model loads
        attacks=attacks,
        eps=(eps,),
        sizes=size,
        images_per_combination=images_per_combo,
        combinations_per_size=combos_per_size,
        iterations=iterations,
        cpu_numerics=cpu_numerics,
    )
    with console.status("running a small sweep"):
        report = measure_sweep(dataset, model, options, batch_size, device)
    table = Table(title=f"sweep time by stage ({report.rows} rows, {report.device}, {report.seconds:.1f} s wall)")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for stage, seconds in report.stages:
        table.add_row(stage, f"{seconds:.2f}", f"{100 * seconds / report.seconds:.1f}%")
    console.print(table)
    console.print(
        f"model forward/backward: {100 * report.model_share:.1f}% of the wall time; sweep machinery "
        f"(targets, metrics, DB writes, images, planning, attack arithmetic): {100 * (1 - report.model_share):.1f}%; "
        f"rows written per second into DuckDB: {report.rows_per_second:,.0f} ({report.writes} writes)"
    )
    engine = Table(title="the engine's slots, per attack family")
    for column in ("family", "B", "iterations", "occupancy", "pair·it/s", "model's rate at B", "sweep ÷ model"):
        engine.add_column(column, justify="left" if column == "family" else "right")
    for f in report.families:
        engine.add_row(
            f.name,
            str(f.batch),
            f"{f.ticks:,}",
            f"{f.occupancy:.3f}",
            f"{f.pair_iterations_per_second:,.1f}",
            f"{f.model_rate:,.1f}",
            f"{f.rate_ratio:.2f}",
        )
    console.print(engine)
    console.print(
        "occupancy = live pair·iterations ÷ (B × iterations run); the model's rate = B ÷ the time of one forward and "
        "the family's input gradients per iteration (two for GMLA) at B; the sweep's rate counts its whole wall time, "
        "metrics and writes included"
    )


@perf_app.command("numerics")
def perf_numerics_command(
    dataset: ModelDatasetOption = "stamps",
    model: ModelOption = None,
    attacks: Annotated[str, typer.Option("--attack", "-a", help="Comma list or all.")] = "all",
    size: Annotated[str, typer.Option("--size", help="|Ω| sizes.")] = "1-3",
    iterations: Annotated[int, typer.Option("--iterations", help="Auto-PGD iterations.", min=1)] = 50,
    batch_size: PairBatchOption = None,
    rounds: Annotated[int, typer.Option("--rounds", help="Interleaved rounds; each mode keeps its best.", min=1)] = 2,
) -> None:
    """What the CPU-numerics modes cost: the same sweep (the demo's settings by default) on the
    CPU in a fresh process per mode, interleaved; pair·iterations/s and the ratio to native, and
    the same for a model-bound probe (resnet18 at 64 px, forward + input gradient).

    unpinned is MKL's own default (not strict), the baseline before native turned strict mode on.

    Example: bench perf numerics --dataset stamps
    """
    from bench.jobs.sweep_perf import PROBE_BATCH, compare_numerics
    from bench.numerics import cpu_name
    from bench.sweep.presets import SweepOptions

    options = SweepOptions.from_text(attacks=attacks, sizes=size, iterations=iterations)
    with console.status(f"running the sweep {3 * rounds} times"):
        perfs = compare_numerics(dataset, model, options, batch_size, rounds)
    native = perfs[0]
    table = Table(title=f"CPU numerics on {cpu_name()} (best of {rounds} rounds each)")
    paths = ("mode", "MKL", "oneDNN", "ATen")
    for column in (*paths, "sweep s", "pair·it/s", "÷ native", f"model-bound images/s (B = {PROBE_BATCH})", "÷ native"):
        table.add_column(column, justify="left" if column in paths else "right")
    for p in perfs:
        table.add_row(
            p.mode,
            p.mkl,
            p.onednn,
            p.aten,
            f"{p.seconds:.1f}",
            f"{p.rate:,.0f}",
            f"{p.rate / native.rate:.3f}",
            f"{p.probe_rate:,.0f}",
            f"{p.probe_rate / native.probe_rate:.3f}",
        )
    console.print(table)
    console.print("model-bound: resnet18 at 64 px, random weights, one forward and one input gradient")


@perf_app.command("gpu")
def perf_gpu_command(
    device: DeviceOption = "cuda",
    dataset: ModelDatasetOption = "stamps",
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Trained run (default: the demo model, trained first if missing)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes (a CPU standing in): one |Ω|, resnet18 at 64 px.")
    ] = False,
) -> None:
    """Everything a GPU must show, in one table: the CUDA tests, the demo sweep on the device
    (wall time, occupancy), fp32 vs bf16 agreement on FR_N / FR_S / NT_R, the sweep's rate
    against the model's own, channels_last on/off, and TResNet-M at 224 px with B = 64.

    Example: bench perf gpu
    Example: bench perf gpu --device cpu --quick
    """
    from bench.devices import resolve_device
    from bench.jobs.gpu_check import GpuCheck, run_gpu_check

    dev = resolve_device(device)
    check = GpuCheck.quick(dataset, model) if quick else GpuCheck(dataset, model)
    with console.status("GPU check") as status:
        rows = run_gpu_check(check, dev, lambda text: status.update(f"GPU check: {text}"))
    table = Table(title=f"GPU check on {dev}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for what, figure in rows:
        table.add_row(what, figure)
    console.print(table)


@perf_app.command("db")
def perf_db(
    rows: Annotated[
        int, typer.Option("--rows", help="Rows per measurement (batches of 1 write fewer).", min=100)
    ] = 20000,
) -> None:
    """Rows written per second into DuckDB, by batch size, against row-at-a-time inserts.

    Each batch is one transaction that opens and closes the file (as a sweep writes).

    Example: bench perf db --rows 20000
    """
    from results.perf import measure_writes

    result = measure_writes(
        rows, progress=lambda items, text: track(items, description=text, console=console, transient=True)
    )
    shown = Table(title="results store: rows written per second (one run)", header_style="bold")
    for name in ("writer", "batch", "rows", "rows/s", "× row-at-a-time"):
        shown.add_column(name, justify="right" if name != "writer" else "left")
    for m in result:
        shown.add_row(m.label, str(m.batch), str(m.rows), f"{m.rate:,.0f}", f"{m.ratio:.1f}")
    console.print(shown)
