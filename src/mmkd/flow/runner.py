"""Plan flow jobs (one per video), run them in-process, in a process pool or on Dask, resumably.

Stride convention (EPIC's): with stride S, flow frame k (1-based) is the flow from RGB frame
1 + (k-1)S to RGB frame 1 + kS, so a video of n frames gives (n - 1) // S flow frames and RGB
frame i falls in flow frame (i - 1) // S + 1. EPIC's PXX_YY videos use S = 2, PXX_1YY S = 1.

Resumability: a video is written into a hidden sibling folder (`.<name>.partial`) whose last
file is the `mmkd_flow.json` marker, then renamed onto its final path in one atomic step; a
video whose folder holds the marker is skipped, and a killed run leaves at most a partial
folder that the next run overwrites.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mmkd.datasets import manifest
from mmkd.datasets.flow_format import BOUND
from mmkd.errors import MmkdError
from mmkd.flow import io
from mmkd.flow.decode import FlowSourceError, count_frames, iter_frames, template_glob
from mmkd.flow.methods import FlowMethod, FlowSpec, create_method

DONE_MARKER = "mmkd_flow.json"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class FlowJob:
    name: str  # the video id, as reported
    source: str  # a video file or a folder of frames
    kind: str  # "video" or "frames"
    out_dir: str  # the EPIC video folder that will hold u/ and v/
    pattern: str | None = None  # frames: only files matching this glob (e.g. 'frame_*.jpg')


@dataclass(frozen=True)
class FlowOptions:
    stride: int = 1
    height: int | None = None  # resize frames to this many rows first (EPIC: 256); None = keep
    raw: str | None = None  # also write float flow: "npy" or "flo"

    def validate(self) -> None:
        if self.stride < 1:
            raise MmkdError(f"--stride {self.stride} must be at least 1 (EPIC: 2 for PXX_YY videos)")
        if self.height is not None and self.height < 8:
            raise MmkdError(f"--height {self.height} must be at least 8 rows")
        if self.raw not in (None, *io.RAW_FORMATS):
            raise MmkdError(f"--raw {self.raw!r} is unknown; use {' or '.join(io.RAW_FORMATS)}")


@dataclass
class JobResult:
    name: str
    status: str  # "done", "skipped" or "failed"
    pairs: int = 0
    seconds: float = 0.0
    reason: str = ""


@dataclass
class FlowSummary:
    results: list[JobResult] = field(default_factory=list)
    seconds: float = 0.0

    def with_status(self, status: str) -> list[JobResult]:
        return [r for r in self.results if r.status == status]

    @property
    def pairs(self) -> int:
        return sum(r.pairs for r in self.results if r.status == "done")

    @property
    def pairs_per_s(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


def plan_manifest(manifest_dir: Path, out: Path) -> tuple[list[FlowJob], list[JobResult]]:
    """One job per video of a manifest (not per segment), in manifest order; videos whose
    records name no media come back as failures instead of jobs."""
    meta, samples = manifest.read_all(manifest_dir)
    jobs: dict[str, FlowJob] = {}
    failures: dict[str, JobResult] = {}
    for s in samples:
        if s.video_id in jobs or s.video_id in failures:
            continue
        if "/" in s.video_id or s.video_id in ("", ".", ".."):
            failures[s.video_id] = JobResult(s.video_id, "failed", reason=(
                f"sample {s.sample_id}: video_id {s.video_id!r} is not a folder name"))
            continue
        pattern = None
        if "path" in s.media.get("video", {}):
            kind, rel = "video", s.media["video"]["path"]
        elif "dir" in s.media.get("rgb", {}):
            kind, rel = "frames", s.media["rgb"]["dir"]
            if s.media["rgb"].get("template"):
                pattern = template_glob(s.media["rgb"]["template"])
        else:
            failures[s.video_id] = JobResult(s.video_id, "failed", reason=(
                f"sample {s.sample_id}: the manifest gives neither media.video.path nor "
                "media.rgb.dir; rebuild it with the media root set"))
            continue
        base = out / s.participant if s.participant else out
        jobs[s.video_id] = FlowJob(s.video_id, str(manifest.resolve(meta, rel, manifest_dir)), kind,
                                   str(base / "flow_frames" / s.video_id), pattern)
    return list(jobs.values()), list(failures.values())


def record_flow(manifest_dir: Path, jobs: list[FlowJob], stride: int) -> int:
    """Point every sample of a video whose flow is complete at it (`media.flow`: the EPIC
    folder, its frame template, `stride`), so `mmkd extract --modality flow` reads it; the
    manifest is rewritten file by file atomically. Returns the samples updated."""
    meta, samples = manifest.read_all(manifest_dir)
    root = manifest.resolve(meta, "", manifest_dir).absolute()
    done = {j.name: Path(j.out_dir).absolute() for j in jobs if is_done(j)}
    flow = {name: {"dir": manifest.media_path(d, root), "template": f"{io.FRAME_TEMPLATE}.jpg",
                   "stride": stride} for name, d in done.items()}
    changed = 0
    for s in samples:
        if s.video_id in flow and s.media.get("flow") != flow[s.video_id]:
            s.media = {**s.media, "flow": flow[s.video_id]}
            changed += 1
    if changed:
        splits: dict[str, list[manifest.Sample]] = {name: [] for name in meta.splits}
        for s in samples:
            splits[s.split].append(s)
        manifest.write_manifest(manifest_dir, meta, splits)
    return changed


def single_job(source: Path, kind: str, out: Path, pattern: str | None = None) -> FlowJob:
    """`--video FILE` or `--frames DIR`: flow straight into `<out>/{u,v}`."""
    return FlowJob(source.stem if kind == "video" else source.name, str(source), kind, str(out),
                   pattern)


def is_done(job: FlowJob) -> bool:
    return (Path(job.out_dir) / DONE_MARKER).is_file()


def count_pairs(job: FlowJob, stride: int) -> int | None:
    """Flow frames a job will write, for progress totals; None when unknown or unreadable."""
    try:
        n = count_frames(Path(job.source), job.kind, job.pattern)
    except FlowSourceError:
        return None  # compute_job reports the reason
    return None if n is None else max(0, (n - 1) // stride)


_METHOD_CACHE: dict[FlowSpec, FlowMethod] = {}


def _method(spec: FlowSpec) -> FlowMethod:
    """One method per process and spec, so a worker loads RAFT's weights once, not per video."""
    if spec not in _METHOD_CACHE:
        _METHOD_CACHE[spec] = create_method(spec)
    return _METHOD_CACHE[spec]


def _marker(job: FlowJob, spec: FlowSpec, options: FlowOptions, pairs: int, n_frames: int) -> dict:
    return {
        "source": job.source, "method": spec.method,
        "raft_model": spec.raft_model if spec.method == "raft" else None,
        "weights": Path(spec.weights).name if spec.weights else None,
        "random_init": spec.random_init, **asdict(options), "bound_px": BOUND,
        "jpeg_quality": io.JPEG_QUALITY, "frames_used": n_frames, "flow_frames": pairs,
        "index": "flow frame k = flow from frame 1+(k-1)*stride to frame 1+k*stride",
    }


def _same_settings(marker: dict, spec: FlowSpec, options: FlowOptions) -> str:
    """'' when a finished video was computed with these settings, else what differs."""
    wanted = {"method": spec.method, **asdict(options)}
    diffs = [f"{k}={marker.get(k)!r} (asked {v!r})" for k, v in wanted.items() if marker.get(k) != v]
    return ", ".join(diffs)


def compute_job(job: FlowJob, spec: FlowSpec, options: FlowOptions,
                report: Progress | None = None, threads: int | None = None) -> JobResult:
    """Compute and write one video's flow; never raises for a bad video (the reason is returned)."""
    final = Path(job.out_dir)
    marker_path = final / DONE_MARKER
    if marker_path.is_file():
        diff = _same_settings(json.loads(marker_path.read_text()), spec, options)
        if diff:
            return JobResult(job.name, "failed", reason=(
                f"{final} already holds flow computed with {diff}; delete it to recompute"))
        return JobResult(job.name, "skipped")
    if final.is_dir() and any(final.iterdir()):
        return JobResult(job.name, "failed", reason=(
            f"{final} exists and is not a finished `mmkd flow` output (no {DONE_MARKER}); "
            "delete it or choose another --out"))
    if threads is not None:
        cv2.setNumThreads(threads)
        if spec.method == "raft":
            import torch

            torch.set_num_threads(threads)
    partial = final.parent / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    start = time.perf_counter()
    try:
        pairs, n_frames = _write_flow(job, spec, options, partial, report)
        if pairs == 0:
            raise FlowSourceError(f"{job.source}: {n_frames} frame(s) at stride {options.stride}; "
                                  "flow needs at least two")
        (partial / DONE_MARKER).write_text(
            json.dumps(_marker(job, spec, options, pairs, n_frames), indent=2) + "\n")
        if final.is_dir():
            final.rmdir()  # an empty --out folder the user created
        os.replace(partial, final)
    except Exception as exc:  # a bad video must not stop the others; its reason is reported
        shutil.rmtree(partial, ignore_errors=True)
        reason = str(exc) if isinstance(exc, MmkdError) else f"{type(exc).__name__}: {exc}"
        return JobResult(job.name, "failed", seconds=time.perf_counter() - start, reason=reason)
    return JobResult(job.name, "done", pairs=pairs, seconds=time.perf_counter() - start)


def _write_flow(job: FlowJob, spec: FlowSpec, options: FlowOptions, video_dir: Path,
                report: Progress | None) -> tuple[int, int]:
    method = _method(spec)
    io.make_video_dirs(video_dir, options.raw)
    per_call = spec.batch_size if spec.method == "raft" else 1
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    prev = None
    n_frames = pairs = 0

    def flush() -> None:
        nonlocal pairs
        flow_NHW2 = method(np.stack(first), np.stack(second))
        for flow_HW2 in flow_NHW2:
            pairs += 1
            io.write_flow_jpegs(video_dir, pairs, flow_HW2)
            if options.raw:
                io.write_raw(video_dir, pairs, flow_HW2, options.raw)
        if report is not None:
            report(len(flow_NHW2))
        first.clear()
        second.clear()

    for frame in iter_frames(Path(job.source), job.kind, options.stride, options.height,
                             job.pattern):
        n_frames += 1
        if prev is not None:
            if frame.shape != prev.shape:
                raise FlowSourceError(f"{job.source}: frame {n_frames} is {frame.shape[:2]}, "
                                      f"the previous one {prev.shape[:2]}; pass --height to resize")
            first.append(prev)
            second.append(frame)
            if len(first) == per_call:
                flush()
        prev = frame
    if first:
        flush()
    return pairs, n_frames


def run_jobs(jobs: list[FlowJob], spec: FlowSpec, options: FlowOptions, workers: int = 1,
             dask: str | None = None, progress: Progress | None = None) -> FlowSummary:
    """Run every job; finished videos are skipped, failed ones reported with their reason.

    workers > 1: a spawn-based process pool, progress per batch of frame pairs through a queue.
    dask: 'local' (a LocalCluster of `workers` processes) or a scheduler address; progress then
    advances per finished video.
    """
    spec.validate()
    options.validate()
    if workers < 1:
        raise MmkdError(f"--workers {workers} must be at least 1")
    _method(spec)  # fail fast (e.g. RAFT weights that do not fit) before any work is dispatched
    start = time.perf_counter()
    if dask:
        results = _run_dask(jobs, spec, options, workers, dask, progress)
    elif workers > 1 and len(jobs) > 1:
        results = _run_pool(jobs, spec, options, workers, progress)
    else:
        results = [compute_job(job, spec, options, progress) for job in jobs]
    return FlowSummary(results, time.perf_counter() - start)


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _result_or_failure(future, job: FlowJob) -> JobResult:
    """compute_job never raises, so an exception here means the worker itself died (e.g. killed
    for memory); the video is reported and a rerun resumes it."""
    try:
        return future.result()
    except Exception as exc:
        return JobResult(job.name, "failed", reason=(
            f"worker died ({type(exc).__name__}: {exc}); rerun to resume"))


_QUEUE: mp.Queue | None = None


def _init_pool_worker(progress_queue: mp.Queue) -> None:
    global _QUEUE
    _QUEUE = progress_queue


def _pool_job(job: FlowJob, spec: FlowSpec, options: FlowOptions, threads: int) -> JobResult:
    return compute_job(job, spec, options, report=_QUEUE.put if _QUEUE else None, threads=threads)


def _run_pool(jobs: list[FlowJob], spec: FlowSpec, options: FlowOptions, workers: int,
              progress: Progress | None) -> list[JobResult]:
    ctx = mp.get_context("spawn")  # fork after torch/OpenCV threads have started is unsafe
    progress_queue = ctx.Queue()
    threads = _threads_per_worker(workers)

    def drain() -> None:
        while True:
            try:
                n = progress_queue.get_nowait()
            except queue.Empty:
                return
            if progress is not None:
                progress(n)

    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=ctx,
                             initializer=_init_pool_worker, initargs=(progress_queue,)) as pool:
        futures = {pool.submit(_pool_job, job, spec, options, threads): i
                   for i, job in enumerate(jobs)}
        results: list[JobResult | None] = [None] * len(jobs)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for fut in finished:
                results[futures[fut]] = _result_or_failure(fut, jobs[futures[fut]])
    time.sleep(0.05)  # let the queue's feeder threads flush the last counts
    drain()
    return [r for r in results if r is not None]


def _run_dask(jobs: list[FlowJob], spec: FlowSpec, options: FlowOptions, workers: int,
              address: str, progress: Progress | None) -> list[JobResult]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if address == "local":
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        threads = _threads_per_worker(workers)
    else:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise MmkdError(f"--dask {address}: no scheduler answers ({exc}); start one with "
                            "`dask scheduler` or pass --dask local") from None
        threads = None  # a remote worker's machine is not ours to size
    try:
        futures = {client.submit(compute_job, job, spec, options, None, threads, pure=False): i
                   for i, job in enumerate(jobs)}
        results: list[JobResult | None] = [None] * len(jobs)
        for fut in as_completed(futures):
            result = _result_or_failure(fut, jobs[futures[fut]])
            results[futures[fut]] = result
            if progress is not None and result.pairs:
                progress(result.pairs)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [r for r in results if r is not None]
