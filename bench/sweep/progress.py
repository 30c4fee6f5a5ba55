"""What a sweep reports while it runs: seconds per stage, the running FR_N / FR_S of each
setting (``RunningRates``), and a rich progress display (pairs attacked / to attack,
combinations complete / total, pairs/s, ETA, and the running rates of the attack that ran
last). The base ``SweepProgress`` is the quiet mode."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Self

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

from bench.names import attack_display
from results.schema import ResultKey, ResultRow

if TYPE_CHECKING:
    from rich.progress import TaskID

    from bench.sweep.config import AttackSetting


class StageTimes(dict):
    """Seconds spent per stage of a sweep (``with times("metrics"): ...``)."""

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[stage] = self.get(stage, 0.0) + time.perf_counter() - start


class RunningRates:
    """Each setting's rows stored so far, successes (FR_N) and consistent successes (FR_S)."""

    def __init__(self, settings: Sequence[AttackSetting]) -> None:
        self.by_grid = {ResultKey.of(0, "", s.attack, s.eps, s.tau)[2:]: s for s in settings}
        self.rates: dict[AttackSetting, list[int]] = {}

    def add(self, rows: Sequence[ResultRow]) -> None:
        for r in rows:
            rate = self.rates.setdefault(self.setting_of(r), [0, 0, 0])
            rate[0], rate[1], rate[2] = rate[0] + 1, rate[1] + r.success, rate[2] + r.consistent

    def setting_of(self, row: ResultRow) -> AttackSetting:
        return self.by_grid[row.key[2:]]

    def text_for(self, row: ResultRow) -> str:
        """The running rates of the setting ``row`` belongs to."""
        return self.text(self.setting_of(row))

    def text(self, s: AttackSetting) -> str:
        n, ok, consistent = self.rates.get(s, [0, 0, 0])
        name = attack_display(s.attack)
        return f"{name} ε={s.eps:g}: FR_N {100 * ok / max(n, 1):.0f}% FR_S {100 * consistent / max(n, 1):.0f}%"


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
        self.task: TaskID | None = None
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
        if self.task is None:
            raise RuntimeError("SweepProgress.advance before start")
        self.bar.advance(self.task, rows)
        speed = self.bar.tasks[self.task].speed
        rate = f", {speed:.1f} pairs/s" if speed else ""
        self.bar.update(self.task, info=f"pairs, {complete}/{self.combos} combinations{rate}")
        self.status.plain = f"running {status}"

    def workers(self, states: list[str]) -> None:
        self.cluster.plain = "\n".join(states)
