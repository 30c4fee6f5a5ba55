"""``bench attack`` (attack a few images of a dataset, labels before/after) and ``bench perf attack``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from bench.cli.apps import (
    DataRootOption,
    DeviceOption,
    EmbeddingsOption,
    GraphOption,
    ImageSizeOption,
    ModelOption,
    PairBatchOption,
    TrustOption,
    app,
    canonical_dataset,
    output_folder,
)
from bench.cli.console import console
from bench.progress import progress_bar


def _labels(names: list[str]) -> str:
    return ", ".join(names) if names else "-"


@app.command("attack")
def attack_command(
    targets: Annotated[
        str,
        typer.Option("--targets", "-t", help="Target set Ω: comma-separated labels to switch off (on with --turn-on)."),
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", callback=canonical_dataset, help="Dataset name (stamps, voc, nus, openimages)."
        ),
    ] = "stamps",
    attack: Annotated[
        str, typer.Option("--attack", "-a", help="Attack: gmla, gmla-alpha, gmla-beta, mla-u, mla-c, mla-lp, ml-dp.")
    ] = "gmla",
    model: ModelOption = None,
    images: Annotated[
        int,
        typer.Option(
            "--images",
            "-n",
            help="How many eligible test images to attack (the first ones whose prediction has every target).",
            min=1,
        ),
    ] = 4,
    eps: Annotated[float, typer.Option("--eps", help="ℓ∞ budget ε (images in [0, 1]).")] = 0.01,
    steps: Annotated[
        int | None,
        typer.Option(
            "--iterations",
            help="Iterations (default: the attack's own: 300 APGD, 10 MLA-LP, 100 ML-DP).",
            show_default=False,
        ),
    ] = None,
    tau: Annotated[
        float | None, typer.Option("--tau", help="GMLA's cosine threshold τ (default −0.85).", show_default=False)
    ] = None,
    turn_on: Annotated[bool, typer.Option("--turn-on", help="Switch the targets on instead of off.")] = False,
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "test",
    batch_size: PairBatchOption = None,
    data_root: DataRootOption = None,
    graph_name: GraphOption = None,
    image_size: ImageSizeOption = None,
    embeddings: EmbeddingsOption = None,
    device: DeviceOption = "auto",
    trust_checkpoint: TrustOption = False,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            callback=output_folder,
            help="Write each pair's adversarial example here (PNGs + .npz, as bench run --save-images).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Attack a few images of a dataset with a trained model; print the labels before and after.

    Takes the first images of the split that the sweep's protocol makes eligible (the clean
    prediction is globally consistent with the graph and has every target), builds each
    image's consistent target set Ψ = h(Ω, G) and runs the attack. Per image: Ψ, the positive
    labels before and after, the result (failed / consistent / inconsistent success), the
    share of changed non-targets (NT_R), ℓ∞ and the iteration; then FR_N, FR_S, NT_R, SSIM.

    Example: bench attack --dataset stamps --targets dog --attack gmla --images 4 --eps 0.03
    Example: bench attack -d stamps -t cat,car -a mla-u --iterations 100
    """
    from bench.attacks import create_attack
    from bench.devices import resolve_device
    from bench.sweep.build import load_inputs
    from bench.sweep.target_set import attack_target_set, save_target_set

    params = {
        "eps": eps,
        **({"steps": steps} if steps is not None else {}),
        **({"tau": tau} if tau is not None else {}),
    }
    attacker = create_attack(attack, **params)
    dev = resolve_device(device)
    inputs = load_inputs(
        dataset,
        model,
        split=split,
        device=dev,
        trust=trust_checkpoint,
        image_size=image_size,
        embeddings=embeddings,
        root=data_root,
        graph=graph_name,
        report=console.print,
    )
    loaded, net, data, graph = inputs.model, inputs.net, inputs.data, inputs.graph
    omega = [t.strip() for t in targets.split(",") if t.strip()]
    console.print(
        f"{attacker.display_name} ({attacker!r}) on the first {images} eligible {split} image(s) of {dataset}, "
        f"model {Path(loaded.path).name} ({loaded.name}), Ω = {{{', '.join(omega)}}}, turn {'on' if turn_on else 'off'}"
    )
    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task(f"attacking with {attacker.display_name}", total=images)
        run = attack_target_set(
            net,
            data,
            graph,
            attacker,
            omega,
            images,
            turn_on=turn_on,
            device=dev,
            batch_size=batch_size,
            progress=lambda n: bar.advance(task, n),
        )
    if save is not None:
        save_target_set(save, run, attacker, graph)
        console.print(f"wrote {len(run.image_ids)} adversarial examples to {save}")
    names = graph.nodes

    def on(row) -> list[str]:
        return [names[i] for i in row.nonzero().flatten().tolist()]

    table = Table(title=f"{attacker.display_name}, ε = {attacker.eps:g}")
    for col in ("image", "Ψ", "before", "after", "result", "NT_R", "ℓ∞", "iter"):
        table.add_column(col, overflow="fold")
    pairs, metrics = run.pairs, run.metrics
    for p, image_id in enumerate(run.image_ids):
        outcome = Text("failed", style="red")
        if metrics.success[p]:
            outcome = (
                Text("consistent", style="green") if metrics.consistent[p] else Text("inconsistent", style="yellow")
            )
        table.add_row(
            image_id,
            _labels(on(pairs.graph_view(pairs.psi)[p])),
            _labels(on(pairs.graph_view(pairs.clean)[p])),
            _labels(on(pairs.graph_view(run.result.logits > 0)[p])),
            outcome,
            f"{100 * float(metrics.ntr_share[p]):.1f}%",
            f"{float(metrics.linf[p]):.4f}",
            str(int(run.result.iterations[p])),
        )
    console.print(table)
    s = run.summary
    ssim = "-" if math.isnan(s.ssim_pooled) else f"{s.ssim_pooled:.3f}"
    console.print(f"FR_N {100 * s.fr_n[0]:.1f}%  FR_S {100 * s.fr_s[0]:.1f}%  NT_R {100 * s.nt_r[0]:.2f}%  SSIM {ssim}")
