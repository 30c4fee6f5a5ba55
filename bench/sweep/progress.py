"""What a sweep reports while it runs: seconds per stage, and a rich progress display
(pairs attacked / to attack, combinations complete / total, pairs/s, ETA, and the running
FR_N / FR_S of the attack that ran last). The base ``SweepProgress`` is the quiet mode."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Self


class StageTimes(dict):
    """Seconds spent per stage of a sweep (``with times("metrics"): ...``)."""

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - start


class SweepProgress:
    """What a sweep reports while it runs; this base class reports nothing (quiet mode)."""

    def stage(self, text: str) -> None: ...

    def predictions(self, total: int) -> Callable[[int], None]:
        return lambda n: None

    def start(self, rows: int, combinations: int, complete: int) -> None: ...

    def advance(self, rows: int, complete: int, status: str) -> None: ...

    def workers(self, states: list[str]) -> None:
        """One line per worker of a cluster run (``bench run --ray``)."""


class RichSweepProgress(SweepProgress):
    """A rich display: a bar over the pairs to attack with combinations done / total, pairs/s
    and ETA, and below it the running FR_N / FR_S of the attack that ran last."""

    def __init__(self, console) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        self.console = console
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.status = Text("")
        self.cluster = Text("")
        self.live = Live(
            Group(self.bar, self.status, self.cluster), console=console, refresh_per_second=4, transient=False
        )
        self.task = None
        self.combos = 0

    def __enter__(self) -> Self:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()
        if not self.console.is_terminal:
            self.console.line()  # the last frame ends without a newline off a terminal

    def stage(self, text: str) -> None:
        self.console.print(text)

    def predictions(self, total: int) -> Callable[[int], None]:
        task = self.bar.add_task("predicting", total=total, info="images")
        return lambda n: self.bar.advance(task, n)

    def start(self, rows: int, combinations: int, complete: int) -> None:
        self.combos = combinations
        self.task = self.bar.add_task("attacking", total=rows, info=f"pairs, {complete}/{combinations} combinations")

    def advance(self, rows: int, complete: int, status: str) -> None:
        self.bar.advance(self.task, rows)
        speed = self.bar.tasks[self.task].speed
        rate = f", {speed:.1f} pairs/s" if speed else ""
        self.bar.update(self.task, info=f"pairs, {complete}/{self.combos} combinations{rate}")
        self.status.plain = f"running {status}"

    def workers(self, states: list[str]) -> None:
        self.cluster.plain = "\n".join(states)
