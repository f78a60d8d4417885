"""`mmkd pretrain`: train stage-1 extractors on the run's own train split (supervised), for
datasets without a usable pretrained checkpoint; their weights then feed `mmkd extract`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.cli.jobs import BarReporter
from mmkd.cli.train import CacheOpt, DeviceOpt, FlipOpt, RestartOpt, SetOpt, flip_override
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
    restart: RestartOpt = False, flip: FlipOpt = None,
) -> None:
    """Train extractors (random init + a linear classifier per label head) on the train split,
    keep the best epoch on val, and write RUN_DIR/pretrained/<modality>-<extractor>.safetensors."""
    from mmkd.train.pretrain import pretrain_modality

    run = find_run(cache, (set_ or []) + flip_override(flip)
                   + ([f"pretrain.train.epochs={epochs}"] if epochs else []))
    with ui.new_progress("info") as bar:
        results = pretrain_modality(run.dir, run.cfg, modality, BarReporter(bar, "pretrain"),
                                    extractor or None, out, workers, in_ram, device or "cpu",
                                    resume=not restart)
    _summary(results, modality)
    for r in results:
        for reason, n in r.failures.most_common(5):
            ui.console.print(f"  [yellow]{r.extractor}: {n} × {reason} (left out)[/yellow]")
        ui.info(f"use them: {_weights_hint(run.cfg, run.dir, modality, r.extractor, r.weights)}")


def _summary(results: list, modality: str) -> None:
    """One row per extractor: the best epoch's accuracy (all heads right), then each head's."""
    split = "val" if any("val_acc" in r.fit.best for r in results) else "train"
    heads = sorted({k[len(split) + 5:] for r in results for k in r.fit.best
                    if k.startswith(f"{split}_acc_")})
    table = Table(title=f"mmkd pretrain ({modality}): accuracy on {split} at the best epoch "
                        "(acc: every head right)", title_justify="left")
    for col in ("extractor", "clips train/val", "best epoch", "acc", *heads, "weights"):
        table.add_column(col, overflow="fold")
    for r in results:
        best = r.fit.best
        accs = [f"{best[k]:.1%}" if k in best else "–"
                for k in (f"{split}_acc", *(f"{split}_acc_{h}" for h in heads))]
        table.add_row(r.extractor, f"{r.train_clips}/{r.val_clips}", str(r.fit.best_epoch),
                      *accs, str(r.weights))
    ui.console.print(table)


def _weights_hint(cfg, run_dir: Path, modality: str, extractor: str, weights: Path) -> str:
    """The `--set` that wires `weights` into the roles whose extractor it is (or, for another
    extractor, into the teacher with that extractor), and the direct `mmkd extract` call."""
    rel = weights.relative_to(run_dir) if weights.is_relative_to(run_dir) else weights
    roles = [r.name for r in (cfg.teacher, cfg.student) if r.extractors.get(modality) == extractor]
    sets = (" ".join(f"--set {role}.weights.{modality}={rel}" for role in roles) if roles else
            f"--set teacher.extractors.{modality}={extractor} --set teacher.weights.{modality}="
            f"{rel} (or student.*)")
    return (f"{sets} in this run, or mmkd extract --modality {modality} --extractor {extractor} "
            f"--weights {weights}")
