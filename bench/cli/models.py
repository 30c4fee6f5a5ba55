"""``bench models``: the trained runs and the architectures that can be trained."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bench.cli.apps import app
from bench.cli.console import FormatOption, RowFormat, console, write_rows
from bench.cli.train import DatasetOption, _num, _pct


@app.command("models")
def models_command(
    dataset: DatasetOption = None,
    available: Annotated[
        bool, typer.Option("--available", help="List the model architectures that can be trained instead.")
    ] = False,
    fmt: FormatOption = RowFormat.table,
) -> None:
    """List trained models per dataset, newest first (or the registered architectures).

    Example: bench models
    Example: bench models --dataset stamps
    Example: bench models --available
    Example: bench models --format json
    """
    from bench.models import MODELS, model_spec
    from bench.models.trained import list_trained
    from bench.train import adversarial_label

    if available:
        specs = [(name, model_spec(name)) for name in MODELS.names()]
        if fmt is not RowFormat.table:
            names = ["model", "loss", "image_size", "options", "what"]
            write_rows(names, [[n, s.loss, s.image_size, s.options(), s.summary] for n, s in specs], fmt)
            return
        table = Table("model", "loss", "size", "options", "what", title="registered models")
        for name, spec in specs:
            opts = ", ".join(f"{k}={v!r}" for k, v in spec.options().items())
            table.add_row(name, spec.loss, str(spec.image_size), opts, spec.summary)
        console.print(table)
        return
    runs = sorted(list_trained(dataset), key=lambda r: r[1].dataset)
    if fmt is not RowFormat.table:
        names = ["dataset", "run", "folder", "model", "epochs", "training", "test_map", "consistent", "created"]
        rows = [
            [c.dataset, p.name, str(p), c.model, c.epochs, adversarial_label(c.recipe)]
            + [c.test_map, c.consistency_share, c.created]
            for p, c in runs
        ]
        write_rows(names, rows, fmt)
        return
    if not runs:
        from bench.sweep.inputs import train_hint

        console.print(f"no trained models{f' for {dataset}' if dataset else ''} yet: {train_hint(dataset or 'stamps')}")
        return
    table = Table(
        "dataset",
        "run",
        "model",
        "epochs",
        "training",
        "test mAP",
        "consistent",
        "created",
        title="trained models (newest first)",
    )
    for path, card in runs:
        table.add_row(
            card.dataset,
            path.name,
            card.model,
            str(card.epochs),
            adversarial_label(card.recipe),
            _num(card.test_map),
            _pct(card.consistency_share),
            card.created,
        )
    console.print(table)
