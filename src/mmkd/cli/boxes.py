"""`mmkd boxes index`: Something-Else JSON files -> one box store that workers read per video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmkd.cli import ui

boxes_app = typer.Typer(help="Something-Else box files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(boxes_app, name="boxes")


@boxes_app.command("index")
def index(
    files: Annotated[list[Path], typer.Argument(help="The Something-Else JSON files (all parts).")],
    out: Annotated[Path, typer.Option("--out", help="The store to write (*.h5).")],
) -> None:
    """Convert the box files once (streamed); a re-run with unchanged files skips."""
    prepare_with_progress(files, out)


def prepare_with_progress(boxes: list[Path], store: Path):
    """`prepare_store` with a progress bar in MiB of JSON read and a one-line summary."""
    from mmkd.datasets.box_store import is_store, prepare_store

    total = sum(p.stat().st_size for p in boxes if p.is_file() and not is_store(p))
    pending = 0

    with ui.progress_bar("indexing boxes", total=max(1, total >> 20), unit="MiB") as advance:
        def advance_bytes(n: int) -> None:
            nonlocal pending
            pending += n
            if pending >= 1 << 20:
                advance(pending >> 20)
                pending &= (1 << 20) - 1

        report = prepare_store(boxes, store, advance_bytes)
    how = ("up to date, not rebuilt" if report.skipped else
           f"indexed {report.json_bytes / 1e9:.2f} GB of JSON in {report.seconds:.1f} s")
    dup = f"; {report.duplicates} repeated videos kept from the first file" \
        if report.duplicates else ""
    ui.info(f"boxes: {report.videos} videos in [bold]{report.path}[/bold] "
            f"({report.store_bytes / 1e6:.1f} MB; {how}{dup})")
    return report
