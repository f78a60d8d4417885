"""Rich output shared by every command: one console, progress bars, tables, errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)
state = {"verbosity": 1}  # 0 quiet, 1 normal, 2 verbose
LOG_EVERY_S = 30.0  # outside a terminal: one plain progress line per task at most this often


def info(msg: str) -> None:
    if state["verbosity"] >= 1:
        console.print(msg)


def resumed(at: dict[str, int]) -> str:
    """A training run's `resumed_from` in words, epochs 1-based as in the bar and metrics."""
    if at["epoch"] > at["epochs"]:
        return f"a finished run (all {at['epochs']} epochs were done)"
    return f"epoch {at['epoch']}, step {at['step'] + 1}"


def fits(renderable: Any) -> bool:
    """Whether `renderable` (a table) fits the terminal at its natural width, uncut."""
    from rich.measure import Measurement

    unbounded = console.options.update(max_width=10_000)
    return Measurement.get(console, unbounded, renderable).maximum <= console.width


def new_progress(field: str | None = "rate", disable: bool | None = None) -> Progress:
    """The one bar layout of every command: description, bar, n/N, `field` (a live text such as
    rate or loss), elapsed, ETA. Where no terminal draws it (a log file, a batch job), the same
    facts come as one plain line per task every LOG_EVERY_S seconds."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if field:
        columns.append(TextColumn(f"{{task.fields[{field}]}}"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    disable = state["verbosity"] == 0 if disable is None else disable
    return LoggedProgress(*columns, console=console, disable=disable,
                          log_every=None if disable or console.is_terminal else LOG_EVERY_S)


class LoggedProgress(Progress):
    """A rich Progress that also prints a plain progress line per task at most every
    `log_every` seconds (None: never), since a bar is invisible outside a terminal."""

    def __init__(self, *columns, log_every: float | None = None, **kwargs):
        super().__init__(*columns, **kwargs)
        self.log_every = log_every
        self._last_line: dict[TaskID, float] = {}

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def _maybe_log(self, task_id: TaskID) -> None:
        if self.log_every is None:
            return
        now = time.monotonic()
        last = self._last_line.setdefault(task_id, now)
        if now - last < self.log_every:
            return
        self._last_line[task_id] = now
        self.console.print(progress_line(self._tasks[task_id]), markup=False, highlight=False)


def progress_line(task: Task) -> str:
    """`description: n/N (p %), fields, elapsed m:ss, ETA m:ss` (what the bar shows)."""
    total = f"{task.total:,.0f} ({task.percentage:.0f} %)" if task.total else "?"
    fields = "".join(f", {v}" for v in task.fields.values() if v)
    eta = f", ETA {_clock(task.time_remaining)}" if task.time_remaining is not None else ""
    return (f"{task.description}: {task.completed:,.0f}/{total}{fields}, elapsed "
            f"{_clock(task.elapsed or 0)}{eta}")


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


@contextmanager
def progress_bar(description: str, total: int | None, unit: str = "items") -> Iterator[Callable[[int], None]]:
    """A rich progress bar (rate, ETA); yields `advance(n)` for library callbacks."""
    with new_progress("rate") as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int = 1) -> None:
            bar.advance(task, n)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:.1f} {unit}/s" if speed else "")

        yield advance


@contextmanager
def counted_progress(description: str, unit: str = "items"
                     ) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A rich progress bar whose total the library reports once it knows it: yields
    `(start(total), advance(n))` for library callbacks."""
    with new_progress("rate") as bar:
        task = bar.add_task(description, total=None, rate="")

        def start(total: int) -> None:
            bar.update(task, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)
            speed = bar.tasks[task].speed
            bar.update(task, rate=f"{speed:.1f} {unit}/s" if speed else "")

        yield start, advance
