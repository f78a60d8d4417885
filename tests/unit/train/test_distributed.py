"""DDP on CPU (gloo, 2 processes) reaches what 1 process reaches with the same global batch.

Same global batches: CacheBatches gives rank r the permuted positions r, r+2, …, so the union
of the ranks' k-th batches (4 + 4) is the single process's k-th batch of 8. The teacher method
gathers the InfoNCE negatives over ranks and modality dropout draws are per sample index, so
the loss is the same function; only float summation order differs (DDP averages two half-batch
gradients). Tolerance after 2 epochs / 8 steps: weights within 1e-5 (absolute; measured
~1.4e-6), metrics within 1e-5 (relative).
"""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

import mmkd.train  # noqa: F401
from helpers.train_cache import TEACHER, build_cache
from mmkd.cache import Cache
from mmkd.cache.loader import CacheBatches
from mmkd.config import TrainConfig, demo_teacher
from mmkd.models import build_teacher
from mmkd.train import checkpoint as ckpt
from mmkd.train.loop import fit
from mmkd.train.methods import TeacherMethod
from mmkd.train.methods.teacher import TeacherConfig

GLOBAL_BATCH = 8


def _run(rank: int, world: int, cache_path: str, out_dir: str, port: int) -> None:
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    cache = Cache.open(cache_path)
    cfg = TrainConfig(epochs=2, batch_size=GLOBAL_BATCH, lr_min=1e-4, lr_max=3e-3,
                      warmup_epochs=1, modality_dropout=0.5, seed=0)
    fusion = demo_teacher().fusion
    fusion.width, fusion.layers, fusion.mlp_hidden, fusion.attn_dropout = 16, 1, 16, 0.0
    kw = dict(seed=0, rank=rank, world_size=world)
    train = CacheBatches(cache, TEACHER, "train", GLOBAL_BATCH // world, shuffle=True, **kw)
    val = CacheBatches(cache, TEACHER, "val", GLOBAL_BATCH // world, shuffle=False, **kw)
    torch.manual_seed(0)
    model = build_teacher(fusion, {m: (r.theta, r.dim) for m, r in train.readers.items()},
                          cache.heads)
    fit(TeacherMethod(model, TeacherConfig(), cfg, cache.n), train, val, cfg, out_dir, {})
    if world > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    cache = build_cache(tmp_path / "cache.zarr", n=50, theta=3, dim=8)
    assert len(cache.indices("train")) % 2 == 0  # no padding: identical global batches
    _run(0, 1, str(cache.path), str(tmp_path / "one"), 0)
    mp.spawn(_run, args=(2, str(cache.path), str(tmp_path / "two"), _free_port()), nprocs=2,
             join=True)
    a = load_file(str(tmp_path / "one" / ckpt.LAST))
    b = load_file(str(tmp_path / "two" / ckpt.LAST))
    diff = max((a[k] - b[k]).abs().max().item() for k in a if k.startswith("model."))
    assert diff < 1e-5, diff  # measured: ~1.4e-6 (float summation order)
    ma = [json.loads(x) for x in (tmp_path / "one" / ckpt.METRICS).read_text().splitlines()]
    mb = [json.loads(x) for x in (tmp_path / "two" / ckpt.METRICS).read_text().splitlines()]
    for ra, rb in zip(ma, mb, strict=True):
        for key in ("train_loss", "train_loss_ce", "train_loss_infonce", "train_acc",
                    "val_loss", "val_acc", "val_acc_verb", "val_acc_noun"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key
