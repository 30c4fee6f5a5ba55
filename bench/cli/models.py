"""``bench models``: the trained runs and the architectures that can be trained."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from bench.cli.apps import app
from bench.cli.console import console
from bench.cli.train import DatasetOption, _num, _pct


@app.command("models")
def models_command(
    dataset: DatasetOption = None,
    available: Annotated[
        bool, typer.Option("--available", help="List the model architectures that can be trained instead.")
    ] = False,
) -> None:
    """List trained models per dataset, newest first (or the registered architectures).

    Example: bench models
    Example: bench models --dataset stamps
    Example: bench models --available
    """
    from bench.models import MODELS, model_spec
    from bench.models.trained import list_trained

    if available:
        table = Table("model", "loss", "size", "options", "what", title="registered models")
        for name in MODELS.names():
            spec = model_spec(name)
            opts = ", ".join(f"{k}={v!r}" for k, v in spec.options().items())
            table.add_row(name, spec.loss, str(spec.image_size), opts, spec.summary)
        console.print(table)
        return
    if dataset is not None:
        from bench.datasets import DATASETS

        DATASETS.get(dataset)  # a misspelt name: one line with the closest ones
    runs = list_trained(dataset)
    if not runs:
        from bench.sweep.inputs import train_command

        console.print(
            f"no trained models{f' for {dataset}' if dataset else ''} yet: {train_command(dataset or 'stamps')}"
        )
        return
    table = Table(
        "dataset", "run", "model", "epochs", "test mAP", "consistent", "created", title="trained models (newest first)"
    )
    for path, card in sorted(runs, key=lambda r: r[1].dataset):
        table.add_row(
            card.dataset,
            path.name,
            card.model,
            str(card.epochs),
            _num(card.test_map),
            _pct(card.consistency_share),
            card.created,
        )
    console.print(table)
