"""Stage-2 training from the feature cache vs the same step with the frozen extractors online.

Both sides run the identical teacher training step (fusion block + MH-MLP, α·CE + β·InfoNCE,
AdamW) on the same batch size; they differ only in where the tokens come from:
  online  decode the media of each sample (RGB JPEG frames, flow u/v JPEGs, wav audio in the
          EPIC layout, written here), preprocess, run the frozen teacher extractors forward
          (no grad), Θ-Average, then the step: what every epoch costs without a cache
  cache   CacheBatches over a Zarr cache holding tokens of exactly the same (Θ, D) shapes
The speed-up per epoch is the ratio of the two samples/s (an epoch is N samples either way).

Two scales, each measured side by side in this run:
  demo    the demo recipe (its teacher extractors and clip policy: 8 frames, 64 px crops, Θ = 16,
          d = 128, l = 2), random extractor weights (speed does not depend on them)
  paper   the paper's teacher (Video Swin-B on 32×224×224 for video and flow, Swin-B on log-mel
          windows for audio, Θ = 300, d = 768, l = 2); online measured on a few clips only
Writes benchmarks/results/train.json (demo); MMKD_BENCH_PAPER=1 writes train_paper.json instead.

MMKD_BENCH_STEP=1 instead measures the training loop's own CPU time per step (`mmkd train
teacher` and `mmkd distill` through `mmkd.train.stage2`, demo recipe, synthetic cache, no
validation split) into train_step.json. It uses only that stable entry point, so the same file
measures an older checkout too (PYTHONPATH=<checkout>/src) for a before/after comparison.
One torch thread on each side by default (MMKD_BENCH_THREADS): the comparison stays fair and
stable on a shared machine.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import torch

import mmkd.train  # noqa: F401  (registers methods and builders)
from mmkd import config as C
from mmkd.cache import Cache
from mmkd.cache.loader import CacheBatches
from mmkd.datasets.manifest import ManifestMeta, Sample, manifest_hash
from mmkd.extract.extractors import create_extractor, get_spec
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.sampling import ClipSampler
from mmkd.extract.theta import theta_average
from mmkd.models import build_teacher
from mmkd.train.loop import make_optimizer
from mmkd.train.methods import TeacherMethod

OUT = Path(__file__).parent / "results" / "train.json"
HEADS = {"verb": 97, "noun": 300}
FPS, W, H, SR = 60, 456, 256, 24000
EPIC_TRAIN = 67217  # EPIC-KITCHENS-100 training segments, for the per-epoch figures


def write_media(root: Path, n_samples: int, seg_frames: int = 80) -> tuple[ManifestMeta, list]:
    """One EPIC-layout video (RGB + flow JPEG folders, wav) holding n_samples segments."""
    rng = np.random.default_rng(0)
    n_frames = n_samples * seg_frames + 2
    rgb, fu, fv = (root / "P01/rgb_frames/P01_01", root / "P01/flow_frames/P01_01/u",
                   root / "P01/flow_frames/P01_01/v")
    for d in (rgb, fu, fv):
        d.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    for i in range(1, n_frames + 1):
        cv2.imwrite(str(rgb / f"frame_{i:010d}.jpg"), np.roll(base, i, axis=1))
        if i <= (n_frames - 1) // 2:
            for d in (fu, fv):  # EPIC quantisation: 128 = no motion
                cv2.imwrite(str(d / f"frame_{i:010d}.jpg"),
                            rng.integers(100, 156, (H, W), dtype=np.uint8))
    (root / "P01/audio").mkdir(parents=True, exist_ok=True)
    pcm = (rng.normal(0, 3000, int(n_frames / FPS * SR) + SR)).astype(np.int16)
    with wave.open(str(root / "P01/audio/P01_01.wav"), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(SR)
        fh.writeframes(pcm.tobytes())
    media = {"rgb": {"dir": "P01/rgb_frames/P01_01", "template": "frame_%010d.jpg"},
             "flow": {"dir": "P01/flow_frames/P01_01", "template": "frame_%010d.jpg",
                      "stride": 2},
             "audio": {"path": "P01/audio/P01_01.wav"}}
    samples = [Sample(sample_id=f"P01_01_{i}", video_id="P01_01", split="train",
                      labels={"verb": i % 97, "noun": i % 300}, fps=FPS,
                      start_frame=1 + i * seg_frames, stop_frame=(i + 1) * seg_frames,
                      start_s=i * seg_frames / FPS, stop_s=(i + 1) * seg_frames / FPS,
                      media=media) for i in range(n_samples)]
    meta = ManifestMeta(dataset="bench", heads=HEADS, media_root=str(root))
    return meta, samples


def train_step(task, optimizer, batch) -> None:
    out = task.training_step(batch, epoch=0)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
    optimizer.step()


def setup(recipe: C.RecipeConfig, shapes: dict, n: int):
    from mmkd.train.methods.teacher import TeacherConfig

    torch.manual_seed(0)
    task = TeacherMethod(build_teacher(recipe.fusion, shapes, HEADS), TeacherConfig(),
                         recipe.train, n)
    return task, make_optimizer(task, recipe.train)


def online(recipe, meta, samples, clip: ClipSampler, theta: int, batch: int, batches: int,
           warmup: bool = True):
    """samples/s of decode + frozen extractors + Θ-Average + the training step."""
    extractors, builders = {}, {}
    for m, name in recipe.extractors.items():
        extractors[m] = create_extractor(name, random_init=True).eval().requires_grad_(False)
        builders[m] = InputBuilder(m, get_spec(name), clip, meta, str(meta.media_root))
    shapes, task, opt = None, None, None
    timings = {"decode_s": 0.0, "extract_s": 0.0, "step_s": 0.0}
    done = 0
    for b in range(0 if warmup else 1, batches + 1):  # batch 0 warms up and is not timed
        chunk = samples[(b * batch) % len(samples):][:batch]
        t0 = time.perf_counter()
        inputs = {m: [builders[m](s) for s in chunk] for m in extractors}
        inputs = {m: {k: torch.stack([x[k] for x in xs]) for k in xs[0]} for m, xs in
                  inputs.items()}
        t1 = time.perf_counter()
        with torch.no_grad():
            tokens = {m: theta_average(extractors[m](inputs[m]).float(), theta)
                      for m in extractors}
        t2 = time.perf_counter()
        if task is None:
            shapes = {m: tuple(t.shape[1:]) for m, t in tokens.items()}
            task, opt = setup(recipe, shapes, len(samples))
        b_ = len(chunk)
        batch_d = {"index": torch.arange(b_), "tokens": tokens,
                   "present": {m: torch.ones(b_, dtype=torch.bool) for m in tokens},
                   "labels": {"verb": torch.tensor([s.labels["verb"] for s in chunk]),
                              "noun": torch.tensor([s.labels["noun"] for s in chunk])}}
        train_step(task, opt, batch_d)
        t3 = time.perf_counter()
        if b:
            timings["decode_s"] += t1 - t0
            timings["extract_s"] += t2 - t1
            timings["step_s"] += t3 - t2
            done += b_
    total = sum(timings.values())
    return {"samples_per_s": done / total, "samples": done,
            **{k: round(v / done, 5) for k, v in timings.items()}}, shapes


def from_cache(root: Path, recipe, shapes: dict, n: int, batch: int, epochs: int = 2):
    """samples/s of CacheBatches + the identical training step, over whole epochs."""
    rng = np.random.default_rng(1)
    samples = [Sample(sample_id=f"c{i:05d}", video_id="v", split="train",
                      labels={"verb": i % 97, "noun": i % 300}) for i in range(n)]
    cache = Cache.create(root / "cache.zarr", samples, HEADS, manifest_hash(samples),
                         shard_size=min(128, n))
    for m, (k, d) in shapes.items():
        w = cache.feature_writer(m, recipe.extractors[m], k, d, {"weights_sha256": "0" * 64})
        for unit in w.units():
            idx = np.arange(unit.start, unit.stop)
            w.write(idx, rng.standard_normal((len(idx), k, d), np.float32).astype(np.float16),
                    np.full(len(idx), k), np.ones(len(idx), bool))
            w.finish_unit(unit)
    batches = CacheBatches(cache, {m: recipe.extractors[m] for m in shapes}, "train", batch,
                           shuffle=True, seed=0)
    task, opt = setup(recipe, shapes, n)
    for b in batches:  # warm-up: one step
        train_step(task, opt, b)
        break
    t0, done = time.perf_counter(), 0
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        for b in batches:
            train_step(task, opt, b)
            done += len(b["index"])
    return {"samples_per_s": done / (time.perf_counter() - t0), "samples": done}


def compare(name: str, recipe, clip, theta, batch, n_media, online_batches, n_cache,
            warmup: bool = True) -> dict:
    """Online and cache side by side at the same batch; the cache side also at the recipe's
    batch (the online side's per-sample cost is the extractors' forward, batch-independent)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        meta, samples = write_media(root / "media", n_media,
                                    seg_frames=max(80, clip.num_frames * clip.stride + 8))
        on, shapes = online(recipe, meta, samples, clip, theta, batch, online_batches, warmup)
        ca = from_cache(root / "same", recipe, shapes, n_cache, batch)
        ca_recipe = (from_cache(root / "recipe", recipe, shapes, n_cache, recipe.train.batch_size)
                     if recipe.train.batch_size != batch else ca)
    speedup = ca["samples_per_s"] / on["samples_per_s"]
    speedup_recipe = ca_recipe["samples_per_s"] / on["samples_per_s"]
    print(f"{name}: online {on['samples_per_s']:.3f} samples/s, cache "
          f"{ca['samples_per_s']:.1f} samples/s (batch {batch}) -> {speedup:.0f}x per epoch; "
          f"cache at batch {recipe.train.batch_size}: {speedup_recipe:.0f}x")
    return {"recipe": {"extractors": recipe.extractors, "clip": [clip.num_frames, clip.stride],
                       "theta": theta, "tokens_per_modality": shapes,
                       "fusion": C.to_dict(recipe.fusion), "batch": batch,
                       "recipe_batch": recipe.train.batch_size},
            "online": on, "cache": ca, "cache_recipe_batch": ca_recipe,
            "speedup_per_epoch": speedup, "speedup_per_epoch_recipe_batch": speedup_recipe,
            "epic100_epoch_hours": {"online": EPIC_TRAIN / on["samples_per_s"] / 3600,
                                    "cache": EPIC_TRAIN / ca_recipe["samples_per_s"] / 3600}}


def step_time(root: Path, n: int = 640, epochs: int = 4) -> dict:
    """ms per training step of the loop (epoch `time_s` excludes validation and the teacher's
    logits pass), mean over the epochs after the first, for the teacher and KARMMA_S."""
    from mmkd.train.stage2 import distill, train_teacher

    cfg = C.run_preset("demo")
    samples = [Sample(sample_id=f"c{i:05d}", video_id="v", split="train",
                      labels={"verb": i % 8, "noun": i % 12}) for i in range(n)]
    heads = {"verb": 8, "noun": 12}
    cache = Cache.create(root / "cache.zarr", samples, heads, manifest_hash(samples),
                         shard_size=128)
    rng = np.random.default_rng(0)
    theta = cfg.extract.theta
    for recipe in (cfg.teacher, cfg.student):
        recipe.train.epochs, recipe.train.warmup_epochs = epochs, 1
        for m, name in recipe.extractors.items():
            if (m, name) in set(cache.features()):
                continue
            d = get_spec(name).dim
            w = cache.feature_writer(m, name, theta, d, {"weights_sha256": "0" * 64})
            for unit in w.units():
                idx = np.arange(unit.start, unit.stop)
                w.write(idx, rng.standard_normal((len(idx), theta, d)).astype(np.float16),
                        np.full(len(idx), theta), np.ones(len(idx), bool))
                w.finish_unit(unit)
    out = {}
    for name, run in (("teacher", lambda d: train_teacher(root / "cache.zarr", cfg, d,
                                                          device="cpu")),
                      ("karmma", lambda d: distill(root / "cache.zarr", cfg, d, "karmma",
                                                   device="cpu"))):
        run(root / name)
        recs = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
        batch = (cfg.teacher if name == "teacher" else cfg.student).train.batch_size
        steps = -(-n // batch)
        ms = [1000 * r["time_s"] / steps for r in recs[1:]]
        out[name] = {"ms_per_step": float(np.mean(ms)), "ms_per_step_epochs": ms,
                     "batch": batch, "steps_per_epoch": steps}
        print(f"{name}: {out[name]['ms_per_step']:.2f} ms/step (batch {batch}, CPU)")
    return out


def main() -> None:
    """Demo scale by default (~1-2 min); MMKD_BENCH_PAPER=1 adds the paper scale (minutes on a
    CPU: one Swin-B forward on 32×224×224 takes ~45 s on 2 cores) into train_paper.json."""
    torch.set_num_threads(int(os.environ.get("MMKD_BENCH_THREADS", 1)))
    machine = {"cpu_count": os.cpu_count(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "device": "cpu",
               "platform": platform.platform(), "python": platform.python_version()}
    paper = os.environ.get("MMKD_BENCH_PAPER", "0") == "1"
    t0 = time.perf_counter()
    if os.environ.get("MMKD_BENCH_STEP", "0") == "1":
        with tempfile.TemporaryDirectory() as tmp:
            results = {"step": step_time(Path(tmp))}
        out = OUT.with_name("train_step.json")
    elif paper:
        p = C.run_preset("epic100")
        results = {"paper": compare("paper", p.teacher, ClipSampler(32, 2), 300, batch=1,
                                    n_media=1, online_batches=1, n_cache=64, warmup=False)}
        out = OUT.with_name("train_paper.json")
    else:
        demo = C.run_preset("demo")
        clip = ClipSampler(demo.clip.num_frames, demo.clip.frame_stride, demo.clip.sampling)
        results = {"demo": compare("demo", demo.teacher, clip, demo.extract.theta,
                                   batch=4, n_media=12, online_batches=2, n_cache=128)}
        out = OUT
    results.update(machine=machine, wall_s=round(time.perf_counter() - t0, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out} ({results['wall_s']} s)")


if __name__ == "__main__":
    main()
