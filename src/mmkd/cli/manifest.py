"""`mmkd manifest {epic100,ssv2,custom,check}`: official annotations → data_manifests/<name>/."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.errors import MmkdError
from mmkd.registry import datasets

manifest_app = typer.Typer(help="Build manifests from official annotation files.",
                           no_args_is_help=True)
MAX_ROWS = 30  # rows shown per table; all media problems go to <out>/media_problems.csv
PROBLEMS_CSV = "media_problems.csv"

OutOpt = Annotated[Path, typer.Option("--out", help="Folder to write meta.json and <split>.jsonl.")]
RootOpt = Annotated[str, typer.Option("--media-root", help="Root of the raw media (paths in the "
                                                           "manifest are relative to it).")]
CheckOpt = Annotated[bool, typer.Option("--check-media", help="Report samples whose media are "
                                         "missing or unreadable (a table; an error when none exists).")]


def register(app: typer.Typer) -> None:
    app.add_typer(manifest_app, name="manifest")


def _command(name: str, *parts: tuple[str, object]) -> str:
    """The canonical command line, recorded in meta.json and the README."""
    words = ["mmkd", "manifest", name]
    for flag, value in parts:
        if value is None or value is False or value == "" or value == []:
            continue
        for v in value if isinstance(value, list) else [value]:
            words += [flag] if v is True else [flag, str(v)]
    return shlex.join(words)


@manifest_app.command("epic100")
def epic100(
    annotations: Annotated[Path, typer.Option(help="Folder with EPIC_100_train.csv, "
                                                   "EPIC_100_validation.csv and the class CSVs.")],
    out: OutOpt = Path("data_manifests/epic100"),
    media_root: RootOpt = "",
    audio_hdf5: Annotated[Path | None, typer.Option(help="Audio HDF5 (one dataset per video); "
                                                         "default <media-root>/EPIC_audio.hdf5.")] = None,
    audio_sample_rate: Annotated[int | None, typer.Option(help="Rate of the HDF5 audio (default: "
                                                               "its sample_rate attribute, else 24000).")] = None,
    boxes: Annotated[Path | None, typer.Option(help="Something-Else-format boxes; default "
                                                    "<media-root>/detections.json.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the 90/10 train/val split.")] = 0,
    val_fraction: Annotated[float, typer.Option(help="Share of official train held out as val.")] = 0.1,
    check_media: CheckOpt = False,
) -> None:
    """EPIC-KITCHENS-100 → train/val (seeded 90/10 of official train) + test (pruned validation)."""
    build = datasets.get("epic100").build

    cmd = _command("epic100", ("--annotations", annotations), ("--media-root", media_root),
                   ("--audio-hdf5", audio_hdf5), ("--audio-sample-rate", audio_sample_rate),
                   ("--boxes", boxes), ("--seed", seed),
                   ("--val-fraction", val_fraction if val_fraction != 0.1 else None),
                   ("--check-media", check_media), ("--out", out))
    with ui.progress_bar("reading EPIC-100", total=None, unit="segments") as advance:
        report = build(annotations, media_root, out, audio_hdf5=audio_hdf5,
                       audio_sample_rate=audio_sample_rate, boxes=boxes, seed=seed,
                       val_fraction=val_fraction, command=cmd, progress=advance)
    _summary(report, check_media)


@manifest_app.command("ssv2")
def ssv2(
    annotations: Annotated[list[Path], typer.Option(help="Official train/validation JSON "
                                                         "(repeat the flag per file).")],
    labels: Annotated[Path | None, typer.Option(help="something-something-v2-labels.json "
                                                     "(default: next to the annotations).")] = None,
    boxes: Annotated[list[Path] | None, typer.Option(help="Something-Else box files "
                                                          "(repeat the flag per file), indexed "
                                                          "once into a store; or one store.")] = None,
    boxes_store: Annotated[Path | None, typer.Option(help="Where the box store goes (default "
                                                          "<out>/boxes.h5).")] = None,
    out: OutOpt = Path("data_manifests/ssv2"),
    media_root: RootOpt = "",
    check_media: CheckOpt = False,
    more: Annotated[list[Path] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Something-Something v2 (+ Something-Else boxes) → train/val manifests, head `action`."""
    build = datasets.get("ssv2").build

    if more:  # `--annotations a.json b.json`: shells users type lists like this
        if boxes:
            raise MmkdError(f"{more[0]}: cannot tell whether it is an annotation or a box file; "
                            "repeat the flag per file (--annotations A --annotations B)")
        annotations = [*annotations, *more]
    cmd = _command("ssv2", ("--labels", labels), ("--annotations", list(annotations)),
                   ("--boxes", list(boxes or [])), ("--boxes-store", boxes_store),
                   ("--media-root", media_root), ("--check-media", check_media), ("--out", out))
    if boxes:
        from mmkd.cli.boxes import prepare_with_progress
        from mmkd.datasets.box_store import STORE_NAME

        boxes = [prepare_with_progress(boxes, boxes_store or out / STORE_NAME).path]
    with ui.progress_bar("reading SSv2", total=None, unit="videos") as advance:
        report = build(list(annotations), media_root, out, labels=labels, boxes=boxes,
                       command=cmd, progress=advance)
    _summary(report, check_media)


@manifest_app.command("custom")
def custom(
    csv_file: Annotated[Path, typer.Option("--csv", help="One row per sample (schema: "
                                                         "data_manifests/README.md).")],
    out: OutOpt = Path("data_manifests/custom"),
    media_root: RootOpt = "",
    classes: Annotated[list[str] | None, typer.Option(help="HEAD=FILE class list (repeatable): "
                                                           "one name per line, id,key CSV or JSON list.")] = None,
    name: Annotated[str, typer.Option(help="Dataset name recorded in meta.json.")] = "custom",
    check_media: CheckOpt = False,
) -> None:
    """Your own dataset from a CSV: any subset of video/rgb/flow/audio/detection, any heads."""
    build = datasets.get("custom").build

    class_files: dict[str, str] = {}
    for item in classes or []:
        head, sep, file = item.partition("=")
        if not sep or not head or not file:
            raise MmkdError(f"--classes {item!r}: write HEAD=FILE, e.g. --classes verb=verbs.txt")
        class_files[head] = file
    cmd = _command("custom", ("--csv", csv_file), ("--media-root", media_root),
                   ("--classes", list(classes or [])),
                   ("--name", name if name != "custom" else None),
                   ("--check-media", check_media), ("--out", out))
    with ui.progress_bar("reading CSV", total=None, unit="rows") as advance:
        report = build(csv_file, media_root, out, name=name, classes=class_files,
                       command=cmd, progress=advance)
    _summary(report, check_media)


@manifest_app.command("check")
def check(manifest_dir: Annotated[Path, typer.Argument(help="A manifest folder.")]) -> None:
    """Report every sample of an existing manifest whose media are missing or unreadable."""
    _check(manifest_dir)


def _check(manifest_dir: Path) -> None:
    """The media check of a written manifest, with its own bar (its total is known now): a
    table and a CSV of the problems; an error when no medium is found at all."""
    from mmkd.datasets.manifest import read_all
    from mmkd.datasets.media_check import check_media, nothing_found

    meta, samples = read_all(manifest_dir)
    with ui.progress_bar("checking media", total=len(samples), unit="samples") as advance:
        problems = check_media(meta, samples, manifest_dir, advance)
    _problems(problems, manifest_dir, len(samples))
    if nothing_found(problems, samples):
        raise MmkdError(f"{manifest_dir}: none of the media of the {len(samples)} samples exist "
                        f"(e.g. {problems[0].path}); their paths are relative to the media root "
                        f"{meta.media_root or '(none)'}: pass --media-root DIR, the folder they "
                        "are relative to, when building the manifest")


def _summary(report, check_media: bool = False) -> None:
    meta = report.meta
    ui.info(f"[bold]{meta.dataset}[/bold] manifest → {report.out_dir}")
    table = Table(show_edge=False)
    table.add_column("split")
    table.add_column("samples", justify="right")
    for split, n in report.counts.items():
        table.add_row(split, str(n))
    ui.console.print(table)
    ui.info("heads: " + ", ".join(f"{h} ({n} classes)" for h, n in meta.heads.items()))
    if report.pruned_split:
        n = sum(report.pruned.values())
        what = ", ".join(f"{k}: {v}" for k, v in report.pruned.items()) or "none"
        ui.info(f"pruned {report.pruned_split}: dropped {n} samples whose noun class never "
                f"occurs in training ({len(report.pruned)} classes: {what})")
    if report.label_mismatches:
        _mismatches(report.label_mismatches)
    if check_media:
        _check(report.out_dir)


def _mismatches(found) -> None:
    ui.info(f"[yellow]label texts outside their class[/yellow]: {len(found)} (kept: the class id "
            "is the label; all listed in meta.json notes.label_text_mismatches)")
    table = Table(show_edge=False)
    for col in ("sample", "head", "text", "class", "row"):
        table.add_column(col, overflow="fold")
    for m in found[:MAX_ROWS]:
        table.add_row(m.sample_id, m.head, m.text, f"{m.class_id} {m.class_name}", m.where)
    ui.console.print(table)


def _problems(problems, out_dir: Path, n_samples: int) -> None:
    path = Path(out_dir) / PROBLEMS_CSV
    path.unlink(missing_ok=True)  # never leave an earlier run's rows next to a clean manifest
    if not problems:
        ui.info(f"[green]media: all {n_samples} samples have every listed modality[/green]")
        return
    ui.info(f"[bold red]missing media[/bold red]: {len(problems)} (sample, modality) pairs over "
            f"{len({p.sample_id for p in problems})} of {n_samples} samples")
    table = Table(show_edge=False)
    for col in ("sample", "split", "modality", "problem", "path"):
        table.add_column(col, overflow="fold")
    for p in problems[:MAX_ROWS]:
        table.add_row(p.sample_id, p.split, p.modality, p.problem, p.path)
    ui.console.print(table)
    by_modality: dict[str, int] = {}
    for p in problems:
        by_modality[p.modality] = by_modality.get(p.modality, 0) + 1
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "split", "modality", "problem", "path"])
        w.writerows([p.sample_id, p.split, p.modality, p.problem, p.path] for p in problems)
    ui.info("missing per modality: " + ", ".join(f"{m} {n}" for m, n in by_modality.items())
            + f"; all rows in {path} (extraction marks these samples as missing the modality)")
