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
    jobs: Annotated[int, typer.Option(
        help="Independent stages run side by side in this many processes, one torch thread "
             "each (small models use one core best).")] = 2,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config override for a new run, e.g. teacher.train.epochs=5.")] = None,
    seeds: Annotated[str, typer.Option(
        help="Training seeds of each student (the teacher trains once).")] = "0,1,2",
) -> None:
    """Generate the demo dataset and run manifest → extract → train teacher → distill (karmma,
    baseline, baseline-delta, one model per seed) → eval; finished stages are skipped on a
    re-run."""
    from mmkd.cli.eval import run_eval
    from mmkd.cli.jobs import Job, run_jobs
    from mmkd.demo import pipeline as P
    from mmkd.errors import MmkdError
    from mmkd.rundir import find_run
    from mmkd.train.runs import parse_seeds

    if scale not in ("tiny", "small"):
        raise MmkdError(f"--scale {scale!r}: use tiny or small")
    student_seeds = parse_seeds(seeds)
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
    pending = P.pretrain_pending(paths, cfg)
    results = run_jobs([Job(f"pretrain {m}", P.pretrain, (paths, cfg, m)) for m in pending],
                       workers=jobs)
    for r in (r for rs in results for r in rs):
        stage(f"pretrain {r.modality}/{r.extractor}",
              f"best epoch {r.fit.best_epoch}: val acc {r.fit.best.get('val_acc', float('nan')):.1%}")
    if not pending and P.pretrained_modalities(cfg):
        stage("pretrain", f"{', '.join(P.pretrained_modalities(cfg))} already pretrained")
    times["pretrain"] = time.perf_counter() - t

    t = time.perf_counter()
    targets = P.extract_targets(cfg)
    results = run_jobs([Job(f"extract {x.modality}/{x.extractor}", P.extract, (paths, cfg, x))
                        for x in targets], workers=jobs)
    for x, res in zip(targets, results, strict=True):
        stage(f"extract {x.modality}/{x.extractor}",
              f"{res.ok} new, {res.already_done} already done, {res.failed} failed "
              f"({res.k}→{res.slots} tokens × {res.dim})")
    times["extract"] = time.perf_counter() - t

    t = time.perf_counter()
    for names in P.train_rounds(student_seeds):
        titles = [n if s is None else f"{n} seed {s}" for n, s in names]
        results = run_jobs([Job(title, P.train, (paths, cfg, n, s))
                            for title, (n, s) in zip(titles, names, strict=True)], workers=jobs)
        for title, (n, _), res in zip(titles, names, results, strict=True):
            fit = res.fit if n == "teacher" else res
            stage(title, f"best epoch {fit.best_epoch}: val acc {fit.best.get('val_acc', 0):.1%}")
    times["train (teacher, students)"] = time.perf_counter() - t

    import torch

    torch.set_num_threads(1)
    t = time.perf_counter()
    run = find_run(paths.run)
    protocols = ["subsets", "missing-rate"] + (["efficiency"] if efficiency else [])
    mods = list(cfg.data.modalities)
    subsets = ["+".join(mods)] + (["+".join(m for m in mods if m != "video")]
                                  if "video" in mods and len(mods) > 1 else [])
    report = run_eval(run, protocols, device="cpu", efficiency_sizes="run",
                      efficiency_devices=["cpu"], compare=[(*P.COMPARED, subsets)])
    times["eval"] = time.perf_counter() - t

    table = RichTable(title="mmkd demo: time per stage", show_header=False, title_justify="left")
    for k, v in times.items():
        table.add_row(k, f"{v:.0f} s")
    table.add_row("total", f"{time.perf_counter() - t0:.0f} s")
    ui.console.print(table)
    for line in P.findings(report.parent):
        ui.info(f"[bold]•[/bold] {line}")
    ui.info(f"report: [bold]{report}[/bold]")
