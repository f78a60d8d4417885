"""Stage 2 end to end: teachers from their cached tokens (then their logits, and optionally
pooled features, into the cache), and students/baselines from theirs plus what their method
reads from the cache. The CLI (`mmkd train teacher`, `mmkd distill`) and `mmkd demo` call these
two functions; both run unchanged under `torchrun` (DDP).

Output directories: RUN_DIR/teacher/ (RUN_DIR/teachers/<id>/ for other named teachers) and
RUN_DIR/students/<method>[-<m1+m2…>]/, see `mmkd.train.checkpoint` for their files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkd import config as C
from mmkd.errors import MmkdError
from mmkd.files import sha256_file
from mmkd.registry import models
from mmkd.train import checkpoint as ckpt
from mmkd.train import distributed as D
from mmkd.train.loop import FitResult, ProgressFn, autocast_for, to_device
from mmkd.train.methods import BatchNeeds, student_methods
from mmkd.train.runs import (
    TRAIN_SPLIT,
    VAL_SPLIT,
    build_task,
    fit_run,
    label_heads,
    method_class,
    resolve_device,
)

TEACHER_ID = "teacher"  # the default teacher: what karmma and kd distil from


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


def cache_batches(cache, features: dict[str, str], train: C.TrainConfig, needs: BatchNeeds,
                  in_ram: bool = False):
    """Train (shuffled) and val (None when the cache has no val split) loaders of this rank."""
    from mmkd.cache.loader import CacheBatches

    rank, world = D.rank_world()
    common = dict(features=features, seed=train.seed, in_ram=in_ram, needs=needs,
                  batch_size=train.batch_size // world, rank=rank, world_size=world)
    train_b = CacheBatches(cache, split=TRAIN_SPLIT, shuffle=True, **common)
    val_b = (CacheBatches(cache, split=VAL_SPLIT, shuffle=False, **common)
             if VAL_SPLIT in set(cache.splits.tolist()) else None)
    return train_b, val_b


def _train(cache, cfg: C.RunConfig, role: str, method_name: str, modalities: list[str],
           out_dir: Path, device: str | None, progress: ProgressFn | None, resume: bool,
           checkpoint_every: int, in_ram: bool, extra_meta: dict[str, Any]
           ) -> tuple[FitResult, Any, dict[str, str]]:
    recipe: C.RecipeConfig = getattr(cfg, role)
    features = resolve_features(cache, recipe.extractors, modalities, role)
    heads = label_heads(cache, cfg)
    cls, mcfg = method_class(method_name, cfg)
    needs = cls.needs(mcfg)
    check_teachers(cache, needs, heads)
    train_b, val_b = cache_batches(cache, features, recipe.train, needs, in_ram)
    shapes = {m: (r.theta, r.dim) for m, r in train_b.readers.items()}
    task = build_task(method_name, cfg, recipe.train, cache.n,
                      lambda s: models.get(role)(recipe.fusion, shapes, heads, s),
                      recipe.fusion.missing_strategy)
    provenance = {m: cache.feature_provenance(m, e) for m, e in features.items()}
    teachers = {t: cache.teacher_provenance(t) for t in needs.teachers}
    meta = {"kind": role, "modalities": modalities, "features": features, "heads": heads,
            "cache": {"path": str(cache.path), "manifest_hash": cache.manifest_hash},
            "feature_provenance": provenance, **extra_meta}
    if teachers:
        meta["teacher_provenance"] = teachers[needs.teachers[0]] if len(teachers) == 1 \
            else teachers
    result = fit_run(task, train_b, val_b, recipe.train, cfg, out_dir, meta,
                     {"features": features, "heads": heads, "fusion": C.to_dict(recipe.fusion),
                      "manifest": cache.manifest_hash, "provenance": provenance,
                      "teachers": teachers, **extra_meta},
                     device, progress, resume, checkpoint_every)
    return result, task.model, features


def check_teachers(cache, needs: BatchNeeds, heads: dict[str, int]) -> None:
    """Every teacher output the method reads is in the cache (errors point to `train teacher`)."""
    for kind in ("kv", "features"):  # first: their fix names the flag that writes them too
        for t, m in getattr(needs, kind):
            cache.require_teacher_output(t, kind, m)
    for t in needs.logits:
        for head in heads:
            cache.require_teacher_output(t, "logits", head)


def teacher_dir(run_dir: Path, teacher_id: str) -> Path:
    """RUN_DIR/teacher for the default teacher, RUN_DIR/teachers/<id> for the others."""
    return run_dir / "teacher" if teacher_id == TEACHER_ID else run_dir / "teachers" / teacher_id


def train_teacher(cache_path: str | Path, cfg: C.RunConfig, out_dir: str | Path,
                  device: str | None = None, progress: ProgressFn | None = None,
                  resume: bool = True, checkpoint_every: int = 0, in_ram: bool = False,
                  predict_progress: Callable[[int], None] | None = None,
                  teacher_id: str = TEACHER_ID, modalities: list[str] | None = None,
                  write_features: bool = False, write_outputs: bool = True,
                  write_kv: bool = False) -> TeacherResult:
    """Train KARMMA_T on the teacher extractors' tokens (all of data.modalities, or a subset for
    a unimodal / cross-modal teacher), keep the best epoch on `val`, and write its logits (and,
    with `write_features`, its pooled per-modality features; with `write_kv`, its normalised
    per-modality Kᵀ V for dcat) for every sample of every split into the cache under
    teachers/<teacher_id> (not with `write_outputs` False: the extra seeds of a teacher trained
    with several, whose students distil from the first)."""
    from mmkd.cache import Cache
    from mmkd.cache.schema import check_name

    check_name("teacher", teacher_id)  # before training, not when its outputs are written
    mods = _subset(modalities, cfg)
    cache = Cache.open(cache_path, mode="r+")
    out_dir = Path(out_dir)
    extra = {} if teacher_id == TEACHER_ID else {"teacher_id": teacher_id}
    result, _, features = _train(cache, cfg, "teacher", "teacher", mods, out_dir, device,
                                 progress, resume, checkpoint_every, in_ram, extra)
    shapes: dict[str, tuple[int, int]] = {}
    if write_outputs and D.rank_world()[0] == 0:
        dev = resolve_device(device)
        best, meta = ckpt.load_model(out_dir, map_location=str(dev))
        outputs = predict_cache(best, cache, features, dev,
                                batch_size=cfg.teacher.train.batch_size,
                                precision=cfg.teacher.train.precision,
                                progress=predict_progress, with_features=write_features,
                                with_kv=write_kv)
        provenance = {"checkpoint": str((out_dir / ckpt.BEST).resolve()),
                      "weights_sha256": sha256_file(out_dir / ckpt.BEST),
                      "epoch": meta["epoch"], "selected_by": meta["selected_by"],
                      "features": features, "fingerprint": meta["fingerprint"]}
        for head, logits_NC in outputs.logits.items():
            cache.write_teacher_logits(teacher_id, head, logits_NC, provenance)
            shapes[head] = tuple(logits_NC.shape)
        cache.write_teacher_features(teacher_id, outputs.features)
        cache.write_teacher_features(teacher_id, outputs.kv, kind="kv")
    if D.is_distributed():
        torch.distributed.barrier()
    return TeacherResult(result, shapes)


def _subset(modalities: list[str] | None, cfg: C.RunConfig) -> list[str]:
    """A non-empty subset of data.modalities, in the config's order."""
    wanted = list(modalities or cfg.data.modalities)
    if not wanted or any(m not in cfg.data.modalities for m in wanted):
        raise MmkdError(f"--modalities {','.join(wanted)}: choose a non-empty subset of "
                        f"data.modalities ({','.join(cfg.data.modalities)})")
    return [m for m in cfg.data.modalities if m in wanted]


def distill(cache_path: str | Path, cfg: C.RunConfig, out_dir: str | Path,
            method: str = "karmma", modalities: list[str] | None = None,
            device: str | None = None, progress: ProgressFn | None = None, resume: bool = True,
            checkpoint_every: int = 0, in_ram: bool = False) -> FitResult:
    """Train a student method (karmma, kd, dml, a baseline) on the student extractors' tokens."""
    from mmkd.cache import Cache

    if method not in student_methods():
        raise MmkdError(f"--method {method!r}: use one of {', '.join(student_methods())}")
    mods = _subset(modalities, cfg)
    if method == "mst":  # mst_stages builds on this module: its runner is called from above
        raise MmkdError("MST-Distill trains in three stages: run `mmkd distill --method mst` "
                        "or mmkd.train.mst_stages.stages()")
    cache = Cache.open(cache_path, mode="r")
    result, _, _ = _train(cache, cfg, "student", method, mods, Path(out_dir), device, progress,
                          resume, checkpoint_every, in_ram, {})
    return result


def mst_target(modalities: list[str]) -> str:
    """MST-Distill's one target modality (`--modalities audio`)."""
    if len(modalities) != 1:
        raise MmkdError(f"--method mst --modalities {','.join(modalities)}: name exactly one "
                        "target modality, e.g. --modalities audio")
    return modalities[0]


@dataclass
class CacheOutputs:
    logits: dict[str, np.ndarray]  # head -> (N, C) float32
    features: dict[str, np.ndarray]  # modality -> (N, d) float16 pooled output tokens (z_m)
    kv: dict[str, np.ndarray]  # modality -> (N, H·dh·dh) float16 normalised Kᵀ V (0: absent)


@torch.no_grad()
def predict_cache(model, cache, features: dict[str, str], device: torch.device,
                  batch_size: int = 64, precision: str = "auto",
                  progress: Callable[[int], None] | None = None,
                  with_features: bool = False, with_kv: bool = False) -> CacheOutputs:
    """A model's logits (and pooled per-modality features, normalised per-modality Kᵀ V) for
    every sample of the cache, with every available modality; a missing modality's Kᵀ V is 0
    (its learned placeholder tokens say nothing about the sample)."""
    from mmkd.cache.loader import CacheBatches
    from mmkd.train.methods.dcat import normalised_kv

    model.eval().to(device)
    out = CacheOutputs({h: np.zeros((cache.n, c), np.float32)
                        for h, c in model.spec.heads.items()},
                       {m: np.zeros((cache.n, model.spec.width), np.float16)
                        for m in features} if with_features else {},
                       {m: np.zeros((cache.n, model.spec.width ** 2 // model.spec.n_heads),
                                    np.float16) for m in features} if with_kv else {})
    for split in sorted(set(cache.splits.tolist())):
        batches = CacheBatches(cache, features, split, batch_size, shuffle=False, seed=0)
        for batch in batches:
            batch = to_device(batch, device)
            with autocast_for(device, precision):
                res = model(batch["tokens"], batch["present"], with_kv=with_kv)
            idx = batch["index"].cpu().numpy()
            for h, logits_BC in res.logits.items():
                out.logits[h][idx] = logits_BC.float().cpu().numpy()
            for m, z_Bd in res.modality_tokens.items() if with_features else ():
                out.features[m][idx] = z_Bd.float().cpu().numpy()
            for m, kv_BHdd in res.kv.items():
                kv_BX = normalised_kv(kv_BHdd) * batch["present"][m].view(-1, 1)
                out.kv[m][idx] = kv_BX.cpu().numpy()
            if progress is not None:
                progress(len(idx))
    return out
