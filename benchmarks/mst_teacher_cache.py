"""MST-Distill stage 3 with the specialised teachers' logits read from the cache vs recomputed.

Stage 3 trains only the student and the GateNet; the specialised teachers (frozen members +
their MaskNets) give the same logits every epoch, so `mmkd distill --method mst` computes them
once after stage 2 and stores them as teachers/mst-<t>-<j>/logits. This measures one stage-3
training epoch (forward, loss, backward, AdamW) both ways, side by side, on a run where
`mmkd distill --method mst --modalities T` has finished stage 2:
  cached     CacheBatches with the target modality's tokens and the N cached teacher logits
  recompute  CacheBatches with every modality's tokens; before each step the N specialised
             teachers run forward (no grad) on the batch: what every epoch costs without the cache
The saving per epoch is the difference of the two (median of MMKD_BENCH_REPEATS epochs each).

  python benchmarks/mst_teacher_cache.py [RUN_DIR TARGET]   → benchmarks/results/mst_teacher_cache.json
Default runs/demo audio (`make bench`); a run without a finished stage 2 is skipped with a note.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import mmkd.train  # noqa: F401  (registers methods and builders)
from mmkd.rundir import find_run
from mmkd.train import checkpoint as ckpt
from mmkd.train.loop import make_optimizer
from mmkd.train.methods import BatchNeeds
from mmkd.train.methods.mst import MstMethod, teacher_id
from mmkd.train.mst_stages import stages

OUT = Path(__file__).parent / "results" / "mst_teacher_cache.json"


def main(run_dir: Path, target: str) -> dict:
    torch.set_num_threads(int(os.environ.get("MMKD_BENCH_THREADS", "1")))
    repeats = int(os.environ.get("MMKD_BENCH_REPEATS", "3"))
    run = find_run(run_dir)
    _, mst = stages(run.cache_path, run.cfg, target, run.dir / "students" / f"mst-{target}",
                    device="cpu")
    train2 = mst.train_cfg(mst.mcfg.stage2_epochs)
    mst.loaders(train2, BatchNeeds(), mst.features)  # the token shapes of every modality
    spec = mst.specialise_task(train2)
    tensors = load_file(str(mst.out / "stage2" / ckpt.LAST))
    spec.load_state_dict({k: v for k, v in tensors.items()
                          if not k.startswith(ckpt.STATE_PREFIXES)})
    spec.eval()
    ids = [teacher_id(target, j + 1) for j in range(len(spec.routes))]
    train = mst.recipe.train
    cached_b, _ = mst.loaders(train, BatchNeeds(logits=tuple(ids)),
                              {target: mst.features[target]})
    online_b, _ = mst.loaders(train, BatchNeeds(), mst.features)
    torch.manual_seed(0)
    task = MstMethod(mst.member([target]), mst.mcfg, train, mst.cache.n, teachers=ids).train()
    opt = make_optimizer(task, train)

    def epoch(batches, recompute: bool) -> float:
        t0 = time.perf_counter()
        for batch in batches:
            if recompute:
                present = {m: p.bool() for m, p in batch["present"].items()}
                with torch.no_grad():
                    batch["teachers"] = {tid: {"logits": spec.teacher_logits(
                        j, batch["tokens"], present), "features": {}}
                        for j, tid in enumerate(ids)}
            out = task.training_step(batch, 0)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
        return time.perf_counter() - t0

    cached, online = [], []
    for _ in range(repeats):  # interleaved, so load drifts hit both sides alike
        cached.append(epoch(cached_b, False))
        online.append(epoch(online_b, True))
    c, o = statistics.median(cached), statistics.median(online)
    return {"run": str(run_dir), "target": target, "teachers": len(ids),
            "train_samples": len(cached_b.indices), "batch_size": train.batch_size,
            "epoch_s_cached": round(c, 4), "epoch_s_recompute": round(o, 4),
            "saved_per_epoch_s": round(o - c, 4), "speedup": round(o / c, 3),
            "repeats": repeats, "threads": torch.get_num_threads(),
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "torch": torch.__version__}}


if __name__ == "__main__":
    run_dir, target = (Path(sys.argv[1]), sys.argv[2]) if len(sys.argv) == 3 else \
        (Path("runs/demo"), "audio")
    if not (run_dir / "students" / f"mst-{target}" / "stage2" / "done.json").exists():
        print(f"skipped: {run_dir} has no finished MST stage 2 for {target}; run `mmkd distill "
              f"--method mst --modalities {target} --cache {run_dir}` first")
        sys.exit(0)
    result = main(run_dir, target)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
