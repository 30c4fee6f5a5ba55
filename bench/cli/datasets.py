"""``bench data build | info``: generate the offline ``stamps`` set, describe any dataset."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from bench.cli.apps import DataRootOption, GraphOption, app, canonical_dataset
from bench.cli.console import console
from bench.errors import BenchError
from bench.progress import progress_bar

# The dataset modules import torch and torchvision (seconds): commands import them when they
# run, so that `bench --help` and the other commands start fast. StampsConfig's defaults,
# repeated for the option defaults (a test checks they agree):
STAMPS_DEFAULTS = {"seed": 0, "size": 128, "n_train": 6000, "n_test": 1000}

data_app = typer.Typer(
    help="Datasets: build the offline clip-art set, show counts and label frequencies.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command("build")
def build(
    name: Annotated[
        str,
        typer.Argument(
            callback=canonical_dataset,
            help="Dataset to generate (only 'stamps' is generated; the others are read from disk).",
        ),
    ],
    seed: Annotated[
        int, typer.Option(help="Random seed: the same seed gives byte-identical images.")
    ] = STAMPS_DEFAULTS["seed"],
    size: Annotated[int, typer.Option("--image-size", help="Image side in pixels.")] = STAMPS_DEFAULTS["size"],
    n_train: Annotated[int, typer.Option("--n-train", help="Training images.")] = STAMPS_DEFAULTS["n_train"],
    n_test: Annotated[int, typer.Option("--n-test", help="Test images.")] = STAMPS_DEFAULTS["n_test"],
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when a cached copy exists.")] = False,
    data_root: DataRootOption = None,
) -> None:
    """Generate the offline clip-art dataset 'stamps' (cached; rebuilt only when the settings change).

    Example: bench data build stamps --seed 0 --image-size 128 --n-train 6000 --n-test 1000
    """
    from bench.datasets.stamps import StampsConfig, build_stamps

    if name != "stamps":
        raise BenchError(
            f"only 'stamps' is generated; {name!r} is read from its folder "
            f"(see: bench data info {name} --data-root PATH)"
        )
    config = StampsConfig(seed=seed, size=size, n_train=n_train, n_test=n_test)
    started = time.perf_counter()
    folder = build_stamps(config, root=data_root, progress=True, force=force)
    console.print(
        f"stamps ready in {time.perf_counter() - started:.1f} s: {n_train} train + {n_test} test images at {size} px, "
        f"seed {seed}"
    )
    console.print(f"files: {folder}")


def _frequency_table(ds, targets, top: int) -> Table:
    counts = targets.sum(0)
    graph = ds.graph
    order = sorted(range(graph.n), key=lambda i: (-float(counts[i]), i))
    table = Table(title=f"label frequencies ({ds.split}, {len(ds)} images)", title_justify="left")
    for col in ("label", "kind"):
        table.add_column(col, justify="left")
    for col in ("images", "%"):
        table.add_column(col, justify="right")
    for i in order[: top or None]:
        kind = "label" if i < graph.n_labels else "abstract"
        table.add_row(graph.nodes[i], kind, str(int(counts[i])), f"{100 * float(counts[i]) / max(len(ds), 1):.1f}")
    return table


def _check_images(ds) -> int:
    from bench.datasets import batches

    decoded = 0
    with progress_bar("decoding {task.description}", console=console) as bar:
        task = bar.add_task(f"{ds.name}/{ds.split}", total=len(ds))
        for images, _, indices in batches(ds, batch_size=16):
            decoded += len(images)
            bar.update(task, completed=int(indices[-1]) + 1)
    return len(ds) - decoded


@data_app.command("info")
def info(
    name: Annotated[
        str,
        typer.Argument(
            callback=canonical_dataset,
            help="Dataset: voc, nus, openimages, stamps, folder (your images), or a registered one.",
        ),
    ],
    split: Annotated[
        list[str] | None,
        typer.Option(
            "--split",
            "-s",
            help="Split(s) to describe (default: train and test for stamps, test otherwise).",
            show_default=False,
        ),
    ] = None,
    data_root: DataRootOption = None,
    graph_name: GraphOption = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Image side (default: the dataset's).", min=1, show_default=False),
    ] = None,
    year: Annotated[
        int | None, typer.Option(help="VOC: 2007 or 2012.", show_default=False, rich_help_panel="VOC")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="stamps: seed.", show_default=False, rich_help_panel="stamps")
    ] = None,
    n_train: Annotated[
        int | None,
        typer.Option("--n-train", help="stamps: training images.", show_default=False, rich_help_panel="stamps"),
    ] = None,
    n_test: Annotated[
        int | None, typer.Option("--n-test", help="stamps: test images.", show_default=False, rich_help_panel="stamps")
    ] = None,
    top: Annotated[int, typer.Option(help="Show the N most frequent labels (0: all).", min=0)] = 0,
    check: Annotated[
        bool, typer.Option("--check", help="Decode every image and count those that do not decode.")
    ] = False,
) -> None:
    """Show where a dataset's files are, how many images each split has and how often each label is positive.

    It only reads: a stamps cache that is not built yet is one line naming `bench data build`.

    Example: bench data info stamps
    Example: bench data info voc --data-root ~/data/VOCdevkit --year 2012 --split val --check
    Example: bench data info folder --data-root ~/photos --graph voc
    """
    from bench.datasets import create_dataset

    given = {"year": year, "seed": seed, "n_train": n_train, "n_test": n_test, "graph": graph_name}
    kwargs = {key: value for key, value in given.items() if value is not None}
    if name == "stamps":
        kwargs["build"] = False  # an informational command builds nothing: `bench data build stamps` does
    for s in split or (["train", "test"] if name == "stamps" else ["test"]):
        ds = create_dataset(name, s, root=data_root, image_size=image_size, **kwargs)
        targets = ds.targets()
        root = getattr(ds, "root", data_root)  # the loaders record the folder they read
        console.print(
            f"{name} {ds.split}: {len(ds)} images at {ds.image_size} px, graph {ds.graph.name!r} "
            f"({ds.graph.n_labels} labels + {ds.graph.n - ds.graph.n_labels} abstract nodes)"
        )
        console.print(f"files: {root}")
        console.print(
            f"positive labels per image: {float(targets[:, : ds.graph.n_labels].sum(1).mean()):.2f} "
            f"(with ancestors: {float(targets.sum(1).mean()):.2f})"
        )
        console.print(_frequency_table(ds, targets, top))
        if check and name == "stamps" and root is not None:  # the stamps loader records its cache folder
            from bench.datasets.stamps import verify_stamps

            damaged = verify_stamps(root)
            if damaged:
                raise BenchError(
                    f"the stamps cache in {root} is damaged "
                    f"({', '.join(damaged)} differ from their recorded SHA-256): "
                    f"rebuild it with `bench data build stamps --force`"
                )
            console.print(f"cache files match the SHA-256 recorded when they were built ({root})")
        if check:
            bad = _check_images(ds)
            console.print(
                f"{bad} of {len(ds)} images do not decode" + (" (skipped by bench.datasets.batches)" if bad else "")
            )
