"""Top-1 accuracies as the paper reports them, from predicted class ids.

Protocols keep only the arg-max class per head and sample (not the logits), so dozens of
inference configurations over a large split cost a few bytes per sample each; the metrics are
computed from those predictions here.

With several heads (EPIC: verb + noun) the extra metric `action` counts a sample as right only
when every head is right; with one head the metric is that head's top-1 (SSv2: `action`).
Values are percentages.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmkd.errors import MmkdError

ACTION = "action"


def metric_names(heads: list[str]) -> list[str]:
    """Metric columns in report order: each head, then `action` when there are several heads."""
    heads = list(heads)
    return heads + [ACTION] if len(heads) > 1 and ACTION not in heads else heads


def primary_metric(heads: list[str]) -> str:
    """The headline metric (the paper's plots use action accuracy)."""
    return metric_names(heads)[-1]


def correct(preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per metric, a bool array (N,): is this sample right."""
    heads = list(labels)
    out: dict[str, np.ndarray] = {}
    for head in heads:
        if head not in preds:
            raise MmkdError(f"no predictions for head {head!r} (have: {', '.join(preds)}); the model "
                            "was trained on other label heads than this dataset has")
        p, y = np.asarray(preds[head]), np.asarray(labels[head])
        if p.shape != y.shape:
            raise MmkdError(f"head {head!r}: {p.shape[0]} predictions for {y.shape[0]} labels")
        out[head] = p == y
    if len(heads) > 1 and ACTION not in out:
        out[ACTION] = np.logical_and.reduce([out[h] for h in heads])
    return out


def accuracy(preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
             where: np.ndarray | None = None) -> dict[str, float]:
    """Top-1 accuracy (%) per metric, over the samples selected by the bool mask `where`."""
    right = correct(preds, labels)
    out = {}
    for name, ok in right.items():
        sel = ok if where is None else ok[where]
        out[name] = float(100.0 * sel.mean()) if sel.size else float("nan")
    return out


def accuracy_by_group(preds: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray],
                      unseen: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """{"all": ...} plus {"seen": ..., "unseen": ...} when per-sample `unseen` flags are known.

    The paper's Tab. C.1 splits EPIC's validation set by participant (P18 and P32 unseen).
    """
    groups = {"all": accuracy(preds, labels)}
    if unseen is not None:
        unseen = np.asarray(unseen, dtype=bool)
        groups["seen"] = accuracy(preds, labels, ~unseen)
        groups["unseen"] = accuracy(preds, labels, unseen)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) over seeds; std is 0 for a single seed."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0
