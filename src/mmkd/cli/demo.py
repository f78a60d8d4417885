"""`mmkd demo`: the whole pipeline on the built-in dataset on CPU, with a progress bar per stage."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from mmkd.cli import ui


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the dataset (data/) and the run (run/).")]
    = Path("runs/demo"),
    scale: Annotated[str, typer.Option(help="tiny (~150 segments, a smoke test) or small "
                                            "(~1,400 segments, the demo).")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the generated dataset.")] = 0,
    efficiency: Annotated[bool, typer.Option(
        help="Also measure teacher vs student inference cost at this run's sizes.")] = False,
    threads: Annotated[int, typer.Option(
        help="torch threads for training and evaluation (the fusion models are small: on 2 "
             "busy cores 1 thread measured ~10× faster per epoch than 2).")] = 1,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override for a new run, e.g. teacher.train.epochs=5.")] = None,
) -> None:
    """Generate the demo dataset and run manifest → extract → train teacher → distill (karmma,
    baseline, baseline-delta) → eval; finished stages are skipped on a re-run."""
    from mmkd import demo_pipeline as P
    from mmkd.cli.eval import run_eval
    from mmkd.cli.runctx import find_run
    from mmkd.cli.train import train_progress
    from mmkd.errors import MmkdError

    if scale not in ("tiny", "small"):
        raise MmkdError(f"--scale {scale!r}: use tiny or small")
    paths = P.DemoPaths(out, scale, seed)
    t0 = time.perf_counter()
    times: dict[str, float] = {}

    def stage(name: str, msg: str) -> None:
        ui.info(f"[bold cyan]▶ {name}[/bold cyan] {msg}")

    t = time.perf_counter()
    if P.data_ready(paths):
        _, msg = P.generate_data(paths)
    else:
        with ui.progress_bar(f"generate demo data ({scale})", total=P.n_videos(paths),
                             unit="videos") as advance:
            _, msg = P.generate_data(paths, progress=advance)
    stage("data", msg)
    _, msg = P.build_manifest(paths)
    stage("manifest", msg)
    created, cfg = P.init_run(paths, set_ or [])
    stage("config", f"{'wrote' if created else 'using'} {paths.run / 'mmkd.yaml'}")
    times["data + manifest"] = time.perf_counter() - t

    t = time.perf_counter()
    for target in P.extract_targets(cfg):
        title = f"extract {target.modality}/{target.extractor}"
        with ui.progress_bar(title, total=None, unit="clips") as advance:
            res = P.extract(paths, cfg, target, progress=advance)
        stage(title, f"{res.ok} new, {res.already_done} already done, {res.failed} failed "
                     f"({res.k}→{res.slots} tokens × {res.dim})")
    times["extract"] = time.perf_counter() - t

    import torch

    torch.set_num_threads(threads)
    t = time.perf_counter()
    with train_progress("teacher") as on_event:
        res = P.train_teacher(paths, cfg, progress=on_event)
    stage("teacher", f"best epoch {res.fit.best_epoch}: val acc "
                     f"{res.fit.best.get('val_acc', float('nan')):.1%}")
    times["teacher"] = time.perf_counter() - t
    t = time.perf_counter()
    for method in P.STUDENT_METHODS:
        with train_progress(method) as on_event:
            fit = P.distill(paths, cfg, method, progress=on_event)
        stage(method, f"best epoch {fit.best_epoch}: val acc {fit.best.get('val_acc', 0):.1%}")
    times["students"] = time.perf_counter() - t

    t = time.perf_counter()
    run = find_run(paths.run)
    protocols = ["subsets", "missing-rate"] + (["efficiency"] if efficiency else [])
    report = run_eval(run, protocols, device="cpu", efficiency_sizes="run",
                      efficiency_devices=["cpu"])
    times["eval"] = time.perf_counter() - t

    table = RichTable(title="mmkd demo: time per stage", show_header=False, title_justify="left")
    for k, v in times.items():
        table.add_row(k, f"{v:.0f} s")
    table.add_row("total", f"{time.perf_counter() - t0:.0f} s")
    ui.console.print(table)
    for line in P.findings(report.parent):
        ui.info(f"[bold]•[/bold] {line}")
    ui.info(f"report: [bold]{report}[/bold]")
