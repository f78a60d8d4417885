"""The training runs behind the ablations (each variant or strategy trained from the cache and
its best checkpoint loaded); `ablations.py` evaluates them and builds the tables."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkd import config as C
from mmkd.eval.token_variants import TokenVariant, TransformedBatches, token_transform


@dataclass
class AblationContext:
    """What both ablations need from the run."""

    run_dir: Path
    cache_path: Path
    cfg: C.RunConfig
    split: str
    device: str
    epochs: int | None = None  # None: the recipe's epochs


def scaled_recipe(recipe: C.RecipeConfig, epochs: int | None) -> C.RecipeConfig:
    """The recipe with another epoch count; the warm-up keeps its share of the schedule."""
    r = copy.deepcopy(recipe)
    if epochs is not None:
        r.train.warmup_epochs = r.train.warmup_epochs * epochs / r.train.epochs
        r.train.epochs = epochs
    return r


def train_token_variant(ctx: AblationContext, recipe: C.RecipeConfig, cache: Any,
                        features: dict[str, str], heads: dict[str, int],
                        shapes: dict[str, tuple[int, int]], v: TokenVariant) -> Any:
    """Train the teacher recipe on token variant `v` (resumable, in RUN_DIR/ablations/tokens/)
    and return its best model."""
    import mmkd.models  # noqa: F401
    import mmkd.train.methods  # noqa: F401
    from mmkd.cache.loader import CacheBatches
    from mmkd.registry import models
    from mmkd.train import checkpoint as ckpt
    from mmkd.train.runs import VAL_SPLIT, build_task, fit_run

    tcfg = recipe.train
    seed = tcfg.seed
    modalities = list(shapes)
    train_b = TransformedBatches(CacheBatches(cache, features, "train", tcfg.batch_size,
                                              shuffle=True, seed=seed),
                                 token_transform(v, seed, train=True))
    val_b = (TransformedBatches(CacheBatches(cache, features, VAL_SPLIT, tcfg.batch_size,
                                             shuffle=False, seed=seed),
                                token_transform(v, seed, train=False))
             if VAL_SPLIT in set(cache.splits.tolist()) else None)
    task = build_task("teacher", ctx.cfg, tcfg, cache.n,
                      functools.partial(models.get("teacher"), recipe.fusion, shapes, heads),
                      recipe.fusion.missing_strategy)
    out_dir = ctx.run_dir / "ablations" / "tokens" / v.name
    provenance = {m: cache.feature_provenance(m, e) for m, e in features.items()}
    meta = {"kind": "ablation-tokens", "variant": v.name, "status": v.status,
            "features": features, "modalities": modalities, "heads": heads}
    fit_run(task, train_b, val_b, tcfg, ctx.cfg, out_dir, meta,
            {**meta, "manifest": cache.manifest_hash, "provenance": provenance},
            ctx.device, None, True, 0)
    best, _ = ckpt.load_model(out_dir, map_location=ctx.device)
    return best


STRATEGY_ROWS = [  # (output dir, method, missing strategy, label as in Tab. B.1)
    ("baseline", "baseline", "none", "Baseline"),
    ("dropout-none", "baseline-delta", "none", "Baseline w/ mod. drop."),
    ("dropout-B1", "baseline-delta", "B1", "Baseline w/ mod. drop. + Eq. B.1"),
    ("dropout-B2", "baseline-delta", "B2", "Baseline w/ mod. drop. + Eq. B.2"),
    ("dropout-B3", "baseline-delta", "B3", "Baseline w/ mod. drop. + Eq. B.3"),
    ("dropout-B4", "baseline-delta", "B4", "Baseline w/ mod. drop. + Eq. B.4"),
    ("dropout-B5", "baseline-delta", "B5", "Baseline w/ mod. drop. + Eq. B.5 (δ)"),
]


def train_strategy(ctx: AblationContext, out_name: str, method: str, strategy: str
                   ) -> tuple[Any, dict]:
    """Train one strategy row with the student recipe through `mmkd distill`'s entry point;
    returns its best model and meta."""
    from mmkd.train import checkpoint as ckpt
    from mmkd.train.stage2 import distill

    cfg = copy.deepcopy(ctx.cfg)
    cfg.student = scaled_recipe(cfg.student, ctx.epochs)
    cfg.student.fusion.missing_strategy = strategy
    out_dir = ctx.run_dir / "ablations" / "strategies" / out_name
    distill(ctx.cache_path, cfg, out_dir, method=method, modalities=list(cfg.data.modalities),
            device=ctx.device)
    return ckpt.load_model(out_dir, map_location=ctx.device)


def fusion_gflops(model: Any, shapes: dict[str, tuple[int, int]], device: str) -> dict[str, float]:
    """GFLOPs of one sample through the fusion block + MH-MLP, all modalities present."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    tokens = {m: torch.zeros(1, k, d, device=device) for m, (k, d) in shapes.items()}
    present = {m: torch.ones(1, dtype=torch.bool, device=device) for m in shapes}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(tokens, present)
    return {"fusion GFLOPs": counter.get_total_flops() / 1e9}
