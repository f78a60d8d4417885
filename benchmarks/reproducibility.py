"""Which stage's outputs change with the torch thread count, or with the CPU's kernels?

On a finished demo run (`--run`, e.g. a tiny `mmkd demo`), every variant re-runs three stages
from the same inputs, each in a fresh subprocess with the variant's settings, and hashes what
the stage writes:
  pretrain  the video teacher Swin, 1 epoch on the train split (its exported weights)
  extract   video tokens with the run's own pretrained teacher Swin (the tokens array)
  train     Baseline w/ δ from the run's cache, 3 epochs (the best checkpoint's weights)
Variants: torch threads 1, threads 2, and threads 1 with ATEN_CPU_CAPABILITY=avx2 (the kernels
a CPU without AVX-512 runs: a stand-in for another machine of the same kind). Threads 1 runs
twice, to show that a stage reproduces itself. Writes benchmarks/results/reproducibility.json
(or --out) and prints which stages differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {"threads1": {"threads": 1}, "threads1-again": {"threads": 1},
            "threads2": {"threads": 2}, "threads1-avx2": {"threads": 1, "isa": "avx2"}}
STAGES = ("pretrain", "extract", "train")


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def run_stage(stage: str, run: Path, work: Path) -> str:
    """One stage on a copy of the run's inputs, in this process; returns its output hash."""
    import numpy as np
    from safetensors.numpy import load_file

    from mmkd import config as C

    cfg = C.load(run / C.CONFIG_FILE)

    class Quiet:
        def __getattr__(self, name):
            return lambda *a, **k: None

    if stage == "pretrain":
        from mmkd.train.pretrain import pretrain_modality

        cfg.pretrain.train.epochs = 1
        name = cfg.teacher.extractors["video"]
        [res] = pretrain_modality(run, cfg, "video", Quiet(), extractors=[name], out_dir=work,
                                  workers=0, resume=False)
        weights = load_file(str(work / f"video-{name}.safetensors"))
        return _digest(weights[k] for k in sorted(weights))
    if stage == "extract":
        from mmkd.cache import Cache
        from mmkd.extract.runner import ExtractJob, run_extract
        from mmkd.extract.sampling import ClipSampler

        name = cfg.teacher.extractors["video"]
        job = ExtractJob(cache_path=str(work / "cache.zarr"), manifest_dir=str(run / "manifest"),
                         modality="video", extractor=name,
                         weights=str(run / cfg.teacher.weights["video"]), theta=cfg.extract.theta,
                         batch_size=cfg.extract.batch_size, workers=0, device="cpu",
                         shard_size=cfg.extract.shard_size,
                         sampler=ClipSampler(cfg.clip.num_frames, cfg.clip.frame_stride,
                                             cfg.clip.sampling))
        run_extract(job)
        cache = Cache.open(work / "cache.zarr")
        return _digest([np.asarray(cache.array("video", name, "tokens")[:])])
    if stage == "train":
        from mmkd.train.stage2 import distill

        cfg.student.train.epochs = 3
        distill(run / "cache.zarr", cfg, work / "student", method="baseline-delta", device="cpu")
        weights = load_file(str(work / "student" / "best.safetensors"))
        return _digest(weights[k] for k in sorted(weights))
    raise ValueError(stage)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished demo run (RUN_DIR)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "reproducibility.json")
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "WORKDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ["MMKD_REPRO_THREADS"]))
        print(json.dumps({"hash": run_stage(args.child[0], args.run, Path(args.child[1])),
                          "capability": torch.backends.cpu.get_cpu_capability()}))
        return
    results: dict[str, dict[str, dict[str, str]]] = {}
    for stage in args.stages.split(","):
        results[stage] = {}
        for variant, v in VARIANTS.items():
            env = {**os.environ, "MMKD_REPRO_THREADS": str(v["threads"]),
                   "OMP_NUM_THREADS": str(v["threads"])}
            if "isa" in v:
                env["ATEN_CPU_CAPABILITY"] = v["isa"]
            with tempfile.TemporaryDirectory() as tmp:
                out = subprocess.run([sys.executable, __file__, "--run", str(args.run),
                                      "--child", stage, tmp], env=env, check=True,
                                     capture_output=True, text=True).stdout
            results[stage][variant] = json.loads(out.strip().splitlines()[-1])
            print(stage, variant, results[stage][variant], flush=True)
    summary = {s: sorted({r["hash"] for r in by.values()}) for s, by in results.items()}
    for stage, by in results.items():
        same = {k: by[k]["hash"] == by["threads1"]["hash"] for k in by}
        print(f"{stage}: " + ", ".join(f"{k} {'=' if v else '≠'} threads1" for k, v in same.items()))
    args.out.write_text(json.dumps({"results": results, "distinct_hashes": summary}, indent=2)
                        + "\n")


if __name__ == "__main__":
    main()
