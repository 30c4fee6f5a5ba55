"""The counted progress bar of long steps (rich): description, bar, done/total, optional
text fields, elapsed and remaining time. The sweep has its own display (``bench.sweep.progress``)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(
    description: str = "{task.description}", *fields: str, console=None, enabled: bool = True, transient: bool = False
) -> Progress:
    """A ``Progress``; ``fields`` are rich format strings over ``task`` shown after the count
    (e.g. ``"loss {task.fields[loss]:.4f}"``)."""
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=transient,
    )
