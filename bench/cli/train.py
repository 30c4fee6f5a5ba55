"""``bench train | eval | models``: train models on extended labels, evaluate them, list them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bench.cli.apps import (
    DataRootOption,
    DeviceOption,
    EmbeddingsOption,
    GraphOption,
    ImageSizeOption,
    ModelOption,
    TrustOption,
    app,
    canonical_dataset,
    output_file,
    safe_name,
)
from bench.cli.console import console, styled
from bench.errors import BenchError
from bench.fileio import write_json
from bench.progress import progress_bar

DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        callback=canonical_dataset,
        help="Dataset name (stamps, voc, nus, openimages).",
        show_default=False,
    ),
]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings → a dict; values parse as JSON when they can (numbers, true/false), else stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"model option {pair!r} is not key=value")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@app.command("train")
def train_command(
    dataset: DatasetOption = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Registered model (bench models --available).", show_default=False),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Named recipe (demo: stamps in ~3 CPU minutes); other options override it.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Training epochs.", show_default=False)] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per step.", min=1, show_default=False)
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", help="Peak learning rate of the one-cycle schedule.", show_default=False)
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Input side in pixels (default: the model's).", min=1, show_default=False),
    ] = None,
    loss: Annotated[
        str | None, typer.Option("--loss", help="asl or bce (default: the model's own).", show_default=False)
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of weights, shuffling and augmentation.", show_default=False)
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment", help="Flip / zoom / shift augmentation.", show_default=False),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option", "-o", help="Model option key=value (e.g. variant=tresnet_l), repeatable.", show_default=False
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="DataLoader worker processes.")] = 0,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            callback=safe_name,
            help="Run name (default MODEL-TIME; MODEL-adv-ATTACK-TIME with --adversarial).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Continue this run (name or folder) from its last epoch.", show_default=False),
    ] = None,
    data_root: DataRootOption = None,
    device: DeviceOption = "auto",
    graph: GraphOption = None,
    adversarial: Annotated[
        str | None,
        typer.Option(
            "--adversarial",
            help="Adversarial training against this attack (mla-u, gmla, ...; bounded by ε): each step trains on its "
            "output on the current model, for random target sets among the labels predicted on each image.",
            show_default=False,
        ),
    ] = None,
    adv_eps: Annotated[
        float | None,
        typer.Option("--adv-eps", help="With --adversarial: the attack's ε (default 0.01).", show_default=False),
    ] = None,
    adv_steps: Annotated[
        int | None,
        typer.Option(
            "--adv-steps", help="With --adversarial: the attack's iterations (default 5).", show_default=False
        ),
    ] = None,
    adv_ratio: Annotated[
        float | None,
        typer.Option(
            "--adv-ratio",
            help="With --adversarial: share of each batch replaced by adversarial images (default 1; 0.5 mixes).",
            show_default=False,
        ),
    ] = None,
    adv_targets: Annotated[
        int | None,
        typer.Option(
            "--adv-targets",
            help="With --adversarial: the largest target set |Ω| drawn (default 3).",
            show_default=False,
        ),
    ] = None,
    noise: Annotated[
        float | None,
        typer.Option(
            "--noise",
            help="Gaussian noise of this standard deviation on every training image (for the smoothing defense).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a model on a dataset's extended labels; save weights and a model card.

    AdamW + one-cycle schedule, mixed precision on GPU, a checkpoint each epoch (--resume
    continues), evaluation on the test split at the end. The run goes to
    $BENCH_DATA/models/DATASET/NAME/ (model.pt, card.json). --adversarial ATTACK trains on
    that attack's examples, made on the current model each step (about 1 + steps times the
    cost of a standard step; docs/models.md, "Adversarial training").

    Example: bench train --dataset stamps --preset demo
    Example: bench train -d voc -m asl -o variant=tresnet_l --image-size 224 --epochs 40
    Example: bench train --resume resnet18-20250101-120000
    Example: bench train --preset demo --adversarial mla-u --adv-eps 0.05 --adv-steps 5 --name demo-adv
    Example: bench train --preset demo --noise 0.05 --name demo-noise
    """
    from bench.devices import resolve_device
    from bench.models.trained import resolve_run
    from bench.train import TrainConfig, preset_config, run_dir_for, train

    dev = resolve_device(device)  # checked before anything prints
    if resume:
        run_dir = resolve_run(resume, dataset)
        console.print(styled("resuming ", (str(run_dir), "bold")))
        result = train(run_dir=run_dir, resume=True, device=dev)
    else:
        overrides: dict[str, Any] = {
            "model": model,
            "dataset": dataset,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "image_size": image_size,
            "loss": loss,
            "seed": seed,
            "augment": augment,
            "workers": workers,
            "data_root": data_root,
            "model_kwargs": parse_options(option) or None,
            "dataset_kwargs": {"graph": graph} if graph else None,
            "adversarial": adversarial,
            "adv_eps": adv_eps,
            "adv_steps": adv_steps,
            "adv_ratio": adv_ratio,
            "adv_targets": adv_targets,
            "noise": noise,
        }
        if preset:
            config = preset_config(preset, **overrides)
        else:
            if dataset is None:
                raise BenchError("give --dataset (or --preset demo)")
            config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
        config = config.resolved()
        run_dir = run_dir_for(config, name)
        span = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
        adv = ""
        if config.adversarial:
            adv = (
                f", adversarial {config.adversarial} (ε {config.adv_eps:g}, {config.adv_steps} steps, "
                f"ratio {config.adv_ratio:g}, |Ω| ≤ {config.adv_targets})"
            )
        console.print(
            f"training {config.model} on {config.dataset} at {config.image_size} px: {span}, "
            f"batch {config.batch_size}, lr {config.lr:g}, loss {config.loss}{adv} → {run_dir}"
        )
        result = train(config, run_dir=run_dir, device=dev)
    card = result.card
    console.print(
        f"test mAP {_num(card.test_map)} (labels {_num(result.report.map_labels)}, abstract "
        f"{_num(result.report.map_abstract)}), "
        f"globally consistent predictions {_pct(card.consistency_share)}, {_num(card.throughput, 1)} train images/s"
    )
    console.print(f"saved {result.run_dir / 'model.pt'}")


@app.command("eval")
def eval_command(
    dataset: DatasetOption = None,
    model: ModelOption = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help="With a published checkpoint: refuse other architectures (asl, ml-decoder, ml-gcn).",
            show_default=False,
        ),
    ] = None,
    embeddings: EmbeddingsOption = None,
    image_size: ImageSizeOption = None,
    split: Annotated[str, typer.Option("--split", help="Dataset split.")] = "test",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.", min=1)] = 64,
    show: Annotated[int, typer.Option("--show", help="Per-label APs to print (lowest first); 0 for none.", min=0)] = 10,
    out: Annotated[
        Path | None,
        typer.Option(
            "--json",
            callback=output_file,
            help="Write the report (per-label AP, consistent image ids) to this JSON file.",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOption = None,
    graph_name: GraphOption = None,
    device: DeviceOption = "auto",
    trust_checkpoint: TrustOption = False,
) -> None:
    """Evaluate a model: mAP, per-label AP, and the share of globally consistent predictions.

    The consistent images (clean prediction logits > 0 consistent with the graph at every
    node) are the ones the attacks may use. --model takes what bench run takes: a trained run,
    an architecture (its newest run) or a published checkpoint file.

    Example: bench eval --dataset stamps
    Example: bench eval -d openimages -m Open_ImagesV6_TRresNet_L_448.pth --image-size 448
    """
    from bench.devices import resolve_device
    from bench.evaluate import evaluate
    from bench.sweep.build import load_inputs

    dev = resolve_device(device)
    inputs = load_inputs(
        dataset,
        model,
        split=split,
        device=dev,
        trust=trust_checkpoint,
        image_size=image_size,
        arch=arch,
        embeddings=embeddings,
        root=data_root,
        graph=graph_name,
        report=console.print,
    )
    dataset, net, ds = inputs.dataset, inputs.net, inputs.data
    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task(f"evaluating on {dataset}/{split}", total=len(ds))
        report = evaluate(net, ds, batch_size=batch_size, device=dev, progress=lambda n: bar.advance(task, n))
    console.print(
        f"{dataset}/{split}: {report.n_images} images, mAP {_num(report.map)} "
        f"(labels {_num(report.map_labels)}, abstract {_num(report.map_abstract)}), "
        f"globally consistent predictions {_pct(report.consistent_share)} ({sum(report.consistent)} images)"
        + (f"; {report.skipped} image(s) did not decode and were left out" if report.skipped else "")
    )
    if show > 0:
        table = Table("label", "AP", "kind", title=f"lowest {show} label APs")
        ranked = sorted((a, n, i) for i, (n, a) in enumerate(zip(report.labels, report.ap)) if not math.isnan(a))
        for a, n, i in ranked[:show]:
            table.add_row(n, f"{a:.3f}", "label" if i < report.n_labels else "abstract")
        console.print(table)
    if out is not None:
        write_json(out, report.to_dict(per_image=True))
        console.print(f"wrote {out}")
