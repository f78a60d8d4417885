"""Stage 2 end to end: the teacher from its cached tokens (then its logits into the cache), and
students/baselines from theirs plus those logits. The CLI (`mmkd train teacher`, `mmkd distill`)
and `mmkd demo` call these two functions; both run unchanged under `torchrun` (DDP).

Output directories: RUN_DIR/teacher/ and RUN_DIR/students/<method>[-<m1+m2…>]/, see
`mmkd.train.checkpoint` for their files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkd import config as C
from mmkd.errors import MmkdError
from mmkd.registry import methods, models
from mmkd.train import checkpoint as ckpt
from mmkd.train import distributed as D
from mmkd.train.loop import FitResult, ProgressFn, autocast_for, fit, to_device

TEACHER_ID = "teacher"
VAL_SPLIT = "val"


@dataclass
class TeacherResult:
    fit: FitResult
    logits_shapes: dict[str, tuple[int, int]]  # head -> (N, C) written into the cache


def student_dir_name(method: str, modalities: list[str], all_modalities: list[str]) -> str:
    return method if modalities == all_modalities else f"{method}-{'+'.join(modalities)}"


def resolve_features(cache, extractors: dict[str, str], modalities: list[str], role: str
                     ) -> dict[str, str]:
    """modality -> extractor for a role; every group must be in the cache (one error for all)."""
    missing_cfg = [m for m in modalities if m not in extractors]
    if missing_cfg:
        raise MmkdError(f"{role}.extractors has no entry for {', '.join(missing_cfg)}; set "
                        f"{role}.extractors.{missing_cfg[0]}=NAME in mmkd.yaml")
    features = {m: extractors[m] for m in modalities}
    have = set(cache.features())
    absent = [(m, e) for m, e in features.items() if (m, e) not in have]
    if absent:
        fixes = "; ".join(f"`mmkd extract --modality {m} --extractor {e}`" for m, e in absent)
        raise MmkdError(f"{cache.path}: the {role} needs modality "
                        f"{', '.join(f'{m!r} (extractor {e!r})' for m, e in absent)}, absent from "
                        f"the cache; fill it with {fixes}")
    return features


def label_heads(cache, cfg: C.RunConfig) -> dict[str, int]:
    unknown = [h for h in cfg.data.heads if h not in cache.heads]
    if unknown:
        raise MmkdError(f"data.heads lists {unknown} but the cache has only "
                        f"{list(cache.heads)}; fix data.heads in mmkd.yaml")
    return {h: cache.heads[h] for h in cfg.data.heads}


def config_fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _train(cache, cfg: C.RunConfig, role: str, method_name: str, modalities: list[str],
           out_dir: Path, device: str | None, progress: ProgressFn | None, resume: bool,
           checkpoint_every: int, in_ram: bool, extra_meta: dict[str, Any]
           ) -> tuple[FitResult, Any, dict[str, str]]:
    from mmkd.cache.loader import CacheBatches

    recipe: C.RecipeConfig = getattr(cfg, role)
    tcfg = recipe.train
    features = resolve_features(cache, recipe.extractors, modalities, role)
    heads = label_heads(cache, cfg)
    method = methods.get(method_name)(tcfg, cache.n)
    rank, world = D.rank_world()
    if tcfg.batch_size % world:
        raise MmkdError(f"{role}.train.batch_size={tcfg.batch_size} is the global batch and must "
                        f"be divisible by the {world} processes")
    common = dict(features=features, seed=tcfg.seed, in_ram=in_ram,
                  teacher_id=TEACHER_ID if method.needs_teacher else None)
    train_b = CacheBatches(cache, split="train", batch_size=tcfg.batch_size // world,
                           shuffle=True, rank=rank, world_size=world, **common)
    val_b = (CacheBatches(cache, split=VAL_SPLIT, batch_size=tcfg.batch_size // world,
                          shuffle=False, rank=rank, world_size=world, **common)
             if VAL_SPLIT in set(cache.splits.tolist()) else None)
    shapes = {m: (r.theta, r.dim) for m, r in train_b.readers.items()}
    torch.manual_seed(tcfg.seed)
    model = models.get(role)(recipe.fusion, shapes, heads,
                             method.missing_strategy(recipe.fusion.missing_strategy))
    provenance = {m: cache.feature_provenance(m, e) for m, e in features.items()}
    meta = {"kind": role, "method": method_name, "modalities": modalities, "features": features,
            "model": model.spec.to_dict(), "heads": heads,
            "cache": {"path": str(cache.path), "manifest_hash": cache.manifest_hash},
            "feature_provenance": provenance, "config": C.to_dict(cfg), **extra_meta}
    meta["fingerprint"] = config_fingerprint(method=method_name, features=features, heads=heads,
                                       recipe=C.to_dict(recipe), manifest=cache.manifest_hash,
                                       provenance=provenance, **extra_meta)
    result = fit(method, model, train_b, val_b, tcfg, out_dir, meta, device=resolve_device(device),
                 progress=progress, resume=resume, checkpoint_every=checkpoint_every)
    return result, model, features


def train_teacher(cache_path: str | Path, cfg: C.RunConfig, out_dir: str | Path,
                  device: str | None = None, progress: ProgressFn | None = None,
                  resume: bool = True, checkpoint_every: int = 0, in_ram: bool = False,
                  predict_progress: Callable[[int], None] | None = None) -> TeacherResult:
    """Train KARMMA_T on the teacher extractors' tokens, keep the best epoch on `val`, and
    write its logits for every sample of every split into the cache (teachers/teacher)."""
    from mmkd.cache import Cache

    cache = Cache.open(cache_path, mode="r+")
    out_dir = Path(out_dir)
    result, model, features = _train(cache, cfg, "teacher", "teacher", list(cfg.data.modalities),
                                     out_dir, device, progress, resume, checkpoint_every, in_ram,
                                     {})
    shapes: dict[str, tuple[int, int]] = {}
    if D.rank_world()[0] == 0:
        best, meta = ckpt.load_model(out_dir, map_location=str(resolve_device(device)))
        logits = predict_logits(best, cache, features, resolve_device(device),
                                batch_size=cfg.teacher.train.batch_size,
                                precision=cfg.teacher.train.precision, progress=predict_progress)
        provenance = {"checkpoint": str((out_dir / ckpt.BEST).resolve()),
                      "weights_sha256": _file_sha256(out_dir / ckpt.BEST),
                      "epoch": meta["epoch"], "selected_by": meta["selected_by"],
                      "features": features, "fingerprint": meta["fingerprint"]}
        for head, logits_NC in logits.items():
            cache.write_teacher_logits(TEACHER_ID, head, logits_NC, provenance)
            shapes[head] = tuple(logits_NC.shape)
    if D.is_distributed():
        torch.distributed.barrier()
    return TeacherResult(result, shapes)


def distill(cache_path: str | Path, cfg: C.RunConfig, out_dir: str | Path,
            method: str = "karmma", modalities: list[str] | None = None,
            device: str | None = None, progress: ProgressFn | None = None, resume: bool = True,
            checkpoint_every: int = 0, in_ram: bool = False) -> FitResult:
    """Train a student (karmma) or a baseline on the student extractors' cached tokens."""
    from mmkd.cache import Cache

    if method == "teacher" or method not in methods:
        raise MmkdError(f"--method {method!r}: use karmma, baseline or baseline-delta")
    wanted = list(modalities or cfg.data.modalities)
    if not wanted or any(m not in cfg.data.modalities for m in wanted):
        raise MmkdError(f"--modalities {','.join(wanted)}: choose a non-empty subset of "
                        f"data.modalities ({','.join(cfg.data.modalities)})")
    mods = [m for m in cfg.data.modalities if m in wanted]  # the config's order, always
    cache = Cache.open(cache_path, mode="r")
    extra_meta: dict[str, Any] = {}
    if methods.get(method).needs_teacher:
        for head in label_heads(cache, cfg):
            cache.teacher_logits(TEACHER_ID, head)  # a clear error pointing to `train teacher`
        extra_meta["teacher_provenance"] = cache.teacher_provenance(TEACHER_ID)
    result, _, _ = _train(cache, cfg, "student", method, mods, Path(out_dir), device, progress,
                          resume, checkpoint_every, in_ram, extra_meta)
    return result


@torch.no_grad()
def predict_logits(model, cache, features: dict[str, str], device: torch.device,
                   batch_size: int = 64, precision: str = "auto",
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Logits (N, C) per head for every sample of the cache, all available modalities."""
    from mmkd.cache.loader import CacheBatches

    model.eval().to(device)
    out = {h: np.zeros((cache.n, c), np.float32) for h, c in model.spec.heads.items()}
    for split in sorted(set(cache.splits.tolist())):
        batches = CacheBatches(cache, features, split, batch_size, shuffle=False, seed=0)
        for batch in batches:
            batch = to_device(batch, device)
            with autocast_for(device, precision):
                res = model(batch["tokens"], batch["present"])
            idx = batch["index"].cpu().numpy()
            for h, logits_BC in res.logits.items():
                out[h][idx] = logits_BC.float().cpu().numpy()
            if progress is not None:
                progress(len(idx))
    return out
