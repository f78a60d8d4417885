"""`mmkd pretrain`: train stage-1 extractors on the run's own train split (supervised), for
datasets without a usable pretrained checkpoint; their weights then feed `mmkd extract`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.cli.jobs import BarReporter
from mmkd.cli.train import CacheOpt, DeviceOpt, RestartOpt, SetOpt
from mmkd.rundir import find_run


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)


def pretrain(
    modality: Annotated[str, typer.Option(help="video, flow, audio or detection.")],
    extractor: Annotated[list[str] | None, typer.Option(
        help="A registered extractor (repeatable); default: the teacher's and the student's "
             "for MODALITY.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Default: pretrain.train.epochs.")] = None,
    out: Annotated[Path | None, typer.Option(help="Default: RUN_DIR/pretrained.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode worker processes.")] = None,
    in_ram: Annotated[bool, typer.Option(
        "--in-ram/--stream", help="Decode the clips once and keep them in RAM (float16), or "
                                  "decode them again every epoch.")] = True,
    cache: CacheOpt = None, set_: SetOpt = None, device: DeviceOpt = None,
    restart: RestartOpt = False,
) -> None:
    """Train extractors (random init + a linear classifier per label head) on the train split,
    keep the best epoch on val, and write RUN_DIR/pretrained/<modality>-<extractor>.safetensors."""
    from mmkd.train.pretrain import pretrain_modality

    run = find_run(cache, (set_ or []) + ([f"pretrain.train.epochs={epochs}"] if epochs else []))
    with ui.new_progress("info") as bar:
        results = pretrain_modality(run.dir, run.cfg, modality, BarReporter(bar, "pretrain"),
                                    extractor or None, out, workers, in_ram, device or "cpu",
                                    resume=not restart)
    table = Table(title=f"mmkd pretrain ({modality})")
    for col in ("extractor", "clips train/val", "best epoch", "val acc", "weights"):
        table.add_column(col)
    for r in results:
        best = r.fit.best
        table.add_row(r.extractor, f"{r.train_clips}/{r.val_clips}", str(r.fit.best_epoch),
                      f"{best['val_acc']:.1%}" if "val_acc" in best else "–", str(r.weights))
    ui.console.print(table)
    for r in results:
        for reason, n in r.failures.most_common(5):
            ui.console.print(f"  [yellow]{r.extractor}: {n} × {reason} (left out)[/yellow]")
        rel = r.weights.relative_to(run.dir) if r.weights.is_relative_to(run.dir) else r.weights
        ui.info(f"use them: --set teacher.weights.{modality}={rel} (or student.weights) in "
                f"this run, or mmkd extract --modality {modality} --extractor {r.extractor} "
                f"--weights {r.weights}")

