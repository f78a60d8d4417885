"""The paper's accuracy protocols on trained models and their result tables.

- subsets (Table 1): every non-empty subset of a model's modalities, the others marked missing;
- missing-rate (Fig. 4): each modality dropped independently with probability r at inference,
  at least one kept, over several seeds, reported as mean ± std;
- seen/unseen (Tab. C.1): the all-modalities accuracy split by participant, when the manifest
  knows which participants are unseen.

A model trained with several seeds is evaluated once per seed; each cell is then the mean ± std
over its training seeds (a single run keeps a plain number).

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


def aggregate(values: list[float]) -> float | MeanStd:
    """One training seed: its value; several: mean ± std (ddof 1) over them."""
    return values[0] if len(values) == 1 else MeanStd(*metrics.mean_std(values), n=len(values))


@dataclass
class EvaluatedModel:
    """One model's predictions on the split under every condition it was run with, per
    training seed."""

    name: str  # run-dir name: teacher, karmma, baseline, baseline-delta, karmma-video, ...
    label: str  # as in the paper: KARMMA_T, KARMMA_S, Baseline, Baseline w/ δ
    modalities: list[str]
    runs: dict[int, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)

    def per_seed(self, key: str, labels: dict[str, np.ndarray],
                 where: np.ndarray | None = None) -> list[dict[str, float]]:
        """Accuracy per metric for each training seed evaluated under condition `key`."""
        return [metrics.accuracy(p[key], labels, where) for p in self.runs.values() if key in p]

    def accuracy(self, key: str, labels: dict[str, np.ndarray],
                 where: np.ndarray | None = None) -> dict[str, float | MeanStd] | None:
        """Per metric, aggregated over the training seeds; None if not evaluated under `key`."""
        runs = self.per_seed(key, labels, where)
        return {k: aggregate([r[k] for r in runs]) for k in runs[0]} if runs else None


def subsets_table(models: list[EvaluatedModel], modalities: list[str],
                  labels: dict[str, np.ndarray], split: str) -> Table:
    """Table 1 in long form: one row per (model, modality subset), every metric as a column."""
    heads = list(labels)
    names = metrics.metric_names(heads)
    rows = []
    for subset in modality_subsets(modalities):
        for m in models:
            acc = m.accuracy(subset_key(subset), labels)
            if acc is not None:
                rows.append({"method": m.label, "modalities": subset_label(subset), **acc})
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
            acc = m.accuracy(subset_key(s), labels)
            row[col] = None if acc is None else acc[metric]
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
        acc = m.accuracy(subset_key(tuple(m.modalities)), labels)  # over its training seeds
        row[col] = None if acc is None else acc[metric]
    if not rows:
        return None
    cols = [subset_label([mod]) for mod in modalities]
    return Table(name=f"unimodal_{metric}",
                 title=f"{metric.capitalize()} top-1 accuracy (%) of single-modality students, by "
                       f"target modality ({split})",
                 columns=["method", *cols], rows=[{c: r.get(c) for c in ["method", *cols]}
                                                  for r in rows.values()])


def robustness_table(models: list[EvaluatedModel], modalities: list[str],
                     labels: dict[str, np.ndarray], split: str, dropped: str = "video",
                     why: str = "") -> Table | None:
    """The paper's headline robustness check: accuracy with all modalities vs without `dropped`
    (EPIC: F+A), and the share of its full accuracy each model keeps; `why` says how `dropped`
    was chosen."""
    if dropped not in modalities or len(modalities) < 2:
        return None
    metric = metrics.primary_metric(list(labels))
    full = tuple(modalities)
    rest = tuple(m for m in modalities if m != dropped)
    rows = []
    for m in models:
        a = [r[metric] for r in m.per_seed(subset_key(full), labels)]
        b = [r[metric] for r in m.per_seed(subset_key(rest), labels)]
        if not a or len(a) != len(b):
            continue
        kept = [100 * y / x for x, y in zip(a, b, strict=True) if x > 0]
        rows.append({"method": m.label, subset_label(full): aggregate(a),
                     subset_label(rest): aggregate(b),
                     "kept (%)": aggregate(kept) if len(kept) == len(a) else None})
    return Table(name=f"robustness_{metric}",
                 title=f"{metric.capitalize()} accuracy (%) with and without {dropped} ({split})",
                 columns=["method", subset_label(full), subset_label(rest), "kept (%)"],
                 rows=rows,
                 notes=[f"kept = accuracy without {dropped} / accuracy with every modality.",
                        *([why] if why else [])])


def seen_unseen_table(models: list[EvaluatedModel], modalities: list[str],
                      labels: dict[str, np.ndarray], unseen: np.ndarray | str, split: str
                      ) -> Table:
    """Tab. C.1: all-modalities accuracy on seen, unseen and all participants; `unseen` is the
    per-sample flags, or why they cannot split the samples (an empty table says so)."""
    title = f"Top-1 accuracy (%) by participant group, all modalities ({split})"
    names = metrics.metric_names(list(labels))
    if isinstance(unseen, str):
        return Table(name="seen_unseen", title=title, columns=["method", "participants", *names],
                     rows=[], notes=[f"Not computed: {unseen}."])
    full = subset_key(tuple(modalities))
    rows = []
    for m in models:
        key = full if m.per_seed(full, labels) else subset_key(tuple(m.modalities))
        runs = [metrics.accuracy_by_group(p[key], labels, unseen) for p in m.runs.values()
                if key in p]
        if not runs:
            continue
        for group in ("seen", "unseen", "all"):
            rows.append({"method": m.label, "participants": group,
                         **{k: aggregate([r[group][k] for r in runs]) for k in names}})
    return Table(name="seen_unseen", title=title,
                 columns=["method", "participants", *names], rows=rows,
                 notes=[f"{int(unseen.sum())} of {len(unseen)} samples are from unseen participants."])


def missing_rate_results(models: list[EvaluatedModel], labels: dict[str, np.ndarray],
                         rates: list[float], seeds: list[int]
                         ) -> tuple[Table, dict[str, list[Curve]]]:
    """Fig. 4: mean ± std of every metric per (model, rate); curves per metric. One training
    run: over the masking seeds; several: over the training seeds, each the mean over the
    masking seeds (the masking spread is then inside each seed's mean)."""
    names = metrics.metric_names(list(labels))
    rows = []
    curves: dict[str, list[Curve]] = {name: [] for name in names}
    for m in models:
        per_rate = []
        for r in rates:
            by_run = [[metrics.accuracy(p[rate_key(r, s)], labels) for s in seeds
                       if rate_key(r, s) in p] for p in m.runs.values()]
            by_run = [b for b in by_run if b]
            if not by_run:
                break
            runs = by_run[0] if len(by_run) == 1 else [
                {name: float(np.mean([a[name] for a in b])) for name in names} for b in by_run]
            stats = {name: MeanStd(*metrics.mean_std([a[name] for a in runs]), n=len(runs))
                     for name in names}
            per_rate.append(stats)
            rows.append({"method": m.label, "missing rate (%)": round(100 * r), **stats})
        if len(per_rate) == len(rates):
            for name in names:
                curves[name].append(Curve(m.label, list(rates), [s[name].mean for s in per_rate],
                                          [s[name].std for s in per_rate]))
    table = Table(name="missing_rate",
                  title=f"Top-1 accuracy (%) vs missing rate (mean ± std over {len(seeds)} "
                        "masking seeds, or over training seeds)",
                  columns=["method", "missing rate (%)", *names], rows=rows,
                  notes=["Each modality is dropped independently with the given probability per "
                         "test sample; samples that would lose every modality are redrawn. The "
                         "same seed gives the same missing pattern for every method. A model "
                         "trained with several seeds: mean ± std over its training seeds of "
                         "each seed's mean over the masking seeds (n in the JSON)."])
    return table, curves


def unimodal_note(models: list[EvaluatedModel]) -> list[str]:
    """A note naming the unimodal models, which these tables evaluate on their one modality."""
    one = [m.label for m in models if len(m.modalities) == 1]
    if not one:
        return []
    return [f"Unimodal students ({', '.join(one)}) are evaluated on their one modality only: "
            "empty cells in the subsets tables are subsets they cannot see, and at every "
            "missing rate their modality is kept (at least one modality always is)."]


def missing_rate_pivot(long: Table, metric: str, n_seeds: int) -> Table:
    """Fig. 4 as a table: one row per model, one column per rate, headline metric (from the
    long `missing_rate` table; each cell keeps its own n)."""
    cols = sorted({r["missing rate (%)"] for r in long.rows})
    by: dict[str, dict[str, object]] = {}
    for r in long.rows:
        by.setdefault(r["method"], {"method": r["method"]})[f"{r['missing rate (%)']}%"] = r[metric]
    return Table(name=f"missing_rate_{metric}",
                 title=f"{metric.capitalize()} top-1 accuracy (%) vs missing rate "
                       f"(mean ± std over {n_seeds} masking seeds, or over training seeds)",
                 columns=["method", *[f"{c}%" for c in cols]], rows=list(by.values()))
