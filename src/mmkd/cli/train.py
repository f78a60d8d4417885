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
from mmkd.errors import MmkdError
from mmkd.rundir import find_run

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
FlipOpt = Annotated[bool | None, typer.Option(
    "--flip/--no-flip", help="Horizontal flips in the augmentation (sets augment.hflip; "
                             "default: on only for EPIC-100 with no class naming left or right).")]


def flip_override(flip: bool | None) -> list[str]:
    """`--flip/--no-flip` as a `--set` override of augment.hflip (none when not given)."""
    return [] if flip is None else [f"augment.hflip={str(flip).lower()}"]


SeedsOpt = Annotated[str | None, typer.Option(
    help="Train one model per seed, e.g. 0,1,2 or 0-4, into OUT/seed-<n>/ (each resumes on its "
         "own; `mmkd eval` reports mean ± std over them). Default: one run with train.seed.")]


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


def _distill_mst(run, mods: list[str], out_dir: Path, device: str | None, resume: bool,
                 checkpoint_every: int, in_ram: bool) -> None:
    """MST-Distill's three stages, one progress bar each (a finished stage is skipped), then
    its summary: members, specialised teachers and how often stage 3 routed to each."""
    import json

    from mmkd.train.mst_stages import SUMMARY, stages
    from mmkd.train.stage2 import mst_target

    todo, mst = stages(run.cache_path, run.cfg, mst_target(mods), out_dir, device, resume,
                       checkpoint_every, in_ram)
    for stage in todo:
        if stage.done():
            ui.console.print(f"[dim]mst {stage.title}: done earlier, skipped[/dim]")
            continue
        with train_progress(f"mst {stage.title}") as on_event:
            stage.run(on_event)
    if not _is_rank0():
        return
    info = json.loads((out_dir / SUMMARY).read_text())
    timing = info["teacher_logits_s"]
    extra = {"members": "; ".join(f"{n}: {'+'.join(m)}" for n, m in info["members"].items()),
             "teacher logits": f"{run.cache_path}/teachers/mst-{info['target']}-1..."
                               f"{len(info['teachers'])}, computed once in "
                               f"{sum(timing.values()):.1f} s (train split {timing['train']:.1f}"
                               " s, which recomputing would add to every stage-3 epoch)"}
    for tid, t in info["teachers"].items():
        extra[tid] = f"{t['base']} @ {t['layer']}: chosen {t['chosen']} times ({t['share']:.1%})"
    _summary(f"mst ({mods[0]})", out_dir, mst.result, extra)


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
                seeds: SeedsOpt = None,
                kv: Annotated[bool, typer.Option(
                    "--kv", help="Also write its last block's normalised per-head Kᵀ V per "
                                 "modality (N, width²/heads) float16, the source side of "
                                 "dcat.")] = False) -> None:
        """Train KARMMA_T (best epoch on `val`) and write its logits for every sample into the
        cache, for `mmkd distill` (with --seeds: the first seed's)."""
        from mmkd.train import distributed as D
        from mmkd.train.runs import parse_seeds, seed_plan
        from mmkd.train.stage2 import teacher_dir, train_teacher

        run = find_run(cache, set_ or [])
        D.init_from_env()
        wanted = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else None
        plan = seed_plan(run.cfg, "teacher", teacher_dir(run.dir, name),
                         parse_seeds(seeds) if seeds else None)
        for i, (cfg, out_dir) in enumerate(plan):
            title = name if len(plan) == 1 else f"{name} seed {cfg.teacher.train.seed}"
            with train_progress(title) as on_event:
                res = train_teacher(run.cache_path, cfg, out_dir, device=device,
                                    progress=on_event, resume=not restart,
                                    checkpoint_every=checkpoint_every, in_ram=in_ram,
                                    teacher_id=name, modalities=wanted, write_features=features,
                                    write_outputs=i == 0, write_kv=kv)
            heads = ", ".join(f"{h} {n}×{c}" for h, (n, c) in res.logits_shapes.items())
            _summary(title, out_dir, res.fit,
                     {"teacher logits": f"{run.cache_path}/teachers/{name} ({heads})"}
                     if i == 0 else {})

    @app.command("distill")
    def distill_cmd(
        cache: CacheOpt = None,
        method: Annotated[str, typer.Option(
            help="karmma (KARMMA_S), baseline (CE only, no dropout, no tokens), "
                 "baseline-delta (CE + modality dropout + B5 tokens), kd (Hinton KD from the "
                 "cached teacher), dml (two students learning from each other), mst "
                 "(MST-Distill, three stages, for the one target modality of --modalities), "
                 "cmpt (cross-modal proxy tokens) or dcat (a unimodal student aligned to a "
                 "cached source modality's attention, --modalities B --set "
                 "methods.dcat.source=A); settings under methods.NAME in mmkd.yaml.")] = "karmma",
        modalities: Annotated[str | None, typer.Option(
            help="Comma-separated subset of data.modalities, e.g. video (KARMMA_V).")] = None,
        set_: SetOpt = None, device: DeviceOpt = None, restart: RestartOpt = False,
        checkpoint_every: EveryOpt = 0, in_ram: InRamOpt = False, seeds: SeedsOpt = None,
        recipe: Annotated[str | None, typer.Option(
            help="A preset's training recipe in place of student.train, e.g. cmpt_audio_video "
                 "(CMPT's Table 6: AdamW, poly decay); --set applies on top.")] = None,
    ) -> None:
        """Train a student (or a baseline) from the student extractors' cached tokens and the
        cached teacher logits; writes RUN_DIR/students/<method>[-<modalities>]/."""
        from mmkd import config as C
        from mmkd.train import distributed as D
        from mmkd.train.runs import parse_seeds, seed_plan
        from mmkd.train.stage2 import distill, student_dir_name

        run = find_run(cache, set_ or [])
        if recipe:
            run.cfg = C.with_train_recipe(run.cfg, recipe, set_)
        D.init_from_env()
        wanted = [m.strip() for m in modalities.split(",") if m.strip()] if modalities else []
        mods = [m for m in run.cfg.data.modalities if m in wanted] or list(run.cfg.data.modalities)
        out_dir = run.dir / "students" / student_dir_name(method, mods, run.cfg.data.modalities)
        if method == "mst":
            if seeds:
                raise MmkdError("--seeds does not take --method mst: MST-Distill trains one seed "
                                "per run (--set student.train.seed=N)")
            _distill_mst(run, mods, out_dir, device, not restart, checkpoint_every, in_ram)
            return
        plan = seed_plan(run.cfg, "student",
                         run.dir / "students" / student_dir_name(method, mods,
                                                                 run.cfg.data.modalities),
                         parse_seeds(seeds) if seeds else None)
        for cfg, out_dir in plan:
            title = method if len(plan) == 1 else f"{method} seed {cfg.student.train.seed}"
            with train_progress(title) as on_event:
                res = distill(run.cache_path, cfg, out_dir, method=method,
                              modalities=wanted or None,
                              device=device, progress=on_event, resume=not restart,
                              checkpoint_every=checkpoint_every, in_ram=in_ram)
            _summary(f"{title} ({'+'.join(mods)})", out_dir, res, {})
