"""Rich output shared by every command: one console, progress bars, tables, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)
state = {"verbosity": 1}  # 0 quiet, 1 normal, 2 verbose


def info(msg: str) -> None:
    if state["verbosity"] >= 1:
        console.print(msg)


def resumed(at: dict[str, int]) -> str:
    """A training run's `resumed_from` in words, epochs 1-based as in the bar and metrics."""
    if at["epoch"] > at["epochs"]:
        return f"a finished run (all {at['epochs']} epochs were done)"
    return f"epoch {at['epoch']}, step {at['step'] + 1}"


def new_progress(field: str | None = "rate", disable: bool | None = None) -> Progress:
    """The one bar layout of every command: description, bar, n/N, `field` (a live text such as
    rate or loss), elapsed, ETA."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if field:
        columns.append(TextColumn(f"{{task.fields[{field}]}}"))
    columns += [TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=console,
                    disable=state["verbosity"] == 0 if disable is None else disable)


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
