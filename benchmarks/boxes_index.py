"""Something-Else boxes at full size: the whole JSON per process vs the box store read per video.

A box file in the official layout ({video_id: [frames]}, every field the real files carry, about
22 kB a video as in the real ones) of --size-mb MB (default 1024, one of the four official parts)
is generated in a temporary folder. Each variant then runs in a fresh subprocess, which reports
its own peak RSS (getrusage maxrss) and seconds:
  imports   the interpreter with mmkd's box modules imported, nothing read (the RSS floor)
  before    a decode worker's first batch read from the JSON file (read whole, parsed, kept)
  index     the one-time conversion into a store (mmkd.datasets.box_store.index_boxes)
  after     a decode worker's first batch read from the store (opened lazily, one video each),
            then --more random videos for the per-video read rate
Both readers go through mmkd.datasets.box_store.read_boxes, the call the detection reader makes.
Writes benchmarks/results/boxes_index.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "boxes_index.json"
OBJECTS = ["cup", "pillow", "motorcycle seat", "phone", "lid", "paper", "bottle", "remote"]


def write_official_layout(path: Path, size_mb: float, seed: int = 0) -> int:
    """Stream videos into `path` until it holds `size_mb` MB; returns the number of videos."""
    rng = np.random.default_rng(seed)
    target, written, n = int(size_mb * 1e6), 0, 0
    with open(path, "w") as fh:
        fh.write("{")
        while written < target:
            vid = str(1 + n * 7)
            n_obj = int(rng.integers(1, 4))
            names = [OBJECTS[i] for i in rng.choice(len(OBJECTS), n_obj, replace=False)]
            frames = []
            for f in range(1, int(rng.integers(20, 60)) + 1):
                labels = [{"box2d": {"y1": float(rng.uniform(0, 120)), "y2": float(rng.uniform(120, 240)),
                                     "x1": float(rng.uniform(0, 200)), "x2": float(rng.uniform(200, 427))},
                           "gt_annotation": f"object {j}", "category": name,
                           "standard_category": f"{j:04d}"} for j, name in enumerate(names)]
                labels.append({"box2d": {"y1": float(rng.uniform(0, 120)), "y2": 239.0, "x1": 0,
                                         "x2": float(rng.uniform(100, 427))},
                               "gt_annotation": "object hand", "category": "hand",
                               "standard_category": "hand"})
                frames.append({"url": "https://scalabel-something-else.s3-us-west-2.amazonaws.com/"
                                      f"annotated_frames/{vid}/{f:04d}.jpg",
                               "split": "80perc_99", "gt_placeholders": names, "name": f"{vid}/{f:04d}.jpg",
                               "nr_instances": len(labels), "task_index": int(rng.integers(0, 5000)),
                               "labels": labels})
            chunk = ("" if n == 0 else ", ") + json.dumps(vid) + ": " + json.dumps(frames)
            fh.write(chunk)
            written += len(chunk)
            n += 1
        fh.write("}")
    return n


def child(variant: str, json_path: Path, store: Path, keys_file: Path) -> dict:
    """One variant in this (fresh) process; its peak RSS is this process's maxrss. Seconds count
    from after the imports (a decode worker has them preloaded); `imports_s` is their cost."""
    t0 = time.perf_counter()
    import h5py  # noqa: F401  (imported lazily by the store; timed here, not in the batch)
    import ijson  # noqa: F401

    from mmkd.datasets.box_store import index_boxes, read_boxes

    keys = json.loads(keys_file.read_text())
    batch, more = keys["batch"], keys["more"]
    out: dict = {"imports_s": round(time.perf_counter() - t0, 3)}
    t0 = time.perf_counter()
    if variant == "index":
        report = index_boxes([json_path], store)
        out.update(videos=report.videos, store_bytes=report.store_bytes)
    elif variant in ("before", "after"):
        source = json_path if variant == "before" else store
        frames = [read_boxes(source, batch[0])]
        out["first_video_s"] = round(time.perf_counter() - t0, 4)
        frames += [read_boxes(source, k) for k in batch[1:]]
        out["boxes_in_batch"] = sum(len(f.boxes) for v in frames for f in v)
        assert all(frames), "a batch video has no boxes"
    out["seconds"] = round(time.perf_counter() - t0, 4)  # index: build; else: first batch
    if variant == "after":
        t1 = time.perf_counter()
        for k in more:
            read_boxes(store, k)
        out["videos_per_s"] = round(len(more) / (time.perf_counter() - t1), 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def run_child(variant: str, json_path: Path, store: Path, keys_file: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--json", str(json_path),
                           "--store", str(store), "--keys", str(keys_file)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=1024)
    ap.add_argument("--batch", type=int, default=32, help="videos in a decode worker's batch")
    ap.add_argument("--more", type=int, default=2000, help="videos read for the per-video rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", choices=["imports", "before", "index", "after"], help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.json, args.store, args.keys)))
        return

    import h5py
    import ijson

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        json_path, store = root / "bounding_box_smthsmth_part1.json", root / "boxes.h5"
        t0 = time.perf_counter()
        n_videos = write_official_layout(json_path, args.size_mb, args.seed)
        gen_s = time.perf_counter() - t0
        rng = np.random.default_rng(args.seed)
        ids = [str(1 + i * 7) for i in range(n_videos)]
        keys_file = root / "keys.json"
        keys_file.write_text(json.dumps({
            "batch": [ids[i] for i in rng.choice(n_videos, min(args.batch, n_videos), replace=False)],
            "more": [ids[i] for i in rng.integers(0, n_videos, args.more)]}))
        res = {v: run_child(v, json_path, store, keys_file)
               for v in ("imports", "before", "index", "after")}
        json_bytes = json_path.stat().st_size
    before, after, index = res["before"], res["after"], res["index"]
    report = {
        "benchmark": "boxes_index",
        "json": {"mb": round(json_bytes / 1e6, 1), "videos": n_videos,
                 "layout": "official Something-Else {video_id: [frames]}, every field",
                 "generated_s": round(gen_s, 1)},
        "batch_videos": args.batch,
        "variants": res,
        "ratios": {"first_batch_seconds_before_over_after": round(before["seconds"] / after["seconds"], 1),
                   "peak_rss_before_over_after": round(before["peak_rss_mb"] / after["peak_rss_mb"], 2),
                   "store_over_json_bytes": round(index["store_bytes"] / json_bytes, 3)},
        "index_mb_per_s": round(json_bytes / 1e6 / index["seconds"], 1),
        "note": "each variant in a fresh subprocess; peak_rss_mb is that process's maxrss, "
                "'imports' is the floor every variant pays",
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "ijson_backend": ijson.backend,
                    "h5py": h5py.__version__,
                    "load_avg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
