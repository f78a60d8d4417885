"""`mmkd cache {info,verify,export-h5,import-h5}`: inspect, check and exchange a feature cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mmkd.cli import ui
from mmkd.errors import MmkdError

CacheOpt = Annotated[Path | None, typer.Option(
    "--cache", help="The run directory (or its cache.zarr); default: the current directory.")]
MAX_IDS = 8
AUTO_PROVENANCE = ("modality", "theta", "dim", "dtype", "schema_version", "manifest_hash")

cache_app = typer.Typer(help="Inspect, verify and exchange the feature cache.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")


def _cache_path(cache: Path | None) -> Path:
    """A path to a store is used as is (no mmkd.yaml needed); otherwise the run's cache."""
    from mmkd.rundir import find_run

    if cache is not None and cache.name.endswith(".zarr"):
        return cache
    return find_run(cache, extractors=False).cache_path


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


def _ids(ids: list[str]) -> str:
    more = f" … (+{len(ids) - MAX_IDS})" if len(ids) > MAX_IDS else ""
    return ", ".join(ids[:MAX_IDS]) + more


def _retry_command(modality: str, extractor: str) -> str:
    return (f"`mmkd extract --modality {modality} --extractor {extractor} --retry-failed` (with "
            "the first run's --weights FILE or --random-init)")


@cache_app.command("info")
def info(cache: CacheOpt = None,
         failures: Annotated[bool, typer.Option(help="List every failed sample.")] = False) -> None:
    """Modalities, extractors, done/present counts, failures, size on disk, provenance."""
    from mmkd.cache import Cache
    from mmkd.cache.verify import cache_info

    c = Cache.open(_cache_path(cache))
    ci = cache_info(c)
    ui.console.print(f"[bold]{ci.path}[/bold]  N={ci.n}  splits "
                     + ", ".join(f"{s}={k}" for s, k in ci.splits.items())
                     + "  heads " + ", ".join(f"{h}({k})" for h, k in ci.heads.items())
                     + f"  manifest {ci.manifest_hash[:12]}  shard {ci.shard_size}")
    table = Table(title="feature groups")
    for col in ("modality", "extractor", "Θ×D", "done", "present", "failed", "size",
                "files/1k"):
        table.add_column(col, justify="left" if col in ("modality", "extractor") else "right")
    for g in ci.groups:
        table.add_row(g.modality, g.extractor, f"{g.theta}×{g.dim}", f"{g.done}/{g.n}",
                      str(g.present), f"[red]{g.failures}[/red]" if g.failures else "0",
                      _size(g.bytes_on_disk), f"{1000 * g.files / g.n:.0f}")
    if ci.groups and ui.fits(table):
        ui.console.print(table)
    elif ci.groups:  # a narrow terminal would cut the names: one line per group instead
        ui.console.print("[bold]feature groups[/bold]")
        for g in ci.groups:
            ui.console.print(f"  {g.modality}/{g.extractor}: Θ×D {g.theta}×{g.dim}, done "
                             f"{g.done}/{g.n}, present {g.present}, failed {g.failures}, "
                             f"{_size(g.bytes_on_disk)}, {1000 * g.files / g.n:.0f} files/1k "
                             "samples", soft_wrap=True)
    else:
        ui.console.print("no features yet: run `mmkd extract --modality M`")
    for g in ci.groups:
        prov = {k: v for k, v in g.provenance.items() if k not in AUTO_PROVENANCE}
        ui.console.print(f"[bold]{g.modality}/{g.extractor}[/bold] provenance: "
                         + json.dumps(prov, sort_keys=True), soft_wrap=True)
    if ci.teachers:
        ui.console.print("teacher logits: " + ", ".join(ci.teachers))
    rows = c.failures()
    if rows and failures:
        ft = Table(title="failures")
        for col in ("modality", "extractor", "sample_id", "reason"):
            ft.add_column(col, overflow="fold")
        for r in rows:
            ft.add_row(r["modality"], r["extractor"], r["sample_id"], r["reason"])
        ui.console.print(ft)
        for mod, ext in sorted({(r["modality"], r["extractor"]) for r in rows}):
            ui.console.print(f"  {mod}/{ext}: fix the media, then extract them again with "
                             + _retry_command(mod, ext), soft_wrap=True)
    elif rows:
        ui.console.print(f"{len(rows)} failed samples (--failures lists them and how to "
                         "retry them)")
    ui.console.print(f"total {_size(ci.bytes_on_disk)} in {ci.files} files")


@cache_app.command("verify")
def verify(cache: CacheOpt = None,
           mark_failed: Annotated[bool, typer.Option(
               "--mark-failed", help="Store the bad samples as failed, so that `mmkd extract "
               "--retry-failed` extracts them again (no extraction may be writing).")] = False,
           ) -> None:
    """Read every done sample: shard index and chunk checksums, shape, finite, padding."""
    from mmkd.cache import Cache
    from mmkd.cache.verify import mark_failed as run_mark_failed
    from mmkd.cache.verify import verify as run_verify

    c = Cache.open(_cache_path(cache))
    total = sum(int((c.array(m, e, "done")[:] & c.array(m, e, "present")[:]).sum())
                for m, e in c.features())
    with ui.progress_bar("verify", total=total, unit="samples") as advance:
        report = run_verify(c, progress=advance)
    for w in report.warnings:
        ui.info(f"[yellow]warning:[/yellow] {w}")
    for p in report.problems:
        ids = f": {len(p.sample_ids)} samples ({_ids(p.sample_ids)})" if p.sample_ids else ""
        ui.err_console.print(f"[red]{p.where}[/red] {p.what}{ids}")
    if report.ok:
        ui.console.print(f"[green]ok[/green]: {report.checked} samples in "
                         f"{len(c.features())} feature groups read back intact")
        return
    if mark_failed:
        for group, n in run_mark_failed(Cache.open(c.path, mode="r+"), report).items():
            ui.console.print(f"  {group}: {n} bad samples stored as failed; extract them again "
                             "with " + _retry_command(*group.split("/")), soft_wrap=True)
        if all(p.sample_ids and not p.group.startswith("teachers/") for p in report.problems):
            return
    for group, ids in report.bad_samples().items():
        if group.startswith("teachers/"):
            ui.err_console.print(f"  {group}: retrain with `mmkd train teacher`")
        elif not mark_failed:
            ui.err_console.print(f"  {group}: {len(ids)} bad samples; store them as failed with "
                                 "`mmkd cache verify --mark-failed`, then extract them again with "
                                 + _retry_command(*group.split("/")), soft_wrap=True)
    raise MmkdError(f"{c.path}: {len(report.problems)} problems found by verify (listed above)")


@cache_app.command("export-h5")
def export_h5(out: Annotated[Path, typer.Argument(help="The HDF5 file to write.")],
              cache: CacheOpt = None) -> None:
    """Write the whole cache to one HDF5 file (same layout, provenance as JSON attributes)."""
    from mmkd.cache import Cache
    from mmkd.cache.h5io import export_h5 as run_export

    c = Cache.open(_cache_path(cache))
    with ui.progress_bar("export", total=c.n * len(c.features()), unit="samples") as advance:
        run_export(c, out, progress=advance)
    ui.console.print(f"wrote [bold]{out}[/bold] ({_size(out.stat().st_size)}; "
                     f"{len(c.features())} feature groups, {len(c.teachers())} teachers)")


@cache_app.command("import-h5")
def import_h5(src: Annotated[Path, typer.Argument(help="An `mmkd cache export-h5` file.")],
              cache: CacheOpt = None) -> None:
    """Fill the run's cache from an HDF5 export (resumable; provenance is checked)."""
    import h5py

    from mmkd.cache.h5io import import_h5 as run_import

    target = _cache_path(cache)
    if not src.exists():
        raise MmkdError(f"{src}: no such HDF5 file")
    with h5py.File(src, "r") as h5:
        n = len(h5["sample_ids"]) if "sample_ids" in h5 else 0
        groups = sum(len(h5[m]) for m in h5 if m not in ("sample_ids", "splits", "labels",
                                                            "teachers"))
    with ui.progress_bar("import", total=n * groups, unit="samples") as advance:
        c = run_import(src, target, progress=advance)
    ui.console.print(f"imported into [bold]{c.path}[/bold]: "
                     + ", ".join(f"{m}/{e}" for m, e in c.features())
                     + (f"; teachers {', '.join(c.teachers())}" if c.teachers() else ""))
