"""`mmkd flow`: optical flow in EPIC's JPEG format for datasets (or videos) that ship none."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmkd.cli import ui
from mmkd.errors import MmkdError


def register(app: typer.Typer) -> None:
    app.command("flow")(flow)


def flow(
    out: Annotated[Path, typer.Option(help="Output root (manifest: EPIC layout under it; "
                                           "--video/--frames: <out>/{u,v}).")],
    manifest: Annotated[Path | None, typer.Option(help="A manifest folder (or a file in it): "
                                                       "one job per video.")] = None,
    video: Annotated[Path | None, typer.Option(help="One video file.")] = None,
    frames: Annotated[Path | None, typer.Option(help="One folder of frames (sorted by name).")] = None,
    pattern: Annotated[str | None, typer.Option(help="--frames: only files matching this glob, "
                                                     "e.g. 'img_*.jpg'.")] = None,
    method: Annotated[str, typer.Option(help="tvl1 (EPIC's), dis (fast) or raft.")] = "tvl1",
    weights: Annotated[Path | None, typer.Option(help="RAFT: a local torchvision state dict.")] = None,
    raft_model: Annotated[str, typer.Option(help="RAFT: large or small.")] = "large",
    random_init: Annotated[bool, typer.Option(help="RAFT with random weights (tests/speed only: "
                                                   "the flow is meaningless).")] = False,
    stride: Annotated[int, typer.Option(help="Flow k: frame 1+(k-1)S -> 1+kS (EPIC: 2 for "
                                             "PXX_YY, 1 for PXX_1YY).")] = 1,
    height: Annotated[int | None, typer.Option(help="Resize frames to this height first "
                                                    "(EPIC: 256).")] = None,
    raw: Annotated[str | None, typer.Option(help="Also write float flow: npy or flo.")] = None,
    workers: Annotated[int, typer.Option(help="Videos computed in parallel (processes).")] = 1,
    dask: Annotated[str | None, typer.Option(help="Run on Dask: 'local' or a scheduler "
                                                  "address tcp://host:port.")] = None,
    batch_size: Annotated[int, typer.Option(help="RAFT: frame pairs per forward pass.")] = 8,
    device: Annotated[str, typer.Option(help="RAFT: auto, cpu or cuda[:N].")] = "auto",
    write_manifest: Annotated[bool, typer.Option(
        help="--manifest: set media.flow of each sample whose video's flow is complete (the "
             "manifest files are replaced atomically).")] = True,
) -> None:
    """Compute optical flow between frames i -> i+S and write EPIC-format u/v JPEGs."""
    from mmkd.flow import (
        FlowOptions,
        FlowSpec,
        count_pairs,
        is_done,
        plan_manifest,
        record_flow,
        run_jobs,
        single_job,
    )

    sources = [s for s in (manifest, video, frames) if s is not None]
    if len(sources) != 1:
        raise MmkdError("pass exactly one of --manifest DIR, --video FILE or --frames DIR")
    if pattern is not None and frames is None:
        raise MmkdError("--pattern selects files of --frames DIR; a manifest's media.rgb.template "
                        "does that for --manifest")
    spec = FlowSpec(method=method, weights=str(weights) if weights else None, raft_model=raft_model,
                    random_init=random_init, batch_size=batch_size, device=device)
    options = FlowOptions(stride=stride, height=height, raw=raw)
    spec.validate()
    options.validate()
    failures = []
    if manifest is not None:
        manifest_dir = manifest.parent if manifest.is_file() else manifest
        jobs, failures = plan_manifest(manifest_dir, out)
    elif video is not None:
        jobs = [single_job(video, "video", out)]
    else:
        jobs = [single_job(frames, "frames", out, pattern)]

    todo = [j for j in jobs if not is_done(j)]
    counts = [count_pairs(j, stride) for j in todo]
    total = None if None in counts else sum(counts)
    ui.info(f"flow: {len(jobs)} video(s), {len(jobs) - len(todo)} already done, method {method}, "
            f"stride {stride}")
    with ui.progress_bar("flow", total=total, unit="pairs") as advance:
        summary = run_jobs(jobs, spec, options, workers=workers, dask=dask, progress=advance)
    summary.results.extend(failures)
    _print_summary(summary, out)
    if manifest is not None and write_manifest:
        n = record_flow(manifest_dir, jobs, stride)
        ui.info(f"manifest {manifest_dir}: media.flow set on {n} sample(s) (stride {stride}); "
                "next: mmkd extract --modality flow")
    if summary.with_status("failed"):
        raise typer.Exit(1)


def _print_summary(summary, out: Path) -> None:
    from rich.table import Table

    done, skipped, failed = (summary.with_status(s) for s in ("done", "skipped", "failed"))
    ui.console.print(f"[bold]flow[/bold]: {len(done)} done, {len(skipped)} skipped (already done), "
                     f"{len(failed)} failed; {summary.pairs} frame pairs in {summary.seconds:.1f} s "
                     f"({summary.pairs_per_s:.1f} pairs/s) -> {out}")
    if failed:
        table = Table("video", "reason", title="failed videos", title_style="bold red")
        for r in failed:
            table.add_row(r.name, r.reason)
        ui.console.print(table)
