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
from bench.names import parse_attacks


# ---------------------------------------------------------------------- option parsing
def parse_floats(text: str | None, what: str) -> tuple[float, ...] | None:
    """``0.01``, ``0.01,0.03`` or ``START:STOP:STEP`` (inclusive) → values; ``None`` when not given."""
    if text is None:
        return None
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
        raise BenchError(f"--{what} {text!r}: give a number, a comma list (0.01,0.02) or START:STOP:STEP") from None
    if not values:
        raise BenchError(f"--{what} is empty")
    return tuple(dict.fromkeys(values))


def parse_sizes(text: str | None) -> tuple[int, ...] | None:
    """``3``, ``1-5`` or ``1,3`` → target set sizes; ``None`` when not given."""
    if text is None:
        return None
    sizes: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
            if last < first:
                raise ValueError
            sizes += range(first, last + 1)
    except ValueError:
        raise BenchError(f"--size {text!r}: give a size (3), a range (1-5) or a list (1,3)") from None
    if not sizes or min(sizes) < 1:
        raise BenchError(f"--size {text!r}: sizes start at 1")
    return tuple(sorted(set(sizes)))


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
    size: Annotated[
        str | None,
        typer.Option("--size", help="|Ω|: 3, a range 1-5 or a list 1,3 (default: the preset's).", show_default=False),
    ] = None,
    images_per_combo: Annotated[
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
    combos_per_size: Annotated[
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
    from bench.datasets import create_dataset
    from bench.sweep import (
        SweepOptions,
        SweepRequest,
        fit_dataset,
        get_preset,
        load_sweep_model,
        resolve_device,
        shard_db_path,
        sweep_config,
    )
    from bench.sweep.cluster import check_address, import_ray
    from bench.sweep.protocol import check_sizes, label_candidates
    from kg.catalog import graph_path
    from kg.stores import check_store
    from results.store import ResultStore, default_db_path

    # every option checked before the model loads, anything prints or any file is written
    chosen = get_preset(preset)
    options = SweepOptions(
        attacks=parse_attacks(attacks),
        eps=parse_floats(eps, "eps"),
        tau=parse_floats(tau, "tau"),
        sizes=parse_sizes(size),
        images_per_combination=images_per_combo,
        combos=combos,
        combinations_per_size=combos_per_size,
        iterations=iterations,
        steps={
            a: n
            for a, n in (
                ("mla-lp", lp_iterations),
                ("ml-dp", dp_iterations),
                ("square", queries),
                ("square-g", queries),
            )
            if n is not None
        }
        or None,
        include_abstract=include_abstract,
        seed=seed,
        split=split,
        closure=closure,
        precision=precision,
        cpu_numerics=cpu_numerics,
    )
    shard_index, shard_count = parse_shard(shard)
    check_store(store, graph_db)
    if graph_name and not graph_name.lower().endswith(".csv"):  # a CSV of edges is read with the folder's labels
        graph_path(graph_name)  # an unknown graph: one line with the closest names
    if ray is not None:
        import_ray()
        check_address(ray)
        if shard is not None:
            raise BenchError("--ray and --shard do not combine: Ray spreads the whole sweep over its workers")
    elif ray_workers is not None:
        raise BenchError("--ray-workers needs --ray")
    targets = parse_models(transfer_to)
    if ray is not None and targets:
        raise BenchError("--transfer-to and --ray do not combine: transfer runs in one process (leave out --ray)")
    defended = _defense(defense, eot, ray)
    dev = resolve_device(device)
    loaded = load_sweep_model(
        dataset, model, dev, trust_checkpoint, image_size=image_size, arch=arch, embeddings=embeddings
    )
    _check_sizes_early(loaded.card, options.sizes or chosen.sizes, options.include_abstract)  # before any data
    if model is None:
        console.print(
            styled(
                f"model: the newest trained for {dataset}, ",
                (Path(loaded.path).name, "bold"),
                f" ({loaded.name}) — `bench models` lists them",
            )
        )

    def load_split(name: str):
        graph_option = {"graph": graph_name} if graph_name else {}
        return create_dataset(dataset, name, root=data_root, image_size=loaded.image_size, **graph_option)

    net, data, graph = fit_dataset(loaded, load_split(split), report=console.print)
    transfer = _transfer_targets(targets, dataset, dev, trust_checkpoint, image_size, loaded, data, graph)
    if defended is not None:  # fit what it learns from clean data (the detector's threshold) on its own split
        with console.status(f"preparing the defense {defended.name}"):
            defended.prepare(net, graph, load_split)
        console.print(f"defense: {defended.describe()}" + (f", attacked with EOT over {eot} draws" if eot > 1 else ""))
    config = sweep_config(
        dataset,
        loaded,
        graph,
        chosen,
        options,
        name=name or "",
        shard=(shard_index, shard_count),
        device=str(dev),
        data=data.fingerprint(),
        defense=defended.config() if defended is not None else None,
        eot=eot,
    )
    # every check the sweep makes of its inputs, before the results file (and its lock) exist
    check_sizes(config.sizes, len(label_candidates(graph, config.protocol.include_abstract)), graph)
    path = shard_db_path(db or default_db_path(), shard_index, shard_count)
    results = ResultStore(path, lock_timeout=wait)
    cluster = None if ray is None else {"address": ray, "workers": ray_workers, "cpus_per_worker": ray_cpus}
    request = SweepRequest(
        device=dev,
        batch_size=batch_size,
        graph_store=store,
        graph_db=graph_db,
        save_images=save_images,
        allow_mixed_numerics=allow_mixed_numerics,
        transfer=transfer,
    )
    outcome = _sweep(config, net, data, graph, results, request, quiet, cluster)
    _summary(outcome, config, db)


def parse_models(text: str | None) -> list[str]:
    """``--transfer-to A,B`` → ``["A", "B"]``; ``[]`` when not given."""
    if text is None:
        return []
    models = [p.strip() for p in text.split(",") if p.strip()]
    if not models:
        raise BenchError(f"--transfer-to {text!r}: name one or more models, comma separated")
    return models


def _transfer_targets(specs, dataset, dev, trust, image_size, loaded, data, graph):
    """The ``--transfer-to`` models, loaded as ``-m`` loads a model and fitted to the run's graph;
    any that does not load or fit is one line, before the results file is touched."""
    from bench.sweep import load_sweep_model
    from bench.sweep.transfer import check_names, fit_target, target_name

    targets = []
    for spec in specs:
        try:
            model = load_sweep_model(dataset, spec, dev, trust, image_size=image_size)
        except BenchError as exc:
            raise exc.prefixed(f"--transfer-to {spec}") from None
        targets.append(fit_target(model, data, graph))
        if model.image_size != loaded.image_size and not model.own:
            console.print(
                f"transfer target {target_name(model)} takes {model.image_size} px images; it is given the run's "
                f"{loaded.image_size} px images as they are",
                style="yellow",
            )
    check_names(targets)
    return tuple(targets)


def _check_sizes_early(card: dict, sizes: tuple[int, ...], include_abstract: bool) -> None:
    """|Ω| against the model's labels, known from its card before any data is read."""
    labels = card.get("labels") or ()
    n = len(labels) if include_abstract else card.get("n_labels")
    if sizes and isinstance(n, int) and max(sizes) > n:
        graph = card.get("graph")
        raise BenchError(f"|Ω| = {max(sizes)} is larger than the {n} labels of the model's graph ({graph!r})")


def _defense(spec: str | None, eot: int, ray: str | None):
    """The ``--defense`` (unprepared), checked with ``--eot`` and ``--ray`` before any work."""
    from bench.defenses import create_defense

    if spec is None:
        if eot != 1:
            raise BenchError("--eot averages the draws of a randomised defense: give one with --defense")
        return None
    chosen = create_defense(spec)
    if eot != 1 and not chosen.randomised:
        raise BenchError(f"--eot {eot}: defense {chosen.name} draws no randomness to average (smoothing does)")
    if ray is not None:
        raise BenchError("--defense and --ray do not combine: a defended sweep runs in one process (leave out --ray)")
    return chosen


def _sweep(config, net, data, graph, results, request, quiet, cluster):
    """Run the sweep (on Ray when ``cluster`` says so) with a progress display (none when
    quiet); a Ctrl-C says how to resume."""
    from contextlib import nullcontext
    from functools import partial

    from bench.sweep import RichSweepProgress, SweepProgress, run_sweep

    if not quiet:
        _print_config(config, results.path)
        if request.transfer:
            console.print(f"  transfer to: {', '.join(t.name for t in request.transfer)}")
    display = nullcontext(SweepProgress()) if quiet else RichSweepProgress(console)
    try:
        with display as progress:
            sweep = run_sweep
            if cluster is not None:
                from bench.sweep.cluster import run_sweep_ray

                sweep = partial(run_sweep_ray, **cluster)
            return sweep(config, net, data, graph, results, request, progress=progress)
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
    from bench.sweep.demo import run_demo

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
    from bench.sweep.demo import DEMO_RUN

    q = shlex.quote(str(db))
    return [
        f"bench runs --db {q}",
        f"bench table --db {q} --run {DEMO_RUN} --size 1",
        f'bench sql --db {q} "SELECT attack, size, fr_n_mean, fr_s_mean, nt_r_mean FROM rate_summary"',
        f"bench kg annotate --db {q} --run {DEMO_RUN} && bench kg view --run {DEMO_RUN} --attack gmla",
        "bench run --dataset stamps --preset fast --eps 0.01,0.03,0.05 --attack gmla,mla-u --db sweep.duckdb",
    ]
