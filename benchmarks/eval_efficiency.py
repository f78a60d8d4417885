"""Student vs teacher inference cost at paper sizes (target: student memory ≤ 50%).

One modality subset (default: V, Video Swin-B vs Video Swin-T on 32×224×224, Θ = 300, the EPIC
fusion blocks and heads, random weights, batch 1), each configuration in a fresh process
(`mmkd.eval.efficiency`), measured side by side in one run; the ratios are the result.
`MMKD_BENCH_SUBSETS="video;video+flow+audio"` picks subsets (each Swin-B forward takes tens of seconds on
2 CPU cores). `mmkd eval --protocol efficiency` measures every subset. Writes
benchmarks/results/eval_efficiency.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import torch

from mmkd import config as C
from mmkd.eval.efficiency import CostConfig, measure_all
from mmkd.registry import datasets
from mmkd.subsets import subset_label

OUT = Path(__file__).parent / "results" / "eval_efficiency.json"


def main() -> None:
    subsets = [s.split("+") for s in os.environ.get("MMKD_BENCH_SUBSETS", "video").split(";")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    base = C.run_preset("epic100")
    configs = [CostConfig(role=role, label=label, extractors=dict(getattr(base, role).extractors),
                          fusion=dataclasses.asdict(getattr(base, role).fusion),
                          heads=datasets.get("epic100").paper_heads, subset=subset, theta=300, num_frames=32,
                          device=device)
               for device in devices for subset in subsets
               for role, label in (("teacher", "KARMMA_T"), ("student", "KARMMA_S"))]
    t0 = time.perf_counter()
    results = measure_all(configs)
    rows = {}
    for cfg, cost, _ in results:
        rows.setdefault((cfg.device, subset_label(cfg.subset)), {})[cfg.role] = cost
    out = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                       "platform": platform.platform(),
                       "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
           "seconds": round(time.perf_counter() - t0, 1), "results": []}
    for (device, sub), r in rows.items():
        t, s = r["teacher"], r["student"]
        out["results"].append({
            "device": device, "modalities": sub,
            "teacher": dataclasses.asdict(t), "student": dataclasses.asdict(s),
            "student_over_teacher": {"memory": s.peak_mem_mib / t.peak_mem_mib,
                                     "gflops": s.gflops / t.gflops,
                                     "params": s.params_m / t.params_m},
            "target_memory_ratio_max": 0.5,
        })
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    for r in out["results"]:
        ratio = r["student_over_teacher"]
        print(f"{r['device']} {r['modalities']}: student/teacher memory {ratio['memory']:.2f}, "
              f"GFLOPs {ratio['gflops']:.2f}, params {ratio['params']:.2f}")


if __name__ == "__main__":
    main()
