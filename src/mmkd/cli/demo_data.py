"""`mmkd demo-data`: generate the built-in demo dataset (EPIC-100 formats, synthetic kitchen), or
with `--format custom` short stand-in clips in the custom CSV format (the "your own dataset"
route)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.errors import MmkdError


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
    format_: Annotated[str, typer.Option(
        "--format", help="epic100 (the kitchen videos) or custom (short clips + a custom CSV: "
                         "digit glyph and motion in video, a spoken digit in audio, boxes).")
    ] = "epic100",
    clips: Annotated[int, typer.Option(help="--format custom: number of clips.")] = 1000,
) -> None:
    """Generate a synthetic egocentric-kitchen dataset in the official EPIC-KITCHENS-100 formats,
    or (--format custom) stand-in clips for `mmkd manifest custom`."""
    from mmkd.demo.generate import generate
    from mmkd.demo.plan import make_plan

    if format_ == "custom":
        _custom(out, clips, seed, force)
        return
    if format_ != "epic100":
        raise MmkdError(f"--format {format_!r}: use epic100 or custom")
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


def _custom(out: Path, clips: int, seed: int, force: bool) -> None:
    from mmkd.demo.signal_clips import generate

    with ui.progress_bar(f"generating {clips} clips", total=clips, unit="clips") as advance:
        csv_path = generate(out, clips, seed, overwrite=force, progress=advance)
    ui.info(f"next: mmkd manifest custom --csv {csv_path} --classes verb={out / 'verbs.txt'} "
            f"--classes noun={out / 'nouns.txt'} --out RUN_DIR/manifest")
