"""Stage 1: decode → preprocess → frozen extractor → Θ-Average → cache, batched and resumable.

Work is cut into the cache writer's shard-aligned units; a unit's batches never straddle units,
and `finish_unit` publishes it whole, so a killed run resumes at the first unfinished unit.
Locally, decoding runs in DataLoader worker processes (`workers`) overlapped with the model in
the main process; with `dask`, each unit is one task (`mmkd.cache.scaleout.run_units`) that
decodes and runs the model in the Dask worker. Bad media never stops the run (unless `strict`):
the sample's modality is recorded as missing with the reason in the cache's failures table;
once the media is fixed, `retry_failed` extracts exactly those samples again, unit by unit
under the same ownership and publish rules.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mmkd.cache import Cache, WorkUnit
from mmkd.datasets.manifest import ManifestMeta, Sample, manifest_hash, read_all
from mmkd.errors import MmkdError
from mmkd.extract.extractors import Extractor, create_extractor, get_spec
from mmkd.extract.extractors.weights import sha256_file
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.sampling import ClipSampler, MediaError
from mmkd.extract.theta import n_out, theta_average


def decode_errors() -> tuple[type[BaseException], ...]:
    import av

    return (MediaError, OSError, cv2.error, av.FFmpegError)


@dataclass(frozen=True)
class ExtractJob:
    """Everything one extraction needs; picklable so Dask tasks can rebuild it."""

    cache_path: str
    manifest_dir: str
    modality: str
    extractor: str
    weights: str | None = None
    random_init: bool = False
    theta: int = 300
    batch_size: int = 8
    workers: int = 2
    device: str = "cpu"
    strict: bool = False
    retry_failed: bool = False  # extract again the samples stored with a failure
    shard_size: int = 128
    sampler: ClipSampler = field(default_factory=ClipSampler)


@dataclass
class ExtractResult:
    modality: str
    extractor: str
    total: int  # samples in this job's units
    already_done: int  # done by an earlier run (skipped; with retry_failed: done and not failed)
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    k: int = 0  # tokens per clip before Θ-Average
    slots: int = 0  # tokens stored per clip (Θ, or k when k <= Θ)
    dim: int = 0
    weights_sha256: str = ""
    reasons: Counter = field(default_factory=Counter)  # failure category -> count
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def clips_per_s(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds else 0.0


def provenance(job: ExtractJob, weights_sha: str) -> dict[str, Any]:
    """What the tokens depend on, flat: refused on resume if any of it changes."""
    spec = get_spec(job.extractor)
    s = job.sampler
    return {"weights_sha256": weights_sha, "family": spec.family, "theta_param": job.theta,
            "k_tokens": spec.n_tokens(s.num_frames), "clip_frames": s.num_frames,
            "clip_stride": s.stride, "clip_sampling": s.policy,
            **{f"pre_{k}": v for k, v in spec.contract().items()}}


def _category(reason: str) -> str:
    """A short failure class for the summary, e.g. 'too short' from '<path>: too short: ...'."""
    text = reason.split(": ", 1)[1] if ": " in reason else reason
    return re.split(r"[:(]", text, maxsplit=1)[0].strip()[:60] or "unknown"


class _Clips(torch.utils.data.Dataset):
    """index -> (index, inputs or None, failure reason); decoding errors are data, not crashes."""

    def __init__(self, samples: list[Sample], build: InputBuilder):
        self.samples, self.build = samples, build
        self.errors = decode_errors()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, dict[str, torch.Tensor] | None, str]:
        try:
            return i, self.build(self.samples[i]), ""
        except self.errors as exc:
            return i, None, str(exc) or type(exc).__name__


def _collate(items: list) -> tuple[np.ndarray, dict[str, torch.Tensor] | None, list]:
    ok = [(i, x) for i, x, _ in items if x is not None]
    fails = [(i, r) for i, x, r in items if x is None]
    idx = np.array([i for i, _ in ok], dtype=np.int64)
    batch = {k: torch.stack([x[k] for _, x in ok]) for k in ok[0][1]} if ok else None
    return idx, batch, fails


def decode_loader_options(workers: int, dataset: Any, prefetch: int = 2) -> dict[str, Any]:
    """DataLoader options for decoding `dataset` in `workers` processes (0: in this process).

    Workers start from a forkserver, never by a plain fork: a fork of a parent whose OpenCV or
    OpenMP thread pools already ran deadlocks in cv2.setNumThreads / the first parallel call.
    The forkserver imports the readers and the dataset's module once (preload; it takes effect
    when a process starts its forkserver), so each DataLoader's workers start in ~0.3 s instead
    of importing torch and mmkd for ~4 s each (measured on 2 cores)."""
    if not workers:
        return {"num_workers": 0}
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(sorted({__name__, type(dataset).__module__}))
    return {"num_workers": workers, "multiprocessing_context": ctx,
            "worker_init_fn": init_decode_worker, "prefetch_factor": prefetch}


def init_decode_worker(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from mmkd.extract.readers import audio

    audio._hdf5.cache_clear()  # never share the parent's HDF5 handles across fork (box stores reopen per pid)


class _Session:
    """The opened cache, writer, model and input builder of one job (one per process)."""

    def __init__(self, job: ExtractJob):
        self.job = job
        meta, samples = read_all(job.manifest_dir)
        self.meta: ManifestMeta = meta
        self.samples = samples
        self.cache = Cache.create(job.cache_path, samples, meta.heads, manifest_hash(samples),
                                  shard_size=job.shard_size)
        self.model: Extractor = create_extractor(job.extractor, weights=job.weights,
                                                 random_init=job.random_init)
        spec = self.model.spec
        self.device = torch.device(job.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise MmkdError("--device cuda: no CUDA device is visible; use --device cpu")
        self.model.to(self.device)
        self.weights_sha = sha256_file(Path(job.weights)) if job.weights else "random-init"
        self.k = spec.n_tokens(job.sampler.num_frames)
        self.slots = n_out(self.k, job.theta)
        self.provenance = provenance(job, self.weights_sha)
        self.writer = self.cache.feature_writer(job.modality, job.extractor, self.slots, spec.dim,
                                                self.provenance)
        self.build = InputBuilder(job.modality, spec, job.sampler, meta, job.manifest_dir)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def tokens(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """(B, slots, D) float16: the extractor's tokens, Θ-averaged."""
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with torch.inference_mode(), self.autocast():
            tokens_BKD = self.model(inputs)
        if tokens_BKD.shape[1] != self.k:
            raise MmkdError(f"extractor {self.job.extractor} gave {tokens_BKD.shape[1]} tokens, "
                            f"its spec promises {self.k}; the input contract and the clip differ")
        return theta_average(tokens_BKD.float(), self.job.theta).cpu().numpy().astype(np.float16)

    def write(self, idx: np.ndarray, batch: dict[str, torch.Tensor] | None,
              fails: list[tuple[int, str]], result: ExtractResult) -> None:
        for i, reason in fails:
            if self.job.strict:
                raise MmkdError(f"--strict: sample {self.samples[i].sample_id!r} "
                                f"({self.job.modality}) failed: {reason}")
            self.writer.fail(i, reason)
            result.failed += 1
            result.reasons[_category(reason)] += 1
        if batch is not None and len(idx):
            toks = self.tokens(batch)
            self.writer.write(idx, toks, np.full(len(idx), self.slots), np.ones(len(idx), bool))
            result.ok += len(idx)

    def new_result(self, units: list[WorkUnit]) -> ExtractResult:
        return ExtractResult(self.job.modality, self.job.extractor, sum(len(u) for u in units), 0,
                             k=self.k, slots=self.slots, dim=self.model.spec.dim,
                             weights_sha256=self.weights_sha, provenance=self.provenance)


def _plan(session: _Session, units: list[WorkUnit],
          result: ExtractResult) -> list[tuple[WorkUnit, list[int], bool]]:
    """(unit, batch indices, last batch of the unit) in order; batches never straddle units."""
    plan = []
    for unit in units:
        pending = session.writer.pending(unit, session.job.retry_failed).tolist()
        result.already_done += len(unit) - len(pending)
        bs = session.job.batch_size
        batches = [pending[i:i + bs] for i in range(0, len(pending), bs)]
        plan += [(unit, b, j == len(batches) - 1) for j, b in enumerate(batches)]
    return plan


def run_extract(job: ExtractJob, shard: tuple[int, int] | None = None, dask: str | None = None,
                progress: Callable[[int], None] | None = None,
                on_start: Callable[[int], None] | None = None) -> ExtractResult:
    """Extract `job` into its cache. `on_start(n_pending)` is called once the work is known
    (for a progress bar's total); `progress(n)` after each batch (locally) or unit (Dask)."""
    if dask is not None:
        return _run_dask(job, shard, dask, progress, on_start)
    session = _Session(job)
    t0 = time.perf_counter()  # throughput counts decoding + model + writing, not model loading
    units = session.writer.units(shard)
    result = session.new_result(units)
    plan = _plan(session, units, result)
    if on_start:
        on_start(sum(len(b) for _, b, _ in plan))
    for unit, batch_idx, last in _batches(session, plan):
        idx, batch, fails = batch_idx
        session.write(idx, batch, fails, result)
        if progress:
            progress(len(idx) + len(fails))
        if last:
            session.writer.finish_unit(unit)
    result.seconds = time.perf_counter() - t0
    return result


def _batches(session: _Session, plan: list) -> Iterator[tuple[WorkUnit, tuple, bool]]:
    if not plan:
        return
    clips = _Clips(session.samples, session.build)
    loader = torch.utils.data.DataLoader(
        clips, batch_sampler=[b for _, b, _ in plan],
        collate_fn=_collate, pin_memory=session.device.type == "cuda",
        **decode_loader_options(session.job.workers, clips, prefetch=4))
    for (unit, _, last), out in zip(plan, loader, strict=True):
        yield unit, out, last


# ----------------------------------------------------------------------------- Dask
_SESSIONS: dict[ExtractJob, _Session] = {}


def _session(job: ExtractJob) -> _Session:
    """One session per (job, process): a Dask worker loads the model once for all its units."""
    if job not in _SESSIONS:
        _SESSIONS[job] = _Session(job)
    return _SESSIONS[job]


def extract_unit(job: ExtractJob, unit_id: int) -> ExtractResult:
    """One unit in this process (a Dask task): decode, run the model, publish the unit."""
    session = _session(job)
    unit = next(u for u in session.writer.units() if u.id == unit_id)
    result = session.new_result([unit])
    clips = _Clips(session.samples, session.build)
    for _, idx, last in _plan(session, [unit], result):
        session.write(*_collate([clips[i] for i in idx]), result)
        if last:
            session.writer.finish_unit(unit)
    return result


def _run_dask(job: ExtractJob, shard: tuple[int, int] | None, dask: str,
              progress: Callable[[int], None] | None,
              on_start: Callable[[int], None] | None) -> ExtractResult:
    from mmkd.cache.scaleout import run_units

    session = _Session(job)  # creates the store and the group before the workers start
    t0 = time.perf_counter()
    units = session.writer.units(shard)
    total = session.new_result(units)
    if on_start:
        on_start(len(units))
    for part in run_units([u.id for u in units], partial(extract_unit, job), dask=dask,
                          progress=progress, n_workers=job.workers or None):
        total.already_done += part.already_done
        total.ok += part.ok
        total.failed += part.failed
        total.reasons.update(part.reasons)
    total.seconds = time.perf_counter() - t0
    return total
