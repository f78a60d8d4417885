"""Refactors of the training code must not change what it computes: teacher, karmma, baseline
and baseline-delta trained for a fixed seed on a tiny cache give the same checkpoints, bit for
bit, as the code that recorded `tests/fixtures/train_outputs_sha256.json`.

The hashes cover every tensor of best.safetensors (the kept weights), the model and optimizer
tensors of last.safetensors (the resumable state) and the teacher logits written into the cache.
Float results depend on the torch build and the CPU's kernels, so the file records where it was
made; after a deliberate change of what training computes, regenerate it with
`MMKD_REGEN_TRAIN_HASHES=1 pytest tests/unit/train/test_outputs_unchanged.py` and say why in
the commit.
"""

import hashlib
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers.train_cache import STUDENT, TEACHER, build_cache, fill, samples
from mmkd.cache import Cache
from mmkd.config import run_preset
from mmkd.train.stage2 import distill, train_teacher

EXPECTED = Path(__file__).parents[2] / "fixtures" / "train_outputs_sha256.json"
METHODS = ("karmma", "baseline", "baseline-delta")
N = 40


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _ckpt_digests(out_dir: Path) -> dict[str, str]:
    last = {k: v for k, v in load_file(str(out_dir / "last.safetensors")).items()
            if k.startswith(("model.", "optim."))}
    return {"best": _tensor_digest(load_file(str(out_dir / "best.safetensors"))),
            "last": _tensor_digest(last)}


def _cfg():
    cfg = run_preset("demo")
    for recipe in (cfg.teacher, cfg.student):
        f, t = recipe.fusion, recipe.train
        f.width, f.layers, f.mlp_hidden, f.heads = 16, 1, 16, 4
        t.epochs, t.batch_size, t.warmup_epochs, t.seed = 2, 8, 1, 3
    cfg.teacher.fusion.attn_dropout = 0.1  # exercises the RNG stream
    return cfg


def _digests(tmp: Path) -> dict[str, str]:
    torch.set_num_threads(1)
    cache = build_cache(tmp / "cache.zarr", n=N, theta=3, dim=8, features=dict(TEACHER))
    for j, (m, e) in enumerate(sorted(STUDENT.items())):
        fill(cache, m, e, samples(N), theta=2, dim=6, seed=40 + j)
    cfg = _cfg()
    out = {}
    train_teacher(tmp / "cache.zarr", cfg, tmp / "teacher", device="cpu")
    out.update({f"teacher.{k}": v for k, v in _ckpt_digests(tmp / "teacher").items()})
    cache = Cache.open(tmp / "cache.zarr")
    logits = {h: torch.from_numpy(np.ascontiguousarray(cache.teacher_logits("teacher", h)))
              for h in cache.heads}
    out["teacher.cached_logits"] = _tensor_digest(logits)
    for method in METHODS:
        distill(tmp / "cache.zarr", cfg, tmp / method, method=method, device="cpu")
        out.update({f"{method}.{k}": v for k, v in _ckpt_digests(tmp / method).items()})
    return out


def test_training_outputs_are_bit_identical(tmp_path):
    got = _digests(tmp_path)
    if os.environ.get("MMKD_REGEN_TRAIN_HASHES") == "1":
        EXPECTED.write_text(json.dumps({
            "made_with": {"torch": torch.__version__, "machine": platform.machine()},
            "sha256": got}, indent=2) + "\n")
    want = json.loads(EXPECTED.read_text())
    if want["made_with"]["torch"] != torch.__version__:
        pytest.skip(f"hashes recorded with torch {want['made_with']['torch']}")
    assert got == want["sha256"]
