"""The built-in demo dataset: a synthetic egocentric kitchen in the official EPIC-100 formats.

`generate(out, scale, seed)` writes, deterministically for a seed and scale:

    out/annotations/EPIC_100_{train,validation}.csv, EPIC_100_{verb,noun}_classes.csv,
                    EPIC_100_video_info.csv, EPIC_100_unseen_participant_ids_validation.csv
    out/media/<P>/videos/<video>.MP4                      H.264 (MPEG-4 Part 2 if no libx264)
    out/media/<P>/rgb_frames/<video>/frame_%010d.jpg      60 fps (PXX_YY) / 50 fps (PXX_1YY)
    out/media/<P>/flow_frames/<video>/{u,v}/frame_%010d.jpg   stride 2 / 1, EPIC quantization
    out/media/<P>/audio/<video>.wav                       mono 24 kHz 16-bit PCM
    out/media/EPIC_audio.hdf5                             one float32 dataset per video
    out/media/detections.json                             Something-Else boxes, every 5th frame
    out/README.md, out/demo.json                          what was generated and how

so that the real manifest builder (`mmkd manifest epic100 --annotations out/annotations
--media-root out/media`), decoders and extractors run on it unchanged. The content design
(what each modality reveals about verb and noun) is described in `spec.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from mmkd.demo.annotations import write_annotations
from mmkd.demo.plan import Plan, make_plan
from mmkd.demo.spec import (
    BOX_STRIDE,
    FLOW_STRIDE,
    HEIGHT,
    NOUNS,
    SAMPLE_RATE,
    VERBS,
    WIDTH,
)
from mmkd.demo.writer import VideoResult, media_paths, read_wav, write_video
from mmkd.errors import MmkdError

DEMO_JSON = "demo.json"
OWNED = ("annotations", "media", "README.md", DEMO_JSON)  # what `overwrite` may delete


@dataclass
class DemoSummary:
    out: Path
    scale: str
    seed: int
    videos: int
    segments: dict[str, int]  # split -> action segments
    frames: int  # RGB frames over all videos
    flow_frames: int
    seconds: float  # wall-clock generation time
    workers: int
    codec: str


def generate(
    out: str | Path,
    scale: str = "small",
    seed: int = 0,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    command: str = "",
    progress: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Generate the demo dataset into `out`; `progress(1)` is called per finished video."""
    t0 = time.perf_counter()
    out = Path(out)
    plan = make_plan(scale, seed)
    _prepare(out, overwrite)
    write_annotations(plan, out / "annotations")
    media = out / "media"
    styles = plan.styles()
    jobs = sorted(plan.videos, key=lambda v: -v.n_frames)  # longest first: balanced workers
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: dict[str, VideoResult] = {}
    if n_workers == 1:
        for v in jobs:
            results[v.video_id] = write_video(media, v, styles[v.participant], seed)
            if progress:
                progress(1)
    else:
        # spawn: safe even when the caller has threads (torch, BLAS) that fork would copy badly
        with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(write_video, media, v, styles[v.participant], seed) for v in jobs
            ]
            for fut in futures:
                r = fut.result()
                results[r.video_id] = r
                if progress:
                    progress(1)
    _write_audio_hdf5(media, plan)
    detections = {v.video_id: results[v.video_id].detections for v in plan.videos}
    (media / "detections.json").write_text(json.dumps(detections, separators=(",", ":")))
    codec = results[plan.videos[0].video_id].codec
    info = describe(plan, codec)
    (out / DEMO_JSON).write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(readme(info, command or _command(out, scale, seed)))
    return DemoSummary(
        out=out,
        scale=scale,
        seed=seed,
        videos=len(plan.videos),
        segments={
            s: sum(len(v.segments) for v in plan.videos if v.layout.split == s)
            for s in ("train", "validation")
        },
        frames=sum(v.n_frames for v in plan.videos),
        flow_frames=sum(v.n_flow_frames for v in plan.videos),
        seconds=time.perf_counter() - t0,
        workers=n_workers,
        codec=codec,
    )


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MmkdError(f"--out {out} is a file; pass a folder to create")
    existing = list(out.iterdir()) if out.is_dir() else []
    if existing and not overwrite:
        raise MmkdError(
            f"{out} is not empty; choose a new --out folder or pass --force to "
            "replace a previous demo dataset there"
        )
    foreign = sorted(p.name for p in existing if p.name not in OWNED)
    if foreign:  # never delete what a demo run did not write (an interrupted one is fine)
        raise MmkdError(
            f"{out} holds files that are not part of a demo dataset "
            f"({', '.join(foreign[:3])}); choose an empty --out folder"
        )
    for name in OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_audio_hdf5(media: Path, plan: Plan) -> None:
    """EPIC's packed audio: one 1-D float32 dataset per video, no attributes; the same samples
    as the .wav files (read back from them, so the two can never disagree)."""
    import h5py

    with h5py.File(media / "EPIC_audio.hdf5", "w") as f:
        for v in plan.videos:
            f.create_dataset(v.video_id, data=read_wav(media_paths(media, v)["wav"]))


def describe(plan: Plan, codec: str) -> dict:
    """The machine-readable description written as demo.json."""
    return {
        "generator": "mmkd demo-data",
        "scale": plan.scale.name,
        "seed": plan.seed,
        "resolution": [WIDTH, HEIGHT],
        "fps": {"PXX_YY": 60, "PXX_1YY": 50},
        "flow": {
            "stride": {"PXX_YY": FLOW_STRIDE[60], "PXX_1YY": FLOW_STRIDE[50]},
            "bound_px": 20.0,
            "n_frames": "(rgb_n_frames - 1) // stride",
            "frame_j": "motion from RGB frame (j - 1) * stride + 1 to j * stride + 1",
        },
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "wav_bits": 16,
            "hdf5": "media/EPIC_audio.hdf5",
        },
        "video": {"codec": codec, "pix_fmt": "yuv420p", "container": "mp4"},
        "boxes": {
            "file": "media/detections.json",
            "frame_stride": BOX_STRIDE,
            "first_frame": 1,
            "fps": {"PXX_YY": 60 / BOX_STRIDE, "PXX_1YY": 50 / BOX_STRIDE},
        },
        "classes": {"verb": [v.key for v in VERBS], "noun": [n.key for n in NOUNS]},
        "validation_only_nouns": [n.key for n in NOUNS if n.validation_only],
        "participants": {
            "seen": sorted({v.participant for v in plan.videos} - set(plan.unseen)),
            "unseen": list(plan.unseen),
        },
        "videos": [
            {
                "video_id": v.video_id,
                "participant": v.participant,
                "split": v.layout.split,
                "fps": v.fps,
                "n_frames": v.n_frames,
                "n_flow_frames": v.n_flow_frames,
                "duration_s": v.n_frames / v.fps,
                "segments": len(v.segments),
            }
            for v in plan.videos
        ],
    }


def _command(out: Path, scale: str, seed: int) -> str:
    return f"mmkd demo-data --out {out} --scale {scale} --seed {seed}"


def readme(info: dict, command: str) -> str:
    videos = info["videos"]
    n = {s: sum(v["segments"] for v in videos if v["split"] == s) for s in ("train", "validation")}
    return f"""# mmkd demo dataset ({info["scale"]}, seed {info["seed"]})

Synthetic egocentric kitchen actions in the official EPIC-KITCHENS-100 formats, generated by

    {command}

The same command always produces the same annotation files and the same media content.

- {len(videos)} long videos, {n["train"]} training and {n["validation"]} validation action
  segments; participants {", ".join(info["participants"]["seen"])} (seen) and
  {", ".join(info["participants"]["unseen"])} (unseen: validation only).
- {len(info["classes"]["verb"])} verbs ({", ".join(info["classes"]["verb"])}) and
  {len(info["classes"]["noun"])} nouns ({", ".join(info["classes"]["noun"])});
  {", ".join(info["validation_only_nouns"])} occur in validation only (the pruned-validation
  rule drops them).
- Frames {info["resolution"][0]}x{info["resolution"][1]}; RGB at 60 fps (PXX_YY) and 50 fps
  (PXX_1YY); flow JPEGs at stride 2 / 1 quantized as EPIC (±20 px onto 0..255, 128 = still);
  {info["video"]["codec"]} .MP4; audio 24 kHz as .wav and in EPIC_audio.hdf5; object and hand
  boxes every {info["boxes"]["frame_stride"]}th RGB frame in Something-Else format.

Evidence: the verb is a motion (video, flow, box trajectories, sound envelope); the noun is an
object's shape, colour and texture (video), its box shape and moving outline (boxes, flow) and
its timbre (audio, shared between similar materials). Nuisances: sensor noise, motion blur,
occlusion by hands, camera shake and head turns, lighting drift, clutter, and a per-participant
look (unseen participants differ most).

Layout: `annotations/` (the six EPIC CSVs), `media/` (EPIC layout), `demo.json` (machine-readable
description). Build manifests with
`mmkd manifest epic100 --annotations annotations --media-root media`.
"""
