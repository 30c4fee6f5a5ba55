"""The Typer apps that the command modules add their commands to."""

from __future__ import annotations

import inspect
import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from typer.models import CommandInfo, OptionInfo

from bench.errors import BenchError, unknown

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

    fp = numerics.row_numerics("cpu", "fp32", 0, numerics.effective_mode())
    typer.echo(f"semattack-bench {__version__}")
    typer.echo(f"torch {torch.__version__} (CUDA {'available' if torch.cuda.is_available() else 'not available'})")
    typer.echo(f"CPU: {fp['cpu']}, {fp['cpu_vendor']}, {fp['cpu_isa']} (flags: {fp['cpu_flags'] or 'none'})")
    typer.echo(
        f"CPU numerics, read back: MKL {fp['mkl']} runs {fp['mkl_path']}, oneDNN {fp['onednn']} runs "
        f"{fp['onednn_path']}, ATen runs {fp['aten_path']}; cpu-numerics {fp['cpu_numerics']} (a run's machine adds "
        "its device, precision and B)"
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
    "steps": "--iterations",  # an attack's own iteration count (bench attack)
}


def unwrap_help(text: str) -> str:
    """A docstring as help: each paragraph on one line (the terminal wraps it once), with
    ``Example:`` lines and list items kept on lines of their own."""
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not line.startswith(("Example:", "- ", "  ", "\b")):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


# Every number the command line takes has its range at the parser (NaN, ±inf and integers that
# overflow are refused there, with the range in the message); a flag means the same range in
# every command. An option's own min or max, where it declares one, wins.
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "--adv-eps": (0.0, 1.0),
    "--adv-ratio": (0.0, 1.0),
    "--adv-steps": (1, 100_000),
    "--adv-targets": (1, 1000),
    "--batch-size": (1, 65_536),
    "--combos-per-size": (1, 10_000_000),
    "--digits": (0, 6),
    "--epochs": (1, 10_000),
    "--eps": (0.0, 1.0),
    "--image-size": (8, 2048),
    "--images": (1, 100_000),
    "--images-per-combo": (1, 1_000_000),
    "--iterations": (1, 100_000),
    "--lp-iterations": (1, 100_000),
    "--queries": (1, 1_000_000),
    "--dp-iterations": (1, 100_000),
    "--eot": (1, 10_000),
    "--noise": (0.0, 1.0),
    "--labels": (1, 100_000),
    "--limit": (1, 1_000_000),
    "--lr": (0.0, 10.0),
    "--n-test": (1, 1_000_000),
    "--n-train": (1, 1_000_000),
    "--ray-cpus": (1, 1024),
    "--ray-workers": (1, 4096),
    "--repeats": (1, 1000),
    "--rounds": (1, 100),
    "--rows": (100, 10_000_000),
    "--save-images": (0, 100_000),
    "--seed": (0, 2**32 - 1),
    "--show": (0, 100_000),
    "--single-pairs": (1, 1000),
    "--size": (1, 1000),
    "--tau": (-1.0, 1.0),
    "--top": (0, 100_000),
    "--wait": (0.0, 86_400.0),
    "--workers": (0, 256),
    "--year": (2007, 2012),
}


def not_blank(param: typer.CallbackParam, value: str | None) -> str | None:
    """A text option given as "" or spaces: refused, rather than taken as not given."""
    if value is not None and not value.strip():
        raise BenchError(f"{param.opts[0]} {value!r}: give a value, or leave the option out")
    return value


def _numeric(annotation: object) -> bool:
    args = typing.get_args(annotation) or (annotation,)
    return any(a in (int, float) for a in args) and bool not in args


def registered(typer_app: typer.Typer) -> Iterator[CommandInfo]:
    """Every command registered on ``typer_app`` and its sub-apps."""
    yield from typer_app.registered_commands
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            yield from registered(group.typer_instance)


def finish_options(typer_app: typer.Typer) -> None:
    """Give every int and float option its range from ``NUMBER_RANGES`` (a numeric option with
    no range is a bug: raised here, so any test that loads the CLI finds it)."""

    for info in registered(typer_app):
        hints = typing.get_type_hints(info.callback, include_extras=True) if info.callback else {}
        for name, hint in hints.items():
            if typing.get_origin(hint) is not Annotated:
                continue
            base, *extras = typing.get_args(hint)
            for option in (e for e in extras if isinstance(e, OptionInfo)):
                if str in (typing.get_args(base) or (base,)) and option.callback is None:
                    option.callback = not_blank  # "" would read as "not given" and start default work
                if not _numeric(base):
                    continue
                # In ``Annotated``, typer takes Option's first argument (``default``) as the first flag.
                decls = (option.default, *(option.param_decls or ()))
                flag_name = next((d for d in decls if isinstance(d, str) and d.startswith("--")), None)
                flag_name = flag_name or "--" + name.replace("_", "-")
                if flag_name not in NUMBER_RANGES:
                    raise RuntimeError(f"numeric option {flag_name} of {info.callback!r} has no range")
                low, high = NUMBER_RANGES[flag_name]
                option.min = low if option.min is None else option.min
                option.max = high if option.max is None else option.max
        if info.callback:  # the evaluated hints, holding the options changed here, replace the strings
            info.callback.__annotations__.update(hints)


def finish_help(typer_app: typer.Typer) -> None:
    """Unwrap every command's help once all commands are registered; piped help is 160 columns
    wide so that defaults and paths print whole."""
    import typer.rich_utils

    from bench.cli.console import piped

    if piped() and not os.environ.get("TERMINAL_WIDTH"):
        typer.rich_utils.MAX_WIDTH = 160
    for info in registered(typer_app):
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if text:
            info.help = unwrap_help(text)


def canonical_dataset(value: str | None) -> str | None:
    """A dataset name as the registry holds it (names compare ignoring case, everywhere)."""
    if value is None:
        return None
    from bench.datasets import DATASETS

    if value not in DATASETS:
        raise unknown("dataset", value, DATASETS.names())
    return value.lower()


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_name(value: str | None) -> str | None:
    """A run's or trained model's ``--name``: it names a folder and is pasted into commands, so
    letters, digits, '.', '-' and '_' only (checked before any work)."""
    if value is not None and not NAME.fullmatch(value):
        raise BenchError(
            f"--name {value!r}: use letters, digits, '.', '-' or '_', starting with a letter or digit "
            "(at most 100; it names a folder and goes into commands)"
        )
    return value


def graph_name(value: str | None) -> str | None:
    """A new graph's ``--name``, checked before any graph is built."""
    from kg.catalog import GRAPH_NAME

    if value is not None and not GRAPH_NAME.fullmatch(value):
        raise BenchError(
            f"--name {value!r}: a graph name is lower-case letters, digits, '-' or '_' (it becomes a file name)"
        )
    return value


def output_file(param: typer.CallbackParam, value: Path | None) -> Path | None:
    """``--out FILE`` (and a database to write): a file in a folder that exists (nothing is
    created but the file; ``-``: standard output where a command offers it)."""
    if value is None or str(value) == "-":
        return value
    path, name = value.expanduser(), param.opts[0]
    if path.is_dir():
        raise BenchError(f"{name} {str(value)!r} is a folder: name a file (e.g. {path / 'out'}.EXT)")
    if not path.parent.is_dir():
        raise BenchError(f"{name} {value}: folder {path.parent} does not exist; create it first")
    return value


def output_folder(value: Path | None) -> Path | None:
    """An output folder (created when missing): refused when a file of that name is in the way."""
    if value is not None and value.expanduser().exists() and not value.expanduser().is_dir():
        raise BenchError(f"{value} is a file, not a folder: name a folder to write into")
    return value


def canonical_graph(value: str | None) -> str | None:
    """A graph name as the catalog compares it (ignoring case, as datasets and attacks); a graph
    file's path (.json, or a .csv of edges for dataset folder) is kept as given."""
    if value is not None and not value.strip():
        raise BenchError("--graph '': name a graph (`bench kg build` lists how to make one) or a graph .json file")
    if value is None or value.lower().endswith((".json", ".csv")) or "/" in value:
        return value
    return value.lower()


# Old spellings, kept for one release: (command path) -> {old flag: new flag}.
DEPRECATED_FLAGS: dict[tuple[str, ...], dict[str, str]] = {
    **{("kg", cmd): {"--dataset": "--graph", "-d": "--graph"} for cmd in ("show", "view", "export", "load", "closure")},
    ("perf", "kg"): {"--dataset": "--graph", "-d": "--graph", "--k": "--size"},
    ("data", "build"): {"--size": "--image-size"},
    ("attack",): {"--steps": "--iterations"},
    ("perf", "attack"): {"--steps": "--iterations", "--batch": "--batch-size"},
    **{path: {"--attacks": "--attack"} for path in (("run",), ("perf", "sweep"), ("perf", "numerics"))},
}


def rewrite_deprecated(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with old flag spellings replaced by the current ones, and one warning per old
    flag used (``--k 3`` and ``--k=3`` alike)."""
    words = [a for a in argv if not a.startswith("-")]
    path = next((tuple(words[:n]) for n in (2, 1) if tuple(words[:n]) in DEPRECATED_FLAGS), None)
    if path is None:
        return argv, []
    renames, out, warnings = DEPRECATED_FLAGS[path], [], []
    for arg in argv:
        old, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if old in renames:
            warnings.append(f"{old} is deprecated here: use {renames[old]} (the old spelling goes in the next release)")
            arg = renames[old] + eq + value
        out.append(arg)
    return out, warnings


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
        callback=canonical_graph,
        help="Label graph of the dataset's extended labels by name (default: the dataset's own; e.g. one from bench "
        "kg import); for -d folder also a CSV of parent,child pairs.",
        show_default=False,
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        callback=output_file,
        help="Results database (default: $BENCH_DATA/results.duckdb).",
        show_default=False,
    ),
]


def results_to_read(value: Path | None) -> Path | None:
    """The results database a read command reads: the one named, else the default one; when
    that does not exist yet but ``bench demo`` has run, the demo's (said in one line), so that
    the commands the demo and the help suggest work after it."""
    from bench.paths import default_results, demo_results

    if value is not None or default_results().exists() or not demo_results().exists():
        return value
    from bench.cli.console import err_console

    err_console.print(f"note: no results database at {default_results()} yet: reading the demo's, {demo_results()}")
    return demo_results()


ReadDbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        callback=results_to_read,
        help="Results database (default: $BENCH_DATA/results.duckdb; before any sweep, the demo's).",
        show_default=False,
    ),
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
        help="native (each CPU's widest code path), or portable: code paths every x86-64 vendor honours (MKL's "
        "compatible path, strict; oneDNN AVX2; ATen unvectorised), for one set of rows on Intel and AMD alike (the "
        "test suite compares each machine's rows with a digest committed from another; docs/sweeps.md). Part of "
        "the run's configuration; overrides MKL_CBWR, ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY; refused, with the "
        "reason, where a library does not take its path.",
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
ModelDatasetOption = Annotated[
    str, typer.Option("--dataset", "-d", callback=canonical_dataset, help="Dataset of the model.")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Trained run (name or folder), architecture (its newest run), published checkpoint file, or your "
        "own model as module:factory (a callable returning an nn.Module, importable from this folder); default: the "
        "dataset's newest trained model.",
        show_default=False,
    ),
]
