"""`mmkd`: the typer application. Subcommand modules each expose `register(app)`."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mmkd import __version__
from mmkd import config as C
from mmkd.cli import ui
from mmkd.errors import MmkdError
from mmkd.files import DiskFullError

app = typer.Typer(
    name="mmkd",
    help="Multimodal knowledge distillation (KARMMA) on a feature cache.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        ui.console.print(f"mmkd {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="More output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and results.")] = False,
) -> None:
    ui.state["verbosity"] = 0 if quiet else 2 if verbose else 1


@app.command()
def init(
    run_dir: Annotated[Path, typer.Argument(help="The run directory to create, e.g. runs/epic.")],
    dataset: Annotated[str, typer.Option(help="epic100, ssv2, custom or demo.")],
    annotations: Annotated[str, typer.Option(help="Folder or file with the official annotations.")] = "",
    media_root: Annotated[str, typer.Option(help="Root of the raw media.")] = "",
    config: Annotated[Path | None, typer.Option(help="A YAML file applied on top of the preset.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: a.b=c (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing mmkd.yaml.")] = False,
    size: Annotated[str, typer.Option(
        help="paper: the paper's extractors and recipes (Swin-B, 32 frames, Θ = 300); small: "
             "the demo's sizes, for ~1k clips trained from scratch on CPU.")] = "paper",
) -> None:
    """Write RUN_DIR/mmkd.yaml so later commands run there need no repeated arguments."""
    target = run_dir / C.CONFIG_FILE
    if target.exists() and not force:
        raise MmkdError(f"{target} exists; pass --force to overwrite it")
    known = C.known_datasets()
    if dataset not in known:
        raise MmkdError(f"--dataset {dataset!r}: unknown dataset; use one of {', '.join(known)}")
    cfg = (C.load(config, set_ or [], dataset=dataset, size=size) if config is not None
           else C.apply_overrides(C.run_preset(dataset, size), set_ or []))
    if annotations:
        cfg.data.annotations = str(Path(annotations).resolve())
    if media_root:
        cfg.data.media_root = str(Path(media_root).resolve())
    cfg.validate()
    C.save(cfg, target)
    ui.info(f"wrote [bold]{target}[/bold] (dataset {dataset}, {size} sizes; modalities "
            f"{', '.join(cfg.data.modalities)})")


# Subcommands: each module adds its commands (keep this list sorted; one line per module).
_COMMAND_MODULES: list[str] = [
    "boxes",
    "cache",
    "demo",
    "demo_data",
    "eval",
    "extract",
    "extractors",
    "finetune",
    "flow",
    "manifest",
    "pretrain",
    "slurm",
    "train",
]


for _name in _COMMAND_MODULES:
    importlib.import_module(f"mmkd.cli.{_name}").register(app)


_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix; None for anything else (a bug)."""
    if isinstance(exc, MmkdError):
        return str(exc)
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 ({exc}); save it as UTF-8"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return str(DiskFullError(exc.filename or "a file"))
    if isinstance(exc, OSError) and exc.errno in _NO_ACCESS:
        where = exc.filename or "a file"
        verb = "read" if exc.filename and os.path.isfile(where) and not os.access(where, os.R_OK) \
            else "write"
        return f"cannot {verb} {where} ({exc.strerror}); check permissions"
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one red line and exit code 2 (with -v, after
    the traceback); anything else is a bug and keeps its traceback."""
    try:
        app(args=argv)
    except Exception as exc:
        message = user_error(exc)
        if message is None:
            raise
        if ui.state["verbosity"] >= 2:
            ui.err_console.print_exception()
        ui.err_console.print(f"[bold red]error:[/bold red] {escape(message)}")
        sys.exit(2)
