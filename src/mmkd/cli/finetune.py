"""`mmkd finetune`: stage 3, the student's extractors of some modalities trained end to end.

Finds the run (current directory or --cache RUN_DIR), fine-tunes from a stage-2 student
(--from, default RUN_DIR/students/karmma) with a live progress bar, and ends with a summary:
accuracy per modality subset before and after, and the cost per epoch against stage 2. With
--reextract it prints the `--set` override that makes `mmkd distill` use the new tokens (the run's
mmkd.yaml is left alone: student.extractors names registry extractors, which `mmkd extract`
instantiates; a fine-tuned entry exists only in the cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.cli.train import FlipOpt, flip_override
from mmkd.errors import MmkdError
from mmkd.rundir import find_run


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)


def finetune_cmd(
    modalities: Annotated[str, typer.Option(
        help="Comma-separated modalities whose student extractors to fine-tune, e.g. "
             "audio,detection.")],
    from_: Annotated[Path | None, typer.Option(
        "--from", help="The stage-2 student to start from (default RUN_DIR/students/karmma).")]
    = None,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="The run directory (or its cache.zarr); default: the current "
                        "directory.")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs (default student.train.epochs; the warm-up keeps its share).")] = None,
    lr_scale: Annotated[float, typer.Option(
        "--lr-scale", help="Multiplies student.train.lr_min/lr_max: fine-tuning a trained "
                           "student wants a lower peak than training it.")] = 0.1,
    reextract: Annotated[bool, typer.Option(
        "--reextract", help="Write the fine-tuned extractors' tokens into the cache as new "
                            "entries <extractor>+ft-<name>.")] = False,
    accum_steps: Annotated[int, typer.Option(
        "--accum-steps", help="Run the extractors on each batch in N micro-batches (gradients "
                              "accumulate; one micro-batch of activations in memory).")] = 1,
    grad_checkpointing: Annotated[bool, typer.Option(
        "--grad-checkpointing", help="Recompute the extractors' blocks in backward instead of "
                                     "storing their activations.")] = False,
    workers: Annotated[int | None, typer.Option(
        help="Decode worker processes (default extract.workers).")] = None,
    device: Annotated[str | None, typer.Option(
        help="cpu, cuda or cuda:N (default: cuda if available); bf16 autocast on CUDA.")] = None,
    name: Annotated[str | None, typer.Option(
        help="Output folder under RUN_DIR/students (default <from>-ft-<modalities>).")] = None,
    flip: FlipOpt = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: a.b=c (repeatable).")]
    = None,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Train from scratch even if a checkpoint of this run exists.")] = False,
    checkpoint_every: Annotated[int, typer.Option(
        help="Also save the training state every N steps (0: at epoch ends only).")] = 0,
    seeds: Annotated[str | None, typer.Option(
        help="Fine-tune each seed of a student trained with --seeds: FROM/seed-<n> into "
             "OUT/seed-<n>, with student.train.seed = n.")] = None,
    method: Annotated[str | None, typer.Option(
        help="Training method (default: the --from student's). cmpt: frozen extractors with "
             "rank-1 LoRA and proxy tokens inside them (default --from students/cmpt).")]
    = None,
) -> None:
    """Fine-tune the student extractors of MODALITIES end to end from raw media (the other
    modalities from cached tokens, targets = cached teacher logits); writes
    RUN_DIR/students/<from>-ft-<modalities>/."""
    from mmkd.cli.train import train_progress
    from mmkd.train.finetune import FinetuneOptions, default_name, finetune
    from mmkd.train.runs import parse_seeds, seed_dir, seed_plan

    run = find_run(cache, (set_ or []) + flip_override(flip))
    mods = [m.strip() for m in modalities.split(",") if m.strip()]
    base = from_ or run.dir / "students" / (method or "karmma")
    wanted = parse_seeds(seeds) if seeds else None
    plan = seed_plan(run.cfg, "student",
                     run.dir / "students" / (name or default_name(base, mods)), wanted)
    for (cfg, out_dir), from_dir in zip(plan, [seed_dir(base, s) for s in wanted] if wanted
                                        else [base], strict=True):
        if not (from_dir / "meta.json").exists():
            raise MmkdError(f"{from_dir}: no stage-2 student here; train one with `mmkd distill`"
                            " or pass --from RUN_DIR/students/<name>")
        opts = FinetuneOptions(mods, from_dir, out_dir, epochs=epochs, lr_scale=lr_scale,
                               accum_steps=accum_steps,
                               grad_checkpointing=grad_checkpointing, workers=workers,
                               device=device, reextract=reextract,
                               resume=not restart, checkpoint_every=checkpoint_every,
                               method=method)
        with train_progress(f"finetune {'+'.join(mods)}") as on_event, \
                _extract_progress("re-extract") as (start, advance):
            res = finetune(run.dir, cfg, opts, progress=on_event, status=ui.info,
                           extract_start=start, extract_progress=advance)
        _summary(res)


@contextmanager
def _extract_progress(title: str) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A bar over the clips of every re-extracted modality (each adds its pending clips)."""
    with ui.new_progress(None) as bar:
        task = None

        def start(n: int) -> None:
            nonlocal task
            if task is None:
                task = bar.add_task(title, total=n)
            else:
                bar.update(task, total=(bar.tasks[task].total or 0) + n)

        def advance(n: int) -> None:
            if task is not None:
                bar.advance(task, n)

        yield start, advance


def _summary(res) -> None:
    heads = [k for k in next(iter(res.before.values())) if k != "acc"]
    table = Table(title=f"accuracy on {res.eval_split}, before → after fine-tuning (acc: all "
                        f"heads right; then {', '.join(h[4:] for h in heads)})",
                  title_justify="left")
    for col in ("modalities", "before", "after", "Δ acc"):
        table.add_column(col, justify="left" if col == "modalities" else "right")
    for subset, before in res.before.items():
        after = res.after[subset]
        table.add_row(subset, _accs(before, heads), _accs(after, heads),
                      f"{(after['acc'] - before['acc']) * 100:+.1f} pt")
    ui.console.print(table)
    info = Table(show_header=False, title="mmkd finetune", title_justify="left")
    info.add_row("output", str(res.out_dir))
    if res.fit.resumed_from:
        info.add_row("resumed from", ui.resumed(res.fit.resumed_from))
    info.add_row("best epoch", str(res.fit.best_epoch))
    s2 = res.stage2_s_per_epoch
    cost = f"{res.s_per_epoch:.2f} s/epoch" if res.s_per_epoch is not None else "n/a"
    if s2:
        cost += f" vs {s2:.2f} s/epoch in stage 2 from the cache ({res.s_per_epoch / s2:.1f}×)"
    info.add_row("cost", cost)
    share = res.trainable_params / max(res.total_params, 1)
    info.add_row("trainable parameters", f"{res.trainable_params:,} of {res.total_params:,} "
                                         f"({share:.2%})")
    for m, n in res.lora_layers.items():
        info.add_row(f"{m} LoRA", f"rank 1 on {n} attention projections (base frozen)")
    if res.blocks_checkpointed:
        info.add_row("grad checkpointing", f"{res.blocks_checkpointed} blocks")
    for m, path in res.extractor_weights.items():
        info.add_row(f"{m} extractor", str(path))
    if res.failures:
        info.add_row("decode failures", ", ".join(f"{n} × {r[:60]}"
                                                  for r, n in res.failures.most_common(3)))
    ui.console.print(info)
    if res.reextract:
        sets = " ".join(f"--set student.extractors.{r.modality}={r.extractor}"
                        for r in res.reextract)
        for r in res.reextract:
            ui.info(f"re-extracted {r.modality}/{r.extractor}: {r.ok} written, {r.failed} failed, "
                    f"{r.already_done} already done")
        ui.info(f"use the fine-tuned tokens in stage 2: [bold]mmkd distill {sets}[/bold] (it "
                "writes students/<method>: add --restart to replace a student trained there)")
    else:
        ui.info("write the fine-tuned tokens into the cache: re-run with [bold]--reextract[/bold] "
                "(training resumes as finished)")


def _accs(metrics: dict[str, float], heads: list[str]) -> str:
    return f"{metrics['acc']:.1%} ({' / '.join(f'{metrics[h]:.1%}' for h in heads)})"
