"""`mmkd extract`: stage 1, frozen extractors over the raw media into the run's feature cache.

Run inside a run directory (or pass --cache RUN_DIR). Without --extractor it extracts with the
teacher's and the student's extractor for the modality (`teacher/student.extractors` and
`.weights` in mmkd.yaml). The resolved settings are written next to the cache as
`extract-<modality>-<extractor>.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table

from mmkd import config as C
from mmkd.cli import ui
from mmkd.errors import MmkdError
from mmkd.rundir import Run, find_run

MAX_REASONS = 5


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)


def extract(
    modality: Annotated[str, typer.Option(help="video, flow, audio or detection.")],
    extractor: Annotated[str | None, typer.Option(
        help="A registered extractor; default: the teacher's and the student's for MODALITY.")] = None,
    weights: Annotated[Path | None, typer.Option(
        help="Local checkpoint (.pt/.pth/.safetensors) for --extractor.")] = None,
    random_init: Annotated[bool, typer.Option(
        "--random-init", help="Use random weights where no weights are given (on purpose).")] = False,
    theta: Annotated[int | None, typer.Option(help="Θ-Average threshold (0: keep all tokens).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Clips per forward pass.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode worker processes.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N.")] = None,
    shard: Annotated[str | None, typer.Option(
        help="Worker I of N (I/N), e.g. $SLURM_ARRAY_TASK_ID/8: only its share of the units.")] = None,
    dask: Annotated[str | None, typer.Option(
        help="Run the units on Dask: 'local' or a scheduler address tcp://HOST:PORT.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Any media failure is fatal.")] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed", help="Extract again the samples stored as failed (fix the media "
        "first); other done samples are kept.")] = False,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="The run directory (or its cache.zarr); default: the current directory.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: a.b=c (repeatable).")] = None,
) -> None:
    """Extract tokens for one modality (decode → extractor → Θ-Average → cache)."""
    from mmkd.cache import parse_shard
    from mmkd.extract.runner import ExtractJob, run_extract
    from mmkd.extract.sampling import ClipSampler

    run = find_run(cache, set_ or [])
    cfg = run.cfg
    if modality not in C.MODALITIES:
        raise MmkdError(f"--modality {modality!r}: use one of {', '.join(C.MODALITIES)}")
    if modality not in cfg.data.modalities:
        raise MmkdError(f"--modality {modality}: not in this run's data.modalities "
                        f"({', '.join(cfg.data.modalities)}); add it with --set or `mmkd init`")
    ex = cfg.extract
    sampler = ClipSampler(cfg.clip.num_frames, cfg.clip.frame_stride, cfg.clip.sampling)
    shard_t = parse_shard(shard) if shard else None
    results = []
    for name, wfile in _targets(run, modality, extractor, weights, random_init):
        job = ExtractJob(
            cache_path=str(run.cache_path), manifest_dir=str(run.manifest_dir), modality=modality,
            extractor=name, weights=str(wfile) if wfile else None, random_init=wfile is None,
            theta=ex.theta if theta is None else theta,
            batch_size=batch_size or ex.batch_size,
            workers=ex.workers if workers is None else workers, device=device or ex.device,
            strict=strict or ex.strict, retry_failed=retry_failed, shard_size=ex.shard_size,
            sampler=sampler)
        unit = "units" if dask else "clips"
        with ui.counted_progress(f"{modality}/{name}", unit) as (start, advance):
            result = run_extract(job, shard=shard_t, dask=dask, progress=advance, on_start=start)
        _write_resolved(run, job, result)
        results.append(result)
    _summary(results)


def _targets(run: Run, modality: str, extractor: str | None, weights: Path | None,
             random_init: bool) -> list[tuple[str, Path | None]]:
    """(extractor, weights file or None = random init) pairs to run, in teacher, student order."""
    if extractor is not None:
        if weights is None and not random_init:
            raise MmkdError(f"--extractor {extractor}: pass --weights FILE, or --random-init to use "
                            "random weights on purpose")
        return [(extractor, weights)]
    if weights is not None:
        raise MmkdError("--weights needs --extractor NAME (without it the weights come from "
                        f"teacher.weights.{modality} and student.weights.{modality} in mmkd.yaml)")
    out: list[tuple[str, Path | None]] = []
    for role in (run.cfg.teacher, run.cfg.student):
        name = role.extractors.get(modality)
        if name is None:
            raise MmkdError(f"{role.name}.extractors has no {modality!r} entry; set it with "
                            f"--set {role.name}.extractors.{modality}=NAME or pass --extractor")
        w = role.weights.get(modality)
        if not w and not random_init:
            raise MmkdError(f"{role.name}.weights.{modality} is not set for extractor {name}: set "
                            f"it in mmkd.yaml (--set {role.name}.weights.{modality}=FILE), or pass "
                            "--random-init to use random weights on purpose")
        path = None
        if w:
            path = Path(w) if Path(w).is_absolute() else run.dir / w
        if (name, path) not in out:
            out.append((name, path))
    return out


def _write_resolved(run: Run, job, result) -> Path:
    """The resolved config next to the cache (dinov2 convention)."""
    from dataclasses import asdict

    from mmkd.extract.extractors import get_spec

    spec = get_spec(job.extractor)
    doc = {"job": {**asdict(job), "sampler": asdict(job.sampler)},
           "extractor": {"name": spec.name, "family": spec.family, "dim": spec.dim,
                         "weights_source": spec.weights_source, **spec.contract()},
           "provenance": result.provenance, "run": C.to_dict(run.cfg)}
    path = run.dir / f"extract-{job.modality}-{job.extractor}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _summary(results) -> None:
    table = Table(title="mmkd extract")
    for col in ("features", "clips", "written", "failed", "skipped", "k→Θ×D", "clips/s"):
        table.add_column(col, justify="left" if col == "features" else "right")
    for r in results:
        table.add_row(f"{r.modality}/{r.extractor}", str(r.total), str(r.ok),
                      f"[red]{r.failed}[/red]" if r.failed else "0", str(r.already_done),
                      f"{r.k}→{r.slots}×{r.dim}", f"{r.clips_per_s:.1f}")
    ui.console.print(table)
    ui.console.print("weights: " + ", ".join(f"{r.extractor} {r.weights_sha256[:16]}"
                                             for r in results))
    for r in results:
        for reason, count in r.reasons.most_common(MAX_REASONS):
            ui.console.print(f"  [yellow]{r.modality}/{r.extractor}: {count} × {reason}[/yellow]")
        if r.failed:
            ui.console.print("  failed samples are stored as missing; `mmkd cache info --failures` "
                             "lists them; fix the media, then run the same command with "
                             "--retry-failed (--strict stops at the first failure)")
