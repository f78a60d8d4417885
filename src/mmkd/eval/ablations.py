"""Ablation tables from the cache: token reduction (Tab. 4) and missing-modality strategies (Tab. B.1);
the training runs behind each row are in `ablation_runs.py`.

Token reduction. The cache holds, per sample and modality, the extractor's k tokens after the
extraction-time Θ-Average (`held` = min(k, Θ_extract) tokens). A variant can only be built from
what is held:
  - Θ-Average to T tokens: *exact* when the cache holds the raw tokens (held = k); when it holds
    Θ_extract < k averaged tokens, T = held is the cache itself (exact) and T < held re-averages
    the averaged tokens, which is *approximate* (group averages of group averages, with other
    group boundaries than Θ-Average on the raw tokens); T > held and "none" are impossible and
    need a re-extraction with `--theta 0` (all tokens) in another run;
  - random masking to T tokens (the paper's baseline [17]): T tokens drawn uniformly from the
    held ones, a fresh draw per training step and a fixed seeded draw at evaluation, kept in
    their original order; exact only from raw tokens, otherwise "from the held tokens".
Each possible variant trains the teacher recipe (KARMMA_T, α·CE + β·InfoNCE) from scratch on
the transformed tokens and is evaluated on the eval split with every modality present. Rows that
cannot be built are reported as such, never filled in.

Missing-modality strategies. Baseline (CE, no dropout, no tokens) and Baseline w/ modality
dropout combined with each strategy (none, B1–B5), all trained with the student recipe through
the same training entry point as `mmkd distill`, then evaluated on every modality subset; the
table adds each method's rank per subset and the average rank (Tab. B.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mmkd.eval import metrics
from mmkd.eval.ablation_runs import (
    STRATEGY_ROWS,
    AblationContext,
    fusion_gflops,
    scaled_recipe,
    train_strategy,
    train_token_variant,
)
from mmkd.eval.reports import Table
from mmkd.eval.token_variants import (
    TokenVariant,
    TransformedBatches,
    plan_token_variants,
    token_transform,
)
from mmkd.subsets import modality_subsets, subset_label

PAPER_THETAS = ["none", "500", "300", "100"]


def run_token_ablation(ctx: AblationContext, modalities: list[str], thetas: list[str],
                       progress: Callable[[int], None] | None = None) -> Table:
    """Tab. 4 from the cache: train the teacher recipe on each possible token variant."""
    from mmkd.cache import Cache
    from mmkd.cache.loader import CacheBatches
    from mmkd.eval.inference import Condition, predict
    from mmkd.train.stage2 import resolve_features

    cache = Cache.open(ctx.cache_path, mode="r")
    recipe = scaled_recipe(ctx.cfg.teacher, ctx.epochs)
    features = resolve_features(cache, recipe.extractors, modalities, "teacher")
    heads = {h: cache.heads[h] for h in ctx.cfg.data.heads}
    readers = {m: cache.feature_reader(m, e) for m, e in features.items()}
    held = {m: r.theta for m, r in readers.items()}
    k_raw = {m: int(r.provenance.get("k_tokens", r.theta)) for m, r in readers.items()}
    plans = {m: plan_token_variants(thetas, held[m], k_raw[m]) for m in modalities}
    ref = modalities[0]
    # one variant list for all modalities: a row is possible only if it is for every modality
    variants = []
    for v in plans[ref]:
        others = [next((w for w in plans[m] if w.name == v.name), None) for m in modalities[1:]]
        if any(w is None for w in others):
            continue
        bad = [w for w in others if not w.possible]
        status = v.status if v.possible and not bad else (bad[0].status if bad else v.status)
        variants.append(TokenVariant(v.kind, v.target, status, v.possible and not bad))
    split_idx = cache.indices(ctx.split)
    labels = {h: cache.labels(h)[split_idx] for h in heads}
    metric = metrics.primary_metric(list(heads))
    rows = []
    for v in variants:
        row: dict[str, Any] = {"token reduction": {"none": "None", "theta": "Θ-Average",
                                                   "random": "Random"}[v.kind],
                               "tokens per modality": v.target if v.possible else None,
                               "status": v.status}
        if not v.possible:
            rows.append(row)
            continue
        shapes = {m: (v.target, readers[m].dim) for m in modalities}
        best = train_token_variant(ctx, recipe, cache, features, heads, shapes, v)
        seed = recipe.train.seed
        eval_b = TransformedBatches(CacheBatches(cache, features, ctx.split, 64, shuffle=False,
                                                 seed=seed), token_transform(v, seed, train=False))
        full = Condition("all", np.ones((len(split_idx), len(modalities)), dtype=bool))
        preds = predict(best, modalities, list(heads), eval_b, split_idx, [full], ctx.device)
        acc = metrics.accuracy(preds["all"], labels)
        row.update(fusion_gflops(best, shapes, ctx.device))
        row.update(acc)
        rows.append(row)
        if progress is not None:
            progress(1)
    cols = ["token reduction", "tokens per modality", "fusion GFLOPs", *metrics.metric_names(
        list(heads)), "status"]
    return Table(
        name="ablation_tokens",
        title=f"Token reduction ablation (Tab. 4): teacher on {subset_label(modalities)}, "
              f"{metric} accuracy on {ctx.split}",
        columns=cols, rows=rows,
        notes=[f"cache holds {held} tokens per sample of {k_raw} extractor tokens "
               f"(modality: held of raw)",
               f"each row trains the teacher recipe for {recipe.train.epochs} epochs on the "
               "transformed cached tokens; fusion GFLOPs: one sample through the fusion block + "
               "MH-MLP (FlopCounterMode)"])


def run_strategy_ablation(ctx: AblationContext,
                          progress: Callable[[int], None] | None = None) -> list[Table]:
    """Tab. B.1 / B.2: train each missing-modality strategy, evaluate on every subset."""
    from mmkd.cache import Cache
    from mmkd.cache.loader import CacheBatches
    from mmkd.eval.inference import predict
    from mmkd.eval.protocols import build_conditions, subset_key

    mods = list(ctx.cfg.data.modalities)
    cache = Cache.open(ctx.cache_path, mode="r")
    split_idx = cache.indices(ctx.split)
    heads = list(ctx.cfg.data.heads)
    labels = {h: cache.labels(h)[split_idx] for h in heads}
    metric = metrics.primary_metric(heads)
    subsets = modality_subsets(mods)
    results: dict[str, dict[str, float]] = {}
    for out_name, method, strategy, label in STRATEGY_ROWS:
        model, meta = train_strategy(ctx, out_name, method, strategy)
        conds = build_conditions(mods, len(split_idx), ["subsets"], [], [])
        batches = CacheBatches(cache, meta["features"], ctx.split, 64, shuffle=False, seed=0)
        preds = predict(model, mods, heads, batches, split_idx, conds, ctx.device)
        results[label] = {subset_label(s): metrics.accuracy(preds[subset_key(s)],
                                                                  labels)[metric]
                          for s in subsets}
        if progress is not None:
            progress(1)
    cols = [subset_label(s) for s in subsets]
    ranks = {label: {} for label in results}
    for col in cols:
        order = sorted(results, key=lambda lab: -results[lab][col])
        for label in results:  # competition ranking: ties share the better rank
            ranks[label][col] = 1 + sum(results[o][col] > results[label][col] for o in order)
    acc_rows = [{"method": lab, **res} for lab, res in results.items()]
    rank_rows = [{"method": lab, **ranks[lab],
                  "average rank": float(np.mean([ranks[lab][c] for c in cols]))}
                 for lab in results]
    epochs = scaled_recipe(ctx.cfg.student, ctx.epochs).train.epochs
    note = (f"student recipe, {epochs} epochs, CE only; modality dropout "
            f"p={ctx.cfg.student.train.modality_dropout} except Baseline; split {ctx.split}")
    return [
        Table(name="ablation_strategies",
              title=f"Missing-modality strategies (Tab. B.1): {metric} accuracy (%) per subset",
              columns=["method", *cols], rows=acc_rows, notes=[note]),
        Table(name="ablation_strategies_rank",
              title="Missing-modality strategies: rank per subset and average rank (Tab. B.2)",
              columns=["method", *cols, "average rank"], rows=rank_rows, notes=[note]),
    ]
