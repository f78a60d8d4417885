"""The README's "your own dataset" walkthrough, timed command by command, on generated stand-in
clips (`mmkd demo-data --format custom`), and a linear probe of every pretrained extractor's
cached tokens: how much of each head the tokens carry, the question `mmkd pretrain` must answer.

The probe: mean token per clip (after Θ-Average, as the cache holds them), standardised with the
train split's statistics, multinomial logistic regression (L-BFGS, L2 1e-3) fitted on train,
accuracy on val and test (test: speakers never seen). Chance is 1/classes.

    python benchmarks/custom_route.py [--clips 400] [--epochs 30] [--stlt-epochs 60] [--out DIR]

Writes benchmarks/results/custom_route.json (command wall times, probe accuracies, the eval
reports' top-1 accuracies).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmkd.cache import Cache

OUT = Path(__file__).parent / "results" / "custom_route.json"
MODALITIES = ("video", "flow", "audio", "detection")
EXTRACTORS = {"video": "small_convnet", "flow": "small_convnet", "audio": "small_convnet_audio",
              "detection": "small_stlt"}


def mmkd(*args: str, cwd: Path) -> float:
    """Run one `mmkd` command (as a user would: a fresh process); its wall time in seconds."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-c", "from mmkd.cli.app import main; main()", *args]
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"mmkd {' '.join(args)} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return time.perf_counter() - t0


def config(epochs: int) -> str:
    """The small-data settings (`mmkd init --size small` with the small extractors)."""
    weights = {m: f"pretrained/{m}-{e}.safetensors" for m, e in EXTRACTORS.items()}
    role = {"extractors": EXTRACTORS, "weights": weights}
    cfg = {
        "data": {"modalities": list(MODALITIES), "heads": ["verb", "noun"]},
        "clip": {"num_frames": 8, "frame_stride": 2, "sampling": "uniform"},
        "extract": {"theta": 16, "batch_size": 16, "shard_size": 64, "workers": 1},
        "teacher": {**role, "fusion": {"width": 128, "layers": 2, "heads": 8,
                                       "attn_dropout": 0.1, "mlp_hidden": 128},
                    "train": {"epochs": 15, "batch_size": 32, "lr_min": 1e-5, "lr_max": 1e-3,
                              "warmup_epochs": 2, "weight_decay": 0.05, "grad_clip": 1.0}},
        "student": {**role, "fusion": {"width": 64, "layers": 1, "heads": 8,
                                       "attn_dropout": 0.0, "mlp_hidden": 64},
                    "train": {"epochs": 40, "batch_size": 16, "lr_min": 1e-5, "lr_max": 1e-3,
                              "warmup_epochs": 2, "weight_decay": 0.01, "grad_clip": 2.0,
                              "modality_dropout": 0.5}},
        "pretrain": {"train": {"epochs": epochs, "batch_size": 32, "lr_min": 1e-5,
                               "lr_max": 1e-3, "warmup_epochs": 1, "weight_decay": 0.05,
                               "grad_clip": 1.0}},
    }
    return json.dumps(cfg)  # JSON is YAML


def add_flow_column(csv_path: Path, flow_root: str) -> Path:
    """The CSV with each clip's flow folder (as `mmkd flow --out` lays them out)."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["flow"] = f"{flow_root}/{r['participant']}/flow_frames/{r['video_id']}"
    out = csv_path.with_name("clips_flow.csv")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def mean_tokens(cache: Cache, modality: str, extractor: str, idx: np.ndarray
                ) -> tuple[torch.Tensor, np.ndarray]:
    """(mean token of the clips at `idx` that have this feature, their indices)."""
    r = cache.feature_reader(modality, extractor)
    out = torch.zeros(len(idx), r.theta, r.dim)
    present = r.read(idx, out).astype(bool)
    return out[torch.from_numpy(present)].mean(1), idx[present]


def probe(cache: Cache, modality: str, extractor: str) -> dict[str, dict[str, float]]:
    """{head: {split: accuracy}} of a linear classifier on the mean cached token."""
    x_tr, tr = mean_tokens(cache, modality, extractor, cache.indices("train"))
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    out: dict[str, dict[str, float]] = {}
    for head in cache.heads:
        labels = cache.labels(head)
        y = torch.from_numpy(labels[tr])
        a = (x_tr - mu) / sd
        w = torch.zeros(a.shape[1], int(labels.max()) + 1, requires_grad=True)
        b = torch.zeros(w.shape[1], requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=300)

        def closure(a=a, y=y, w=w, b=b, opt=opt):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(a @ w + b, y) + 1e-3 * (w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        out[head] = {}
        for split in ("train", "val", "test"):
            x, idx = mean_tokens(cache, modality, extractor, cache.indices(split))
            with torch.no_grad():
                pred = (((x - mu) / sd) @ w + b).argmax(1).numpy()
            out[head][split] = round(float((pred == labels[idx]).mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=30, help="pretrain epochs (convnets)")
    ap.add_argument("--stlt-epochs", type=int, default=60,
                    help="pretrain epochs of small_stlt (1 s each at 400 clips; it starts slowly)")
    ap.add_argument("--out", type=Path, default=None, help="keep the run here (default: temp)")
    ap.add_argument("--results", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = args.out or Path(tempfile.mkdtemp(prefix="mmkd-custom-route-"))
    root.mkdir(parents=True, exist_ok=True)
    run, times = root / "runs" / "clips", {}
    (root / "small.yaml").write_text(config(args.epochs))

    def step(name: str, *a: str) -> None:
        times[name] = round(mmkd(*a, cwd=root), 1)

    step("demo-data", "demo-data", "--format", "custom", "--clips", str(args.clips),
         "--out", "clips")
    step("init", "init", "runs/clips", "--dataset", "custom", "--config", "small.yaml")
    classes = ["--classes", "verb=clips/verbs.txt", "--classes", "noun=clips/nouns.txt"]
    step("manifest custom", "manifest", "custom", "--csv", "clips/clips.csv", *classes,
         "--out", "runs/clips/manifest")
    step("flow", "flow", "--manifest", "runs/clips/manifest", "--out", "clips/flow",
         "--method", "dis")
    flow_csv = add_flow_column(root / "clips" / "clips.csv", "flow")
    step("manifest custom (with flow)", "manifest", "custom", "--csv", str(flow_csv), *classes,
         "--out", "runs/clips/manifest")
    for m in MODALITIES:
        epochs = args.stlt_epochs if m == "detection" else args.epochs
        step(f"pretrain {m}", "pretrain", "--modality", m, "--epochs", str(epochs),
             "--cache", "runs/clips")
    for m in MODALITIES:
        step(f"extract {m}", "extract", "--modality", m, "--cache", "runs/clips")
    step("train teacher", "train", "teacher", "--cache", "runs/clips")
    step("distill", "distill", "--cache", "runs/clips")
    step("eval", "eval", "--cache", "runs/clips", "--protocol", "subsets")
    cache = Cache.open(run / "cache.zarr")
    probes = {m: probe(cache, m, EXTRACTORS[m]) for m in MODALITIES}
    reports = {p.name: json.loads(p.read_text()) for p in (run / "reports").glob("*.json")}
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version(), "torch": torch.__version__},
              "clips": args.clips, "pretrain_epochs": args.epochs,
              "stlt_epochs": args.stlt_epochs, "times_s": times,
              "probe_accuracy": probes, "chance": {h: round(1 / n, 3)
                                                   for h, n in cache.heads.items()},
              "reports": reports}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("times_s", "probe_accuracy")}, indent=1))
    if args.out is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
