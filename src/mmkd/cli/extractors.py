"""`mmkd extractors`: the registered stage-1 extractors, to choose `teacher/student.extractors`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mmkd import config as C
from mmkd.cli import ui
from mmkd.errors import MmkdError

TEST_PREFIX = "test_"  # tiny variants for the test suite


def register(app: typer.Typer) -> None:
    app.command("extractors")(extractors)


def extractors(
    modality: Annotated[str | None, typer.Option(
        help="Only the extractors of this modality (video, flow, audio, detection).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also the tiny test variants.")] = False,
) -> None:
    """List the registered extractors: family, modalities, token width, input, weights source."""
    from mmkd import registry
    from mmkd.extract.extractors import get_spec

    if modality is not None and modality not in C.MODALITIES:
        raise MmkdError(f"--modality {modality}: allowed: {', '.join(C.MODALITIES)}")
    specs = [get_spec(n) for n in registry.extractors.list()
             if all_ or not n.startswith(TEST_PREFIX)]
    specs = [s for s in specs if modality is None or modality in s.modalities]
    table = Table(title="extractors (set with --set teacher.extractors.MODALITY=NAME)",
                  title_justify="left")
    for col in ("name", "family", "modalities", "dim", "input", "weights source"):
        table.add_column(col, justify="right" if col == "dim" else "left",
                         overflow="fold", no_wrap=col != "weights source")
    for s in specs:
        table.add_row(s.name, s.family, ", ".join(s.modalities), str(s.dim), s.input_kind,
                      s.weights_source or "–")
    ui.console.print(table)
