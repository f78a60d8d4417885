"""`mmkd train teacher` and `mmkd distill`: stage 2 from the feature cache.

Both find the run (current directory or --cache RUN_DIR), train with a live progress bar (loss,
accuracy, samples/s), and end with a summary table. Under `torchrun --nproc-per-node N mmkd ...`
they train with DDP; only rank 0 prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.cli.runctx import find_run

CacheOpt = Annotated[Path | None, typer.Option(
    "--cache", help="The run directory (or its cache.zarr); default: the current directory.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override: a.b=c (repeatable).")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N (default: cuda if "
                                                    "available, under torchrun cuda:LOCAL_RANK).")]
RestartOpt = Annotated[bool, typer.Option(
    "--restart", help="Train from scratch even if a checkpoint of this run exists.")]
EveryOpt = Annotated[int, typer.Option(
    help="Also save the training state every N steps (0: at epoch ends only).")]
InRamOpt = Annotated[bool, typer.Option("--in-ram", help="Load the tokens into RAM first.")]


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def train_progress(title: str) -> Iterator[Callable]:
    """A rich bar over all steps showing loss, accuracy (all heads right) and samples/s."""
    quiet = ui.state["verbosity"] == 0 or not _is_rank0()
    with ui.new_progress("info", disable=quiet) as bar:
        task = bar.add_task(title, total=None, info="")

        def on_event(ev) -> None:
            if ev.phase == "train":
                bar.update(task, total=ev.total_steps, completed=ev.step,
                           description=f"{title} epoch {ev.epoch}/{ev.epochs}",
                           info=f"loss {ev.loss:.3f}  acc {ev.acc:.1%}  "
                                f"{ev.samples_per_s:,.0f} samples/s")
            elif ev.phase == "epoch" and ui.state["verbosity"] >= 2 and _is_rank0():
                m = ev.metrics
                val = f"  val acc {m['val_acc']:.1%}" if "val_acc" in m else ""
                bar.console.print(f"[dim]epoch {ev.epoch}: train loss {m['train_loss']:.4f}  "
                                  f"acc {m['train_acc']:.1%}{val}[/dim]")

        yield on_event


def _summary(title: str, out_dir: Path, result, extra: dict[str, str]) -> None:
    if not _is_rank0():
        return
    best = result.best
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_row("output", str(out_dir))
    if result.resumed_from:
        table.add_row("resumed from", ui.resumed(result.resumed_from))
    table.add_row("best epoch", f"{result.best_epoch} (by {'val' if 'val_acc' in best else 'last'})")
    for key in sorted(k for k in best if k.startswith(("val_acc", "train_acc"))):
        table.add_row(key, f"{best[key]:.2%}")
    if "samples_per_s" in result.last:
        table.add_row("speed (last epoch)", f"{result.last['samples_per_s']:,.0f} samples/s")
    for k, v in extra.items():
        table.add_row(k, v)
    ui.console.print(table)


def register(app: typer.Typer) -> None:
    train_app = typer.Typer(help="Train the fusion teacher from the cached teacher tokens.",
                            no_args_is_help=True)
    app.add_typer(train_app, name="train")

    @train_app.command("teacher")
    def teacher(cache: CacheOpt = None, set_: SetOpt = None, device: DeviceOpt = None,
                restart: RestartOpt = False, checkpoint_every: EveryOpt = 0,
                in_ram: InRamOpt = False,
                name: Annotated[str, typer.Option(
                    help="Teacher id: its outputs go to cache teachers/ID/, its checkpoints to "
                         "RUN_DIR/teachers/ID/ (the default `teacher`: RUN_DIR/teacher/).")
                ] = "teacher",
                modalities: Annotated[str | None, typer.Option(
                    help="Comma-separated subset of data.modalities for a unimodal or "
                         "cross-modal teacher, e.g. audio.")] = None,
                features: Annotated[bool, typer.Option(
                    "--features", help="Also write its pooled per-modality features "
                                       "(N, width) float16 into the cache.")] = False,
                kv: Annotated[bool, typer.Option(
                    "--kv", help="Also write its last block's normalised per-head Kᵀ V per "
                                 "modality (N, width²/heads) float16, the source side of "
                                 "dcat.")] = False) -> None:
        """Train KARMMA_T (best epoch on `val`) and write its logits for every sample into the
        cache, for `mmkd distill`."""
        from mmkd.train import distributed as D
        from mmkd.train.stage2 import teacher_dir, train_teacher

        run = find_run(cache, set_ or [])
        D.init_from_env()
        out_dir = teacher_dir(run.dir, name)
        wanted = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
        with train_progress(name) as on_event:
            res = train_teacher(run.cache_path, run.cfg, out_dir, device=device,
                                progress=on_event, resume=not restart,
                                checkpoint_every=checkpoint_every, in_ram=in_ram,
                                teacher_id=name, modalities=wanted, write_features=features,
                                write_kv=kv)
        heads = ", ".join(f"{h} {n}×{c}" for h, (n, c) in res.logits_shapes.items())
        _summary(name, out_dir, res.fit,
                 {"teacher logits": f"{run.cache_path}/teachers/{name} ({heads})"})

    @app.command("distill")
    def distill_cmd(
        cache: CacheOpt = None,
        method: Annotated[str, typer.Option(
            help="karmma (KARMMA_S), baseline (CE only, no dropout, no tokens), "
                 "baseline-delta (CE + modality dropout + B5 tokens), kd (Hinton KD from the "
                 "cached teacher), dml (two students learning from each other) or dcat "
                 "(a unimodal student aligned to a cached source modality's attention, "
                 "--modalities B --set methods.dcat.source=A); settings under methods.NAME in "
                 "mmkd.yaml.")] = "karmma",
        modalities: Annotated[str | None, typer.Option(
            help="Comma-separated subset of data.modalities, e.g. video (KARMMA_V).")] = None,
        set_: SetOpt = None, device: DeviceOpt = None, restart: RestartOpt = False,
        checkpoint_every: EveryOpt = 0, in_ram: InRamOpt = False,
    ) -> None:
        """Train a student (or a baseline) from the student extractors' cached tokens and the
        cached teacher logits; writes RUN_DIR/students/<method>[-<modalities>]/."""
        from mmkd.train import distributed as D
        from mmkd.train.stage2 import distill, student_dir_name

        run = find_run(cache, set_ or [])
        D.init_from_env()
        wanted = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else []
        mods = [m for m in run.cfg.data.modalities if m in wanted] or list(run.cfg.data.modalities)
        out_dir = run.dir / "students" / student_dir_name(method, mods, run.cfg.data.modalities)
        with train_progress(method) as on_event:
            res = distill(run.cache_path, run.cfg, out_dir, method=method,
                          modalities=wanted or None,
                          device=device, progress=on_event, resume=not restart,
                          checkpoint_every=checkpoint_every, in_ram=in_ram)
        _summary(f"{method} ({'+'.join(mods)})", out_dir, res, {})
