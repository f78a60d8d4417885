"""Independent jobs side by side in worker processes, one live progress bar per job.

Small models use a CPU core badly from several threads (the demo's fusion blocks measured ~10×
slower per epoch on 2 threads than on 1 when the cores are busy), so on a few cores two
independent jobs on one thread each finish far sooner than the same jobs one after the other.
Each job is a module-level function called as `fn(*args, report)`; `report` (a `Reporter`) is
picklable and forwards its callbacks through a queue to the parent, which draws the bars.
"""

from __future__ import annotations

import queue as queue_mod
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from mmkd.cli import ui

_QUEUE: Any = None  # the worker process's end of the progress queue


@dataclass
class Job:
    title: str
    fn: Callable[..., Any]  # module-level (picklable), called as fn(*args, report)
    args: tuple = ()


class Reporter:
    """Progress callbacks of one job: `start(total)`, `advance(n)`, `event(TrainEvent)` (the
    training loop's), `phase(text)` (what the job does now). This one sends them to the parent
    process; `BarReporter` draws them in this process."""

    def __init__(self, job: int):
        self.job = job

    def _put(self, kind: str, value: Any) -> None:
        _QUEUE.put((self.job, kind, value))

    def start(self, total: int) -> None:
        self._put("start", total)

    def advance(self, n: int = 1) -> None:
        self._put("advance", n)

    def event(self, ev: Any) -> None:
        if ev.phase == "train":
            self._put("event", ev)

    def phase(self, text: str) -> None:
        self._put("phase", text)


class BarReporter(Reporter):
    """The same callbacks drawn on one task of a live progress bar (no worker processes)."""

    def __init__(self, bar: Any, title: str):
        super().__init__(0)
        self.bar, self.title = bar, title
        self.task = bar.add_task(title, total=None, info="")

    def _put(self, kind: str, value: Any) -> None:
        show(self.bar, self.task, self.title, kind, value)


def show(bar: Any, task: int, title: str, kind: str, value: Any) -> None:
    """One progress callback applied to a bar's task."""
    if kind == "start":
        bar.reset(task, total=value, info="")
    elif kind == "advance":
        bar.advance(task, value)
    elif kind == "phase":
        bar.reset(task, total=None, description=f"{title}: {value}", info="")
    else:
        bar.update(task, total=value.total_steps, completed=value.step,
                   description=f"{title} epoch {value.epoch}/{value.epochs}",
                   info=f"loss {value.loss:.3f}  acc {value.acc:.1%}")


def _init_worker(q: Any, threads: int) -> None:
    import torch

    global _QUEUE
    _QUEUE = q
    torch.set_num_threads(threads)


def _call(fn: Callable[..., Any], args: tuple, job: int) -> Any:
    return fn(*args, Reporter(job))


def run_jobs(jobs: list[Job], workers: int = 2, threads: int = 1) -> list[Any]:
    """Run `jobs` on `workers` processes of `threads` torch threads; results in job order (a
    job's exception is raised here once every job has ended)."""
    ctx = get_context("forkserver")
    # the server imports torch and the jobs' modules once; each worker then starts in ~0.3 s
    ctx.set_forkserver_preload(["torch", *sorted({j.fn.__module__ for j in jobs})])
    q = ctx.Queue()
    with ui.new_progress("info") as bar, ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_worker,
            initargs=(q, threads)) as pool:
        tasks = [bar.add_task(j.title, total=None, info="waiting") for j in jobs]
        futures = [pool.submit(_call, j.fn, j.args, i) for i, j in enumerate(jobs)]
        pending = set(futures)
        while pending:
            _drain(q, bar, tasks, jobs, timeout=0.2)
            _, pending = wait(pending, timeout=0)
        _drain(q, bar, tasks, jobs, timeout=0)
        for task, f in zip(tasks, futures, strict=True):
            bar.update(task, info="done" if f.exception() is None else "[red]failed[/red]")
    return [f.result() for f in futures]


def _drain(q: Any, bar: Any, tasks: list[int], jobs: list[Job], timeout: float) -> None:
    try:
        item = q.get(timeout=timeout) if timeout else q.get_nowait()
    except queue_mod.Empty:
        return
    while True:
        job, kind, value = item
        show(bar, tasks[job], jobs[job].title, kind, value)
        try:
            item = q.get_nowait()
        except queue_mod.Empty:
            return
