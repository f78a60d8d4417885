"""`mmkd demo-data`: generate the built-in demo dataset (EPIC-100 formats, synthetic kitchen)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)


def demo_data(
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder to create (annotations/, media/, README.md, demo.json)."
        ),
    ],
    scale: Annotated[
        str,
        typer.Option(
            help="tiny (~150 segments, seconds) or small (~1,400 segments, the demo's default)."
        ),
    ] = "small",
    seed: Annotated[int, typer.Option(help="Same seed and scale, same dataset.")] = 0,
    workers: Annotated[
        int | None, typer.Option(help="Processes (default: one per CPU core).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a demo dataset already in --out.")] = False,
) -> None:
    """Generate a synthetic egocentric-kitchen dataset in the official EPIC-KITCHENS-100 formats."""
    from mmkd.demo.generate import generate
    from mmkd.demo.plan import make_plan

    command = shlex.join(
        ["mmkd", "demo-data", "--out", str(out), "--scale", scale, "--seed", str(seed)]
    )
    n_videos = len(make_plan(scale, seed).videos)
    with ui.progress_bar(f"generating demo ({scale})", total=n_videos, unit="videos") as advance:
        s = generate(
            out, scale, seed, workers=workers, overwrite=force, command=command, progress=advance
        )
    table = Table(title=f"demo dataset → {s.out}", show_header=False)
    table.add_row("scale / seed", f"{s.scale} / {s.seed}")
    table.add_row("videos", f"{s.videos} ({s.codec})")
    table.add_row("segments", ", ".join(f"{k} {v}" for k, v in s.segments.items()))
    table.add_row("RGB / flow frames", f"{s.frames:,} / {s.flow_frames:,}")
    table.add_row("time", f"{s.seconds:.1f} s on {s.workers} worker(s)")
    ui.console.print(table)
    ui.info(
        f"next: mmkd manifest epic100 --annotations {s.out / 'annotations'} "
        f"--media-root {s.out / 'media'}"
    )
