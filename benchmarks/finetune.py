"""Stage 3 step cost: the training step with trainable extractors vs stage 2's from the cache,
and what gradient checkpointing / micro-batch accumulation save and cost, side by side.

Setup: the demo student (demo_swin3d_student on 8×64×64 video, demo_ast_student on 100×64
fbanks, fusion width 64, Θ = 16), one batch of 16 on already-decoded inputs (decoding is
measured separately by `mmkd finetune` on the demo; see the README), AdamW step included.
  stage2        FusionModel on the cached (Θ-averaged) tokens of both modalities
  stage3        EndToEndStudent fine-tuning video + audio: forward, backward, step
  +ckpt         with gradient checkpointing over the extractors' blocks
  +accum N      extractors in N micro-batches
Memory is the activation memory kept for backward outside checkpointed regions (bytes packed
by autograd's saved-tensor hooks), device-independent; backward recomputes one region at a time,
so with accumulation the peak adds one micro-batch's activations, measured on the plain model
with BATCH / N samples (`peak_activation_mb`); with +ckpt alone the peak also adds one block's
recomputed activations, which this does not count. Configurations are timed round-robin
(one step each per round, median over rounds) so a shared machine's load hits them alike; one
torch thread (OpenMP threads spin badly on oversubscribed cores).
Writes benchmarks/results/finetune.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from mmkd.extract.extractors import create_extractor
from mmkd.extract.theta import n_out
from mmkd.models import FusionModel, ModelSpec
from mmkd.train.finetune_data import RawInputs
from mmkd.train.finetune_model import EndToEndStudent, enable_grad_checkpointing

BATCH, FRAMES, THETA, ROUNDS = 16, 8, 16, 4
OUT = Path(__file__).parent / "results" / "finetune.json"
EXTRACTORS = {"video": "demo_swin3d_student", "audio": "demo_ast_student"}


def build(accum: int = 1, ckpt: bool = False) -> EndToEndStudent:
    torch.manual_seed(0)
    ext = {m: create_extractor(n, random_init=True).requires_grad_(True)
           for m, n in EXTRACTORS.items()}
    model = EndToEndStudent(spec(ext), ext, {m: THETA for m in ext}, accum_steps=accum)
    if ckpt:
        for e in ext.values():
            enable_grad_checkpointing(e)
    return model


def spec(ext) -> ModelSpec:
    return ModelSpec(modalities={m: [n_out(e.spec.n_tokens(FRAMES), THETA), e.spec.dim]
                                 for m, e in ext.items()},
                     heads={"verb": 8, "noun": 13}, width=64, layers=1, n_heads=8, mlp_hidden=64)


def batch(ext_specs) -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(0)
    v, a = ext_specs["video"], ext_specs["audio"]
    raw = {"video": RawInputs(frames=torch.randn(BATCH, 3, FRAMES, v.crop, v.crop, generator=g)),
           "audio": RawInputs(fbank=torch.randn(BATCH, a.target_frames, a.n_mels, generator=g))}
    present = {m: torch.ones(BATCH, dtype=torch.bool) for m in raw}
    labels = {"verb": torch.randint(0, 8, (BATCH,), generator=g),
              "noun": torch.randint(0, 13, (BATCH,), generator=g)}
    return raw, present, labels


def step(model, tokens, present, labels, opt) -> None:
    out = model(tokens, present)
    loss = sum(torch.nn.functional.cross_entropy(out.logits[h], labels[h]) for h in labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def timed_rounds(runs: dict[str, tuple]) -> dict[str, float]:
    """Median seconds per training step of each (model, tokens) configuration."""
    opts = {}
    for name, (model, tokens, present, labels) in runs.items():
        model.train()
        opts[name] = torch.optim.AdamW(model.parameters(), lr=1e-4)
        step(model, tokens, present, labels, opts[name])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(ROUNDS):
        for name, (model, tokens, present, labels) in runs.items():
            t0 = time.perf_counter()
            step(model, tokens, present, labels, opts[name])
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def saved_mb(model, tokens, present) -> float:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens, present)
    return total / 2**20


def main() -> None:
    torch.set_num_threads(int(os.environ.get("MMKD_BENCH_THREADS", 1)))
    base = build()
    raw, present, labels = batch({m: e.spec for m, e in base.extractors.items()})
    base.eval()
    with torch.no_grad():
        cached = base.encode(raw, present)  # the tokens stage 1 would have cached
    runs = {"stage2": (FusionModel(base.spec), cached, present, labels)}
    for name, kw in (("stage3", {}), ("stage3+ckpt", {"ckpt": True}),
                     ("stage3+accum2", {"accum": 2}), ("stage3+accum4", {"accum": 4}),
                     ("stage3+ckpt+accum4", {"ckpt": True, "accum": 4})):
        runs[name] = (build(**kw), raw, present, labels)
    seconds = timed_rounds(runs)
    results = {name: {"s_per_step": seconds[name],
                      "saved_activation_mb": saved_mb(model, tokens, p)}
               for name, (model, tokens, p, _) in runs.items()}
    plain = runs["stage3"][0]
    for name, (model, *_rest) in runs.items():
        n = getattr(model, "accum_steps", 1)
        micro = {m: RawInputs(x.select(torch.arange(BATCH // n))) for m, x in raw.items()}
        sub = {m: p[:BATCH // n] for m, p in present.items()}
        extra = saved_mb(plain, micro, sub) if n > 1 else 0.0
        results[name]["peak_activation_mb"] = results[name]["saved_activation_mb"] + extra
    ref = results["stage3"]
    for r in results.values():
        r["time_vs_stage3"] = r["s_per_step"] / ref["s_per_step"]
        r["memory_vs_stage3"] = r["peak_activation_mb"] / ref["peak_activation_mb"]
    doc = {"benchmark": "finetune", "batch": BATCH, "extractors": EXTRACTORS,
           "stage3_over_stage2_time": ref["s_per_step"] / results["stage2"]["s_per_step"],
           "results": results,
           "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                       "python": platform.python_version(), "device": "cpu",
                       "torch_threads": torch.get_num_threads()}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:20s} {r['s_per_step'] * 1000:8.1f} ms/step ({r['time_vs_stage3']:.2f}×)  "
              f"{r['saved_activation_mb']:8.1f} MB kept, peak {r['peak_activation_mb']:8.1f} MB "
              f"({r['memory_vs_stage3']:.2f}×)")


if __name__ == "__main__":
    main()
