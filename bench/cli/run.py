"""``bench run`` (the paper's sweeps, resumable, shardable) and ``bench demo``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.apps import (
    CpuNumericsOption,
    DataRootOption,
    DbOption,
    DeviceOption,
    EmbeddingsOption,
    GraphDbOption,
    GraphOption,
    GraphStoreOption,
    ImageSizeOption,
    MixedNumericsOption,
    ModelOption,
    PairBatchOption,
    TrustOption,
    app,
    canonical_dataset,
    output_folder,
    safe_name,
)
from bench.cli.console import console, styled
from bench.errors import BenchError


# ---------------------------------------------------------------------- option parsing
def parse_shard(text: str | None) -> tuple[int, int]:
    """``i/n`` with 0 ≤ i < n → ``(i, n)``; ``(0, 1)`` when not given."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BenchError(f"--shard {text!r}: give i/n, e.g. 0/4 for the first of four shards") from None
    if not (n >= 1 and 0 <= i < n):
        raise BenchError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


# ---------------------------------------------------------------------- bench run
@app.command("run", rich_help_panel="Sweeps")
def run_command(
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            "-d",
            callback=canonical_dataset,
            help="Dataset: stamps (offline), voc, nus, openimages, folder (your images: --data-root, --graph).",
        ),
    ],
    model: ModelOption = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help="With a weights file: the timm architecture of a plain state dict (resnet18, ...; torchvision's "
            "ResNets share timm's names), or asl, ml-decoder, ml-gcn to refuse other published checkpoints.",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        str, typer.Option("--preset", help="paper (the paper's settings) or fast (the demo's).")
    ] = "paper",
    attacks: Annotated[
        str,
        typer.Option(
            "--attack",
            "-a",
            help="Comma list (gmla,mla-u,square,...) or all (the paper's seven; square, mla-kg: named).",
        ),
    ] = "all",
    eps: Annotated[
        str | None,
        typer.Option(
            "--eps",
            help="ε: 0.01, a list 0.01,0.03 or a sweep 0.005:0.03:0.005 (default: the preset's).",
            show_default=False,
        ),
    ] = None,
    tau: Annotated[
        str | None,
        typer.Option(
            "--tau", help="GMLA's τ, one value or a sweep like --eps (default: the preset's).", show_default=False
        ),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option("--size", help="|Ω|: 3, a range 1-5 or a list 1,3 (default: the preset's).", show_default=False),
    ] = None,
    images_per_combination: Annotated[
        int | None,
        typer.Option(
            "--images-per-combo",
            help="First N eligible images per combination (default: 50; 10 on NUS-WIDE).",
            show_default=False,
        ),
    ] = None,
    combos: Annotated[
        str | None,
        typer.Option(
            "--combos",
            help="all (every combination) or sampled (the paper's Open Images sampling; default there).",
            show_default=False,
        ),
    ] = None,
    combinations_per_size: Annotated[
        int | None,
        typer.Option(
            "--combos-per-size",
            help="Attack a seeded sample of this many combinations per |Ω| (default: the preset's).",
            show_default=False,
        ),
    ] = None,
    include_abstract: Annotated[
        bool,
        typer.Option(
            "--include-abstract", help="Draw targets from abstract graph nodes too, not only the dataset's labels."
        ),
    ] = False,
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations", help="Auto-PGD iterations N (default: the preset's; 300 in the paper).", show_default=False
        ),
    ] = None,
    lp_iterations: Annotated[
        int | None,
        typer.Option(
            "--lp-iterations", help="MLA-LP's linear programs per pair (default: the preset's).", show_default=False
        ),
    ] = None,
    dp_iterations: Annotated[
        int | None,
        typer.Option("--dp-iterations", help="ML-DP's steps per pair (default: the preset's).", show_default=False),
    ] = None,
    queries: Annotated[
        int | None,
        typer.Option(
            "--queries", help="Square's and Square-G's query budget per pair (default 1000).", show_default=False
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the combination sampling.")] = 0,
    split: Annotated[str, typer.Option("--split", help="Dataset split whose images are attacked.")] = "test",
    device: DeviceOption = "auto",
    batch_size: PairBatchOption = None,
    db: DbOption = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            callback=safe_name,
            help="Run id (default: dataset-model-confighash; the same command resumes).",
            show_default=False,
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="i/n: this process runs the combinations with id % n == i, into DB.shard-i-of-n.duckdb.",
            show_default=False,
        ),
    ] = None,
    store: GraphStoreOption = "ladybug",
    graph_db: GraphDbOption = None,
    data_root: DataRootOption = None,
    image_size: ImageSizeOption = None,
    embeddings: EmbeddingsOption = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a results database locked by another process.", min=0)
    ] = 60.0,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Spread the attacks over a Ray cluster: local (start one here), auto (join this machine's) or an "
            "ADDRESS (extra 'ray').",
            show_default=False,
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(
            "--ray-workers",
            help="Ray workers (default: one per GPU, or the cluster's CPUs ÷ --ray-cpus).",
            min=1,
            show_default=False,
        ),
    ] = None,
    ray_cpus: Annotated[
        int, typer.Option("--ray-cpus", help="Cores (and torch threads) of each CPU worker on Ray.", min=1)
    ] = 1,
    trust_checkpoint: TrustOption = False,
    graph_name: GraphOption = None,
    save_images: Annotated[
        int,
        typer.Option(
            "--save-images",
            help="Save the adversarial examples (PNG + .npz) of the first N pairs of each combination and attack "
            "beside the database, for bench report.",
            min=0,
        ),
    ] = 0,
    transfer_to: Annotated[
        str | None,
        typer.Option(
            "--transfer-to",
            help="Also feed each pair's adversarial image to these models (comma list, each as --model takes it; "
            "same graph): table transfer, bench table --layout transfer. Not part of the run's configuration: a "
            "finished run given a new target recomputes its pairs, which must reproduce their rows.",
            show_default=False,
        ),
    ] = None,
    defense: Annotated[
        str | None,
        typer.Option(
            "--defense",
            help="Attack the model under a defense: kg-detector or smoothing, with parameters as "
            "name:key=value,... (docs/defenses.md). Part of the run's configuration.",
            show_default=False,
        ),
    ] = None,
    eot: Annotated[
        int,
        typer.Option(
            "--eot", help="Attacks average the gradients of K draws of a randomised defense (EOT); part of the run."
        ),
    ] = 1,
    precision: Annotated[
        str,
        typer.Option(
            "--precision", help="fp32, or bf16 (the model under torch.autocast; part of the run's configuration)."
        ),
    ] = "fp32",
    closure: Annotated[
        str,
        typer.Option(
            "--closure",
            help="Ψ = h(Ω, G) by this benchmark's rule (bench) or the official code's (official); "
            "docs/knowledge-graphs.md.",
        ),
    ] = "bench",
    cpu_numerics: CpuNumericsOption = "native",
    allow_mixed_numerics: MixedNumericsOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display; print the summary only.")] = False,
) -> None:
    """Run the paper's sweep: every attack on the first N eligible images of every target set Ω.

    Eligible images: the clean prediction is consistent with the graph and has every label
    of Ω positive. Rows go to DuckDB batch by batch; the same command again resumes a run
    that was stopped (even by kill -9). --shard i/n splits the combinations between
    processes, each into its own file; `bench merge` combines them. --ray spreads them over
    a Ray cluster's GPUs (or CPU workers) and writes one file, with the same rows.

    Example: bench run --dataset stamps --preset fast
    Example: bench run --dataset stamps --preset fast --ray local
    Example: bench run --dataset stamps --preset fast --transfer-to demo-seed1
    Example: bench run -d voc -m asl-voc --attack gmla,mla-u,mla-c --size 1-3 --eps 0.005:0.01:0.005
    Example: bench run -d openimages -m Open_ImagesV6_TRresNet_L_448.pth --combos sampled --size 1-5 --shard 0/4
    """
    from bench.sweep import RayCluster, SweepOptions, build_sweep

    given = locals()  # the parameters named after SweepOptions' fields fill them by name
    steps = {"mla-lp": lp_iterations, "ml-dp": dp_iterations, "square": queries, "square-g": queries}
    options = SweepOptions.from_text(
        steps={a: n for a, n in steps.items() if n is not None} or None,
        **{k: given[k] for k in SweepOptions.names() if k != "steps"},
    )
    if ray_workers is not None and ray is None:
        raise BenchError("--ray-workers needs --ray")
    sweep = build_sweep(
        dataset,
        model,
        preset=preset,
        options=options,
        name=name or "",
        shard=parse_shard(shard),
        db=db,
        wait=wait,
        device=device,
        batch_size=batch_size,
        graph_store=store,
        graph_db=graph_db,
        root=data_root,
        graph=graph_name,
        image_size=image_size,
        arch=arch,
        embeddings=embeddings,
        trust=trust_checkpoint,
        save_images=save_images,
        allow_mixed_numerics=allow_mixed_numerics,
        transfer_to=parse_models(transfer_to),
        defense=defense,
        eot=eot,
        ray=None if ray is None else RayCluster(ray, ray_workers, ray_cpus),
        report=lambda line: console.print(line, markup=False, highlight=False),
        warn=lambda line: console.print(line, style="yellow", markup=False, highlight=False),
    )
    _summary(_sweep(sweep, quiet), sweep.config, db)


def parse_models(text: str | None) -> list[str]:
    """``--transfer-to A,B`` → ``["A", "B"]``; ``[]`` when not given."""
    if text is None:
        return []
    models = [p.strip() for p in text.split(",") if p.strip()]
    if not models:
        raise BenchError(f"--transfer-to {text!r}: name one or more models, comma separated")
    return models


def _sweep(sweep, quiet: bool):
    """Run the sweep with a progress display (none when quiet); a Ctrl-C says how to resume."""
    from contextlib import nullcontext

    from bench.sweep import RichSweepProgress, SweepProgress

    if not quiet:
        _print_config(sweep.config, sweep.store.path)
        if sweep.request.transfer:
            console.print(f"  transfer to: {', '.join(t.name for t in sweep.request.transfer)}")
    display = nullcontext(SweepProgress()) if quiet else RichSweepProgress(console)
    try:
        with display as progress:
            return sweep.run(progress)
    except KeyboardInterrupt:
        console.print("stopped: the rows written so far are kept; run the same command again to resume", style="yellow")
        raise


def _print_config(config, db: Path) -> None:
    protocol = config.protocol
    shard = f", shard {config.shard_index}/{config.shard_count}" if config.shard_count > 1 else ""
    console.print(
        f"run {config.run_id} → {db}{shard}\n"
        f"  preset {config.preset}: attacks {', '.join(config.attacks)}; ε {', '.join(f'{e:g}' for e in config.eps)}; "
        f"τ {', '.join(f'{t:g}' for t in config.tau)}; |Ω| {', '.join(map(str, config.sizes))}; "
        f"{config.images_per_combination} images per combination; Auto-PGD iterations {config.iterations}; "
        f"combinations {protocol.combos}"
        + (f" ({protocol.combinations_per_size} per size)" if protocol.combinations_per_size else "")
        + (f"; fewer images for {', '.join(f'{a} {n}' for a, n in protocol.images.items())}" if protocol.images else "")
    )
    if protocol.cpu_numerics == "portable":
        from bench.numerics import PORTABLE_ENV, replaced_settings

        pinned = " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items())
        overridden = ", ".join(f"{k}={v}" for k, v in replaced_settings().items())
        console.print(f"  cpu-numerics portable: {pinned}" + (f" (overriding {overridden})" if overridden else ""))


def occupancy_text(outcome) -> str:
    """Each attack family's batch occupancy (live pair·iterations ÷ (B × iterations run))."""
    return ", ".join(f"{name} {st.occupancy:.2f}" for name, st in outcome.slot_use.items() if st.ticks)


def print_checks(checks) -> None:
    """The run's reliability checks in one line (yellow when one is flagged)."""
    if checks:
        from bench.sweep.checks import summary_line

        flagged = any(c.flagged for c in checks)
        console.print(
            summary_line(checks), soft_wrap=True, markup=False, highlight=False, style="yellow" if flagged else None
        )


def _summary(outcome, config, db: Path | None) -> None:
    t = Table(title=f"run {outcome.run_id}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row(
        "images",
        f"{outcome.images} predicted, {outcome.consistent} consistent with the graph"
        + (f", {outcome.skipped_images} did not decode" if outcome.skipped_images else ""),
    )
    t.add_row("combinations", f"{outcome.combinations} ({outcome.empty} without eligible images)")
    recomputed = f", {outcome.recomputed} stored before and recomputed for the transfer targets" * bool(
        outcome.recomputed
    )
    t.add_row(
        "rows",
        f"{outcome.written} written now, {outcome.resumed} stored before{recomputed}, {outcome.pairs} planned",
    )
    t.add_row(
        "batch",
        f"{outcome.batch_size} slots" + (f"; occupancy {occupancy_text(outcome)}" if occupancy_text(outcome) else ""),
    )
    if outcome.targets:
        t.add_row("transfer", f"{outcome.transferred} pairs evaluated now on {', '.join(outcome.targets)}")
    checks = outcome.times.get("checks", 0.0)
    t.add_row("time", f"{outcome.seconds:.1f} s" + (f" (reliability checks {checks:.1f} s)" if checks else ""))
    t.add_row("status", "finished" if outcome.finished else "unfinished")
    t.add_row("database", str(outcome.db))
    console.print(t)
    print_checks(outcome.checks)
    size = f" --size {config.sizes[-1]}" if len(config.sizes) > 1 else ""
    eps = f" --eps {config.eps[0]:g}" if len(config.eps) > 1 else ""
    if config.shard_count > 1:
        from bench.sweep import shard_db_path
        from results.store import default_db_path

        target = outcome.db.with_name(Path(db or default_db_path()).name)
        shards = shard_db_path(target, "*", config.shard_count)
        console.print(
            f"next, when all {config.shard_count} shards are done: "
            f"bench merge {shards} --db {shlex.quote(str(target))}",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        return
    where = f" --db {shlex.quote(str(db))}" if db is not None else ""
    console.print(  # one line, each argument quoted for the shell: it is meant to be pasted
        f"next: bench table --run {shlex.quote(outcome.run_id)}{where}{size}{eps}",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    if outcome.targets:
        console.print(
            f"transfer: bench table --run {shlex.quote(outcome.run_id)}{where}{eps} --layout transfer",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )


# ---------------------------------------------------------------------- bench demo
@app.command("demo", rich_help_panel="Sweeps")
def demo_command(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            callback=output_folder,
            help="Folder for the results database, tables and plots (default: $BENCH_DATA/demo).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = "auto",
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train a new demo model even if one with the demo recipe exists.")
    ] = False,
) -> None:
    """The whole pipeline offline on the clip-art dataset `stamps`, in minutes on a CPU.

    Builds stamps, trains the demo model (or reuses one trained with the same recipe),
    prints its mAP and consistent share, sweeps |Ω| = 1–3 with all seven attacks on a few
    combinations under the `fast` preset, prints the paper and ablation tables and writes
    the plots.

    Example: bench demo
    Example: bench demo --out ./demo --device cpu
    """
    from bench.cli.results import print_layout
    from bench.devices import resolve_device
    from bench.jobs.demo import run_demo

    report = run_demo(out, resolve_device(device), console, retrain=retrain)
    for layout in report.tables:
        print_layout(layout)
    for note in report.notes:
        console.print(note, style="yellow")
    times = Table(title="demo wall time", show_header=False, title_justify="left")
    times.add_column(style="bold")
    times.add_column(justify="right")
    for stage, seconds in report.times.items():
        times.add_row(stage, f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s")
    console.print(times)
    if occupancy_text(report.outcome):
        console.print(f"batch occupancy ({report.outcome.batch_size} slots): {occupancy_text(report.outcome)}")
    print_checks(report.outcome.checks)
    db = report.outcome.db
    console.print(
        styled(f"wrote {', '.join(p.name for p in report.figures)} and {db.name} to ", (str(report.folder), "bold"))
    )
    console.print(
        styled("report: ", (str(report.folder / "report.html"), "bold"), " (open it in a browser; it works offline)")
    )
    console.print(f"the demo's results live in {db}, not in the default results file; explore:", soft_wrap=True)
    for command in next_steps(db):
        console.print(f"  {command}", soft_wrap=True, markup=False, highlight=False)  # one line each, to paste


def next_steps(db: Path) -> list[str]:
    """The commands the demo suggests at its end, as a shell reads them (tested by running them)."""
    from bench.jobs.demo import DEMO_RUN

    q = shlex.quote(str(db))
    return [
        f"bench runs --db {q}",
        f"bench table --db {q} --run {DEMO_RUN} --size 1",
        f'bench sql --db {q} "SELECT attack, size, fr_n_mean, fr_s_mean, nt_r_mean FROM rate_summary"',
        f"bench kg annotate --db {q} --run {DEMO_RUN} && bench kg view --run {DEMO_RUN} --attack gmla",
        "bench run --dataset stamps --preset fast --eps 0.01,0.03,0.05 --attack gmla,mla-u --db sweep.duckdb",
    ]
