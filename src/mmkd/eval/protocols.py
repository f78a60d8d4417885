"""The paper's accuracy protocols on trained models (METHOD.md §5) and their result tables.

- subsets (Table 1): every non-empty subset of a model's modalities, the others marked missing;
- missing-rate (Fig. 4): each modality dropped independently with probability r at inference,
  at least one kept, over several seeds, reported as mean ± std;
- seen/unseen (Tab. C.1): the all-modalities accuracy split by participant, when the manifest
  knows which participants are unseen.

One pass over the split per model evaluates every condition (`inference.predict`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mmkd.eval import masks, metrics
from mmkd.eval.inference import Condition
from mmkd.eval.plots import Curve
from mmkd.eval.reports import MeanStd, Table
from mmkd.subsets import modality_subsets, subset_label


def subset_key(subset: tuple[str, ...]) -> str:
    return f"subset:{subset_label(subset)}"


def rate_key(rate: float, seed: int) -> str:
    return f"rate:{rate:.4f}:seed:{seed}"


def build_conditions(modalities: list[str], n: int, protocols: Iterable[str],
                     rates: list[float], seeds: list[int]) -> list[Condition]:
    """The keep masks of every requested protocol for one model's modalities."""
    protocols = set(protocols)
    out: list[Condition] = []
    if "subsets" in protocols:
        out += [Condition(subset_key(s), masks.subset_keep(modalities, s, n))
                for s in modality_subsets(modalities)]
    if "missing-rate" in protocols:
        out += [Condition(rate_key(r, s), masks.missing_rate_keep(n, len(modalities), r, s))
                for r in rates for s in seeds]
    return out


@dataclass
class EvaluatedModel:
    """One model's predictions on the split under every condition it was run with."""

    name: str  # run-dir name: teacher, karmma, baseline, baseline-delta, karmma-video, ...
    label: str  # as in the paper: KARMMA_T, KARMMA_S, Baseline, Baseline w/ δ
    modalities: list[str]
    preds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def subsets_table(models: list[EvaluatedModel], modalities: list[str],
                  labels: dict[str, np.ndarray], split: str) -> Table:
    """Table 1 in long form: one row per (model, modality subset), every metric as a column."""
    heads = list(labels)
    names = metrics.metric_names(heads)
    rows = []
    for subset in modality_subsets(modalities):
        for m in models:
            preds = m.preds.get(subset_key(subset))
            if preds is None:
                continue
            rows.append({"method": m.label, "modalities": subset_label(subset),
                         **metrics.accuracy(preds, labels)})
    return Table(name="subsets", title=f"Top-1 accuracy (%) per inference modality subset ({split})",
                 columns=["method", "modalities", *names], rows=rows,
                 notes=["Left-out modalities are marked missing (present=False) at inference; "
                        "a model is evaluated only on subsets of the modalities it was trained on."])


def subsets_pivot(models: list[EvaluatedModel], modalities: list[str],
                  labels: dict[str, np.ndarray], split: str) -> Table:
    """Table 1 compact: one row per model, one column per subset, the headline metric."""
    metric = metrics.primary_metric(list(labels))
    subsets = modality_subsets(modalities)
    cols = [subset_label(s) for s in subsets]
    rows = []
    for m in models:
        row: dict[str, object] = {"method": m.label}
        for s, col in zip(subsets, cols, strict=True):
            preds = m.preds.get(subset_key(s))
            row[col] = None if preds is None else metrics.accuracy(preds, labels)[metric]
        rows.append(row)
    return Table(name=f"subsets_{metric}",
                 title=f"{metric.capitalize()} top-1 accuracy (%) by modalities at inference ({split})",
                 columns=["method", *cols], rows=rows)


def unimodal_table(models: list[EvaluatedModel], modalities: list[str],
                   labels: dict[str, np.ndarray], split: str) -> Table | None:
    """Single-modality students side by side: one row per method, one column per target modality
    (a D-CAT student next to KARMMA_S, KD, ... trained on the same modality alone)."""
    metric = metrics.primary_metric(list(labels))
    rows: dict[str, dict[str, object]] = {}
    for m in models:
        if len(m.modalities) != 1:
            continue
        col = subset_label(m.modalities)
        method = m.label.removesuffix(f" ({col})")
        row = rows.setdefault(method, {"method": method})
        row[col] = metrics.accuracy(m.preds[subset_key(tuple(m.modalities))], labels)[metric]
    if not rows:
        return None
    cols = [subset_label([mod]) for mod in modalities]
    return Table(name=f"unimodal_{metric}",
                 title=f"{metric.capitalize()} top-1 accuracy (%) of single-modality students, by "
                       f"target modality ({split})",
                 columns=["method", *cols], rows=[{c: r.get(c) for c in ["method", *cols]}
                                                  for r in rows.values()])

def robustness_table(models: list[EvaluatedModel], modalities: list[str],
                     labels: dict[str, np.ndarray], split: str, dropped: str = "video"
                     ) -> Table | None:
    """The paper's headline robustness check: accuracy with all modalities vs without `dropped`
    (EPIC: F+A), and the share of its full accuracy each model keeps."""
    if dropped not in modalities or len(modalities) < 2:
        return None
    metric = metrics.primary_metric(list(labels))
    full = tuple(modalities)
    rest = tuple(m for m in modalities if m != dropped)
    rows = []
    for m in models:
        a, b = m.preds.get(subset_key(full)), m.preds.get(subset_key(rest))
        if a is None or b is None:
            continue
        acc_full, acc_rest = metrics.accuracy(a, labels)[metric], metrics.accuracy(b, labels)[metric]
        rows.append({"method": m.label, subset_label(full): acc_full,
                     subset_label(rest): acc_rest,
                     "kept (%)": 100 * acc_rest / acc_full if acc_full > 0 else None})
    return Table(name=f"robustness_{metric}",
                 title=f"{metric.capitalize()} accuracy (%) with and without {dropped} ({split})",
                 columns=["method", subset_label(full), subset_label(rest), "kept (%)"],
                 rows=rows,
                 notes=[f"kept = accuracy without {dropped} / accuracy with every modality."])


def seen_unseen_table(models: list[EvaluatedModel], modalities: list[str],
                      labels: dict[str, np.ndarray], unseen: np.ndarray, split: str) -> Table:
    """Tab. C.1: all-modalities accuracy on seen, unseen and all participants."""
    full = subset_key(tuple(modalities))
    names = metrics.metric_names(list(labels))
    rows = []
    for m in models:
        preds = m.preds.get(full) or m.preds.get(subset_key(tuple(m.modalities)))
        if preds is None:
            continue
        groups = metrics.accuracy_by_group(preds, labels, unseen)
        for group in ("seen", "unseen", "all"):
            rows.append({"method": m.label, "participants": group, **groups[group]})
    return Table(name="seen_unseen",
                 title=f"Top-1 accuracy (%) by participant group, all modalities ({split})",
                 columns=["method", "participants", *names], rows=rows,
                 notes=[f"{int(unseen.sum())} of {len(unseen)} samples are from unseen participants."])


def missing_rate_results(models: list[EvaluatedModel], labels: dict[str, np.ndarray],
                         rates: list[float], seeds: list[int]
                         ) -> tuple[Table, dict[str, list[Curve]]]:
    """Fig. 4: mean ± std over seeds of every metric per (model, rate); curves per metric."""
    names = metrics.metric_names(list(labels))
    rows = []
    curves: dict[str, list[Curve]] = {name: [] for name in names}
    for m in models:
        per_rate = []
        for r in rates:
            runs = [metrics.accuracy(m.preds[rate_key(r, s)], labels) for s in seeds
                    if rate_key(r, s) in m.preds]
            if not runs:
                break
            stats = {name: MeanStd(*metrics.mean_std([a[name] for a in runs]), n=len(runs))
                     for name in names}
            per_rate.append(stats)
            rows.append({"method": m.label, "missing rate (%)": round(100 * r), **stats})
        if len(per_rate) == len(rates):
            for name in names:
                curves[name].append(Curve(m.label, list(rates), [s[name].mean for s in per_rate],
                                          [s[name].std for s in per_rate]))
    table = Table(name="missing_rate",
                  title=f"Top-1 accuracy (%) vs missing rate (mean ± std over {len(seeds)} seeds)",
                  columns=["method", "missing rate (%)", *names], rows=rows,
                  notes=["Each modality is dropped independently with the given probability per "
                         "test sample; samples that would lose every modality are redrawn. The "
                         "same seed gives the same missing pattern for every method."])
    return table, curves


def missing_rate_pivot(curves: list[Curve], metric: str, n_seeds: int) -> Table:
    """Fig. 4 as a table: one row per model, one column per rate, headline metric."""
    rates = curves[0].rates if curves else []
    cols = [f"{round(100 * r)}%" for r in rates]
    rows = [{"method": c.label, **{col: MeanStd(mu, sd, n_seeds)
                                   for col, mu, sd in zip(cols, c.mean, c.std, strict=True)}}
            for c in curves]
    return Table(name=f"missing_rate_{metric}",
                 title=f"{metric.capitalize()} top-1 accuracy (%) vs missing rate "
                       f"(mean ± std over {n_seeds} seeds)",
                 columns=["method", *cols], rows=rows)

