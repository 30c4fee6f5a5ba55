"""The Typer apps that the command modules add their commands to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="bench",
    help="semattack-bench: semantic-aware multi-label adversarial attacks (GMLA, CVPR 2024).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
kg_app = typer.Typer(help="Knowledge graphs: build, load, explore, closures.", no_args_is_help=True)
perf_app = typer.Typer(help="Benchmarks of the product's own speed (ratios measured in one run).", no_args_is_help=True)


def _version(value: bool) -> None:
    """``bench --version``: the package, torch, and this CPU's numerics (the machines table's)."""
    if not value:
        return
    import torch

    from bench import __version__, numerics

    fp = numerics.fingerprint("cpu", "fp32", 0, numerics.effective_mode())
    typer.echo(f"semattack-bench {__version__}")
    typer.echo(f"torch {torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'not available'})")
    typer.echo(
        f"CPU numerics: {fp['cpu']}; MKL {fp['mkl_path']} (MKL {fp['mkl']}), oneDNN {fp['onednn_path']}, "
        f"ATen {fp['aten_path']}; cpu-numerics {fp['cpu_numerics']} (a run's machine adds its device, precision and B)"
    )
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the versions and CPU numerics, exit."),
    ] = False,
) -> None:
    """semattack-bench: semantic-aware multi-label adversarial attacks (GMLA, CVPR 2024)."""


app.add_typer(kg_app, name="kg")
app.add_typer(perf_app, name="perf")

# Library parameters whose flag is not ``--`` + the parameter's name with dashes.
FLAGS = {
    "images_per_combination": "--images-per-combo",
    "combinations_per_size": "--combos-per-size",
    "sizes": "--size",
    "cpus_per_worker": "--ray-cpus",
    "workers": "--ray-workers",
    "address": "--ray",
    "root": "--data-root",
    "trust": "--trust-checkpoint",
    "run_dir": "--name",
    "runs": "--run",  # bench table, plot, export
    "attacks": "--attack",  # the attacks a table shows
}


def flag(parameter: str) -> str:
    """The flag that sets a library parameter: how the CLI spells an error's ``options``."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


# Options shared by several commands.
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Load a checkpoint or embedding pickle that holds more than tensors and arrays by full unpickling, "
        "which RUNS CODE from the file: only for files from a source you trust (off: such files are refused).",
    ),
]
GraphOption = Annotated[
    str | None,
    typer.Option(
        "--graph",
        help="Label graph of the dataset's extended labels by name (default: the dataset's own; e.g. one from bench "
        "kg import).",
        show_default=False,
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Results database (default: $BENCH_DATA/results.duckdb).", show_default=False),
]
GraphStoreOption = Annotated[
    str,
    typer.Option(
        "--graph-store",
        help="Graph store of the label graphs: ladybug (embedded file, the default) "
        "or neo4j (NEO4J_URI, NEO4J_USER, NEO4J_PASSWORD).",
    ),
]
GraphDbOption = Annotated[
    Path | None,
    typer.Option(
        "--graph-db",
        help="Ladybug database file of the graph store (default: $BENCH_LADYBUG_DB, else $BENCH_DATA/graphs.lbug).",
        show_default=False,
    ),
]
DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Dataset folder (default: $BENCH_DATA/datasets/NAME; stamps: its cache folder).",
        show_default=False,
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option("--image-size", help="Input side in pixels (default: the model's).", min=1, show_default=False),
]
EmbeddingsOption = Annotated[
    Path | None,
    typer.Option(
        "--embeddings", help="With a published ML-GCN checkpoint: its word-embedding pickle.", show_default=False
    ),
]
PairBatchOption = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="B, the engine's slots: pairs per batch (default: from free GPU memory; 32 on CPU).",
        min=1,
        show_default=False,
    ),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:INDEX.")]
CpuNumericsOption = Annotated[
    str,
    typer.Option(
        "--cpu-numerics",
        help="native (each CPU's widest code path), or portable: MKL, oneDNN and ATen pinned to AVX2 with MKL's "
        "strict reproducibility, so that Intel and AMD machines give the same rows (part of the run's "
        "configuration; overrides MKL_CBWR, ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY).",
    ),
]
MixedNumericsOption = Annotated[
    bool,
    typer.Option(
        "--allow-mixed-numerics",
        help="Add rows computed on a machine whose numerics fingerprint (device, CPU code path, versions, "
        "precision, B) differs from the one that computed the run's stored rows (recorded); refused otherwise.",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Trained run (name or folder), architecture (its newest run) or published checkpoint file; "
        "default: the dataset's newest trained model.",
        show_default=False,
    ),
]
