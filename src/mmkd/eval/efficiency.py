"""Inference cost of teacher vs student per modality subset (Fig. 5): parameters, GFLOPs, peak memory.

What is measured is the whole inference path from raw inputs: the extractors of the modalities
present (absent ones are not run), Θ-Average, the fusion block and the MH-MLP, at batch 1 with
random weights (cost does not depend on the weights). Paper sizes: Video Swin-B/T on
32×224×224, Swin-B on log-mel windows / AST-Tiny on 1024 fbank frames, STLT-12/9, Θ = 300.

- parameters: of the modules that run (present extractors + the whole fusion model);
- GFLOPs: `torch.utils.flop_counter.FlopCounterMode` over one forward, 10⁹ FLOPs with one
  multiply-add = 2 FLOPs (it counts matmuls, convolutions and attention; element-wise ops are
  not counted, they are a small share for these models);
- peak memory on CUDA: `torch.cuda.max_memory_allocated` over build + forward (weights, inputs
  and activations as the caching allocator sees them);
- peak memory on CPU: every configuration runs in a fresh Python process; after the model and
  its inputs are built, freed heap is returned to the OS (`malloc_trim`) and the kernel's
  resident-set high-water mark is reset (`/proc/self/clear_refs` ← 5, Linux ≥ 4.0); the peak
  is then `VmHWM` after the forward minus the process's RSS before the model was built, i.e.
  weights + inputs + activations + allocator overhead, comparable to the CUDA number. Code
  pages that the first forward maps (oneDNN kernels) are included; they are tens of MiB.

Subsets that run the same multiset of extractors cost the same (e.g. V and F share Swin-B), so
each distinct multiset is measured once and reused; the table says which rows are reused.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkd.errors import MmkdError
from mmkd.subsets import subset_label

WORKER_MODULE = "mmkd.eval.efficiency"


@dataclass
class CostConfig:
    """One model at one modality subset on one device (JSON-able: it crosses a process boundary)."""

    role: str  # "teacher" | "student"
    label: str  # "KARMMA_T" | "KARMMA_S"
    extractors: dict[str, str]  # every modality of the model -> extractor name
    fusion: dict[str, Any]  # FusionConfig fields
    heads: dict[str, int]
    subset: list[str]  # modalities present (their extractors run)
    theta: int
    num_frames: int
    device: str = "cpu"
    batch_size: int = 1


@dataclass
class Cost:
    params_m: float  # millions of parameters that run
    gflops: float
    peak_mem_mib: float
    memory_method: str


def build_pipeline(cfg: CostConfig) -> tuple[Any, dict[str, Any], float]:
    """(module, inputs, params in millions): extractors of `subset` → Θ-Average → fusion."""
    import torch
    from torch import nn

    import mmkd.models  # noqa: F401  (registers the builders)
    from mmkd.config import FusionConfig
    from mmkd.extract.extractors import create_extractor, get_spec
    from mmkd.extract.input_kinds import example_inputs
    from mmkd.extract.theta import n_out, theta_average
    from mmkd.registry import models

    device = torch.device(cfg.device)
    specs = {m: get_spec(name) for m, name in cfg.extractors.items()}
    shapes = {m: (n_out(s.n_tokens(cfg.num_frames), cfg.theta), s.dim) for m, s in specs.items()}
    fusion = models.get(cfg.role)(FusionConfig(**cfg.fusion), shapes, cfg.heads)
    extractors = nn.ModuleDict({m: create_extractor(cfg.extractors[m], random_init=True)
                                for m in cfg.subset})

    class Pipeline(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.extractors, self.fusion = extractors, fusion

        def forward(self, inputs: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
            tokens, present = {}, {}
            for m, (k, dim) in shapes.items():
                if m in self.extractors:
                    tokens[m] = theta_average(self.extractors[m](inputs[m]), cfg.theta)
                    present[m] = torch.ones(cfg.batch_size, dtype=torch.bool, device=device)
                else:
                    tokens[m] = torch.zeros(cfg.batch_size, k, dim, device=device)
                    present[m] = torch.zeros(cfg.batch_size, dtype=torch.bool, device=device)
            return self.fusion(tokens, present).logits

    model = Pipeline().to(device).eval()
    inputs = {m: {k: v.to(device) for k, v in
                  example_inputs(specs[m], cfg.num_frames, cfg.batch_size).items()}
              for m in cfg.subset}
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return model, inputs, params


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise MmkdError(f"/proc/self/status has no {key}; CPU peak memory needs Linux")


def _reset_peak_rss() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def measure(cfg: CostConfig) -> Cost:
    """Build and run one configuration in this process (call it in a fresh process on CPU)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import mmkd.extract.extractors  # noqa: F401  (imports before the baseline RSS is read)
    import mmkd.models  # noqa: F401

    cuda = cfg.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(cfg.device)
        base = torch.cuda.memory_allocated(cfg.device)
    else:
        base = _status_kib("VmRSS") * 1024
    model, inputs, params = build_pipeline(cfg)
    if not cuda:
        _reset_peak_rss()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(inputs)
    if cuda:
        torch.cuda.synchronize(cfg.device)
        peak = torch.cuda.max_memory_allocated(cfg.device) - base
        method = "torch.cuda.max_memory_allocated"
    else:
        peak = _status_kib("VmHWM") * 1024 - base
        method = "peak RSS (VmHWM after reset) minus RSS before build, fresh process"
    return Cost(params_m=params, gflops=counter.get_total_flops() / 1e9,
                peak_mem_mib=peak / 2**20, memory_method=method)


def measure_in_subprocess(cfg: CostConfig, timeout_s: float = 1800) -> Cost:
    """Run `measure` in a fresh interpreter so no earlier allocation blurs the peak."""
    with tempfile.TemporaryDirectory(prefix="mmkd-eff-") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(dataclasses.asdict(cfg)))
        proc = subprocess.run([sys.executable, "-m", WORKER_MODULE, str(src), str(dst)],
                              capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0 or not dst.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise MmkdError(f"efficiency measurement of {cfg.label} {'+'.join(cfg.subset)} on "
                            f"{cfg.device} failed (exit {proc.returncode}): " + " | ".join(tail))
        return Cost(**json.loads(dst.read_text()))


def measure_all(configs: list[CostConfig], fresh_process: bool = True,
                progress: Callable[[int], None] | None = None) -> list[tuple[CostConfig, Cost, str]]:
    """Measure each distinct configuration once; returns (config, cost, reused-from label)."""
    done: dict[tuple, tuple[Cost, str]] = {}
    out = []
    for cfg in configs:
        key = (cfg.role, cfg.device, tuple(sorted(cfg.extractors[m] for m in cfg.subset)))
        if key in done:
            cost, source = done[key]
            out.append((cfg, cost, source))
        else:
            cost = measure_in_subprocess(cfg) if fresh_process else measure(cfg)
            done[key] = (cost, subset_label(cfg.subset))
            out.append((cfg, cost, ""))
        if progress is not None:
            progress(1)
    return out


def _worker_main(argv: list[str]) -> None:
    src, dst = Path(argv[1]), Path(argv[2])
    cost = measure(CostConfig(**json.loads(src.read_text())))
    dst.write_text(json.dumps(dataclasses.asdict(cost)))


if __name__ == "__main__":
    _worker_main(sys.argv)
