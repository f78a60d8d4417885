"""Stage-1 throughput: the whole pipeline vs the extractor's forward pass alone, same batches.

  pipeline  `mmkd.extract.runner.run_extract` on real media: decode (decord, in DataLoader worker
            processes) → resize/crop/normalise → extractor → Θ-Average → float16 → Zarr cache
  forward   the same extractor on the same clips, preprocessed beforehand and already on the
            device, batch by batch (the bound)          target: pipeline ≥ 0.85 × forward
Both run alternately `--rounds` times and the best round of each is compared (load from other
processes on a shared machine only ever slows a round down).
Media: generated H.264 videos with 2 s action segments. Defaults are the demo's sizes on the
2-core CPU here (128×96 at 60 fps, 16 frames, the demo teacher's Video Swin); at paper size on
a GPU (EPIC's 456×256 frames, 32 frames, Swin-B):
  python benchmarks/extract.py --extractor swin3d_b --device cuda --batch-size 8 \
      --num-clips 256 --num-frames 32 --workers 8 --width 456 --height 256 --theta 300
Writes benchmarks/results/extract.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mmkd.datasets.manifest import ManifestMeta, Sample, read_all, write_manifest
from mmkd.extract.extractors import create_extractor
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.runner import ExtractJob, run_extract
from mmkd.extract.sampling import ClipSampler
from mmkd.extract.theta import theta_average

OUT = Path(__file__).parent / "results" / "extract.json"
SEGMENT_S, VIDEO_S = 2.0, 20.0


def make_media(root: Path, num_clips: int, W: int, H: int, FPS: int) -> Path:  # noqa: N803
    """Videos of moving noise blocks (so H.264 has real work) and a manifest of 2 s segments."""
    import av

    per_video = int(VIDEO_S // SEGMENT_S) - 1
    n_videos = -(-num_clips // per_video)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (H // 8, W // 8, 3), dtype=np.uint8)
    samples = []
    for v in range(n_videos):
        vid = f"P01_{v + 1:02d}"
        path = root / "media" / f"{vid}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as out:
            s = out.add_stream("libx264", rate=FPS)
            s.width, s.height, s.pix_fmt = W, H, "yuv420p"
            s.options = {"preset": "ultrafast"}
            for i in range(int(VIDEO_S * FPS)):
                img = np.roll(base, (i + v) % (W // 8), axis=1).repeat(8, 0).repeat(8, 1)
                for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(pkt)
            for pkt in s.encode():
                out.mux(pkt)
        for j in range(per_video):
            if len(samples) == num_clips:
                break
            a = 0.5 + j * SEGMENT_S
            samples.append(Sample(sample_id=f"{vid}_{j}", video_id=vid, split="train",
                                  labels={"verb": j}, start_s=a, stop_s=a + SEGMENT_S, fps=FPS,
                                  media={"video": {"path": f"{vid}.mp4"}}))
    meta = ManifestMeta(dataset="bench", heads={"verb": per_video}, media_root="../media")
    return write_manifest(root / "manifest", meta, {"train": samples})


def prepared_batches(job: ExtractJob, device: torch.device):
    """The extractor and the job's clips, preprocessed and resident on the device, per batch
    (this also warms the page cache and the decoders for the pipeline runs)."""
    meta, samples = read_all(job.manifest_dir)
    model = create_extractor(job.extractor, random_init=True).to(device)
    build = InputBuilder(job.modality, model.spec, job.sampler, meta, job.manifest_dir)
    batches = []
    t0 = time.perf_counter()
    for i in range(0, len(samples), job.batch_size):
        items = [build(s) for s in samples[i:i + job.batch_size]]
        batches.append({k: torch.stack([x[k] for x in items]).to(device) for k in items[0]})
    return model, batches, len(samples), len(samples) / (time.perf_counter() - t0)


def forward_seconds(model, batches, theta: int, device: torch.device) -> float:
    """The bound: extractor (+ Θ-Average, as in the pipeline) over the prepared batches."""
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), amp:
        theta_average(model(batches[0]).float(), theta)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in batches:
            theta_average(model(b).float(), theta).cpu()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extractor", default="demo_swin3d_teacher")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-clips", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--num-frames", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--theta", type=int, default=16)  # < k = 32: Θ-Average does work here
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--fps", type=int, default=60)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_media(root, args.num_clips, args.width, args.height, args.fps)
        media_s = time.perf_counter() - t0
        job = ExtractJob(cache_path=str(root / "cache.zarr"), manifest_dir=str(manifest),
                         modality="video", extractor=args.extractor, random_init=True,
                         theta=args.theta, batch_size=args.batch_size, workers=args.workers,
                         device=args.device, shard_size=64,
                         sampler=ClipSampler(args.num_frames, 2, "k400"))
        model, batches, n, decode_cps = prepared_batches(job, device)
        fwd, pipe = [], []
        for r in range(args.rounds):  # alternate, so load changes hit both sides alike
            fwd.append(n / forward_seconds(model, batches, args.theta, device))
            result = run_extract(replace(job, cache_path=str(root / f"cache{r}.zarr")))
            pipe.append(result.ok / result.seconds)
    pipe_cps, fwd_cps = max(pipe), max(fwd)  # best of the rounds: the least disturbed
    report = {
        "benchmark": "extract",
        "extractor": args.extractor, "modality": "video", "device": str(device),
        "batch_size": args.batch_size, "num_clips": n, "num_frames": args.num_frames,
        "workers": args.workers, "theta": args.theta, "tokens_k": result.k,
        "tokens_stored": result.slots, "dim": result.dim, "failed": result.failed,
        "pipeline_clips_per_s": round(pipe_cps, 2), "forward_clips_per_s": round(fwd_cps, 2),
        "pipeline_over_forward": round(pipe_cps / fwd_cps, 3), "target": 0.85,
        "decode_preprocess_clips_per_s_one_process": round(decode_cps, 2),
        "rounds": {"pipeline_clips_per_s": [round(x, 2) for x in pipe],
                   "forward_clips_per_s": [round(x, 2) for x in fwd]},
        "media": f"H.264 {args.width}x{args.height} {args.fps} fps, {SEGMENT_S:g} s segments "
                 f"(generated in {media_s:.1f} s)",
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "load_avg_1m_before_after": [round(load_before, 2),
                                                 round(os.getloadavg()[0], 2)],
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
