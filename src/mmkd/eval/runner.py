"""`mmkd eval` as a library: find the trained models of a run, run the protocols, write the report.

The CLI (and `mmkd demo`) call these functions stage by stage so each can show its own progress
bar; nothing here prints. Every table goes to RUN_DIR/reports/ as Markdown, CSV and JSON, and
`report.md` is rebuilt from all tables and plots there, so protocols run at different times
end up in one report.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkd import config as C
from mmkd.errors import MmkdError
from mmkd.eval import metrics, plots, protocols
from mmkd.eval.efficiency import CostConfig, measure_all
from mmkd.eval.reports import MeanStd, Table, read_table, write_report, write_table
from mmkd.registry import datasets
from mmkd.subsets import modality_subsets, subset_label

ACCURACY_PROTOCOLS = ("subsets", "missing-rate")
ORDER = ["teacher", "baseline", "baseline-delta", "karmma"]  # registered methods follow, by name
REPORT_ORDER = ["subsets_", "unimodal_", "robustness_", "compare_", "subsets", "missing_rate_",
                "missing_rate", "seen_unseen", "efficiency", "ablation_tokens",
                "ablation_strategies"]


@dataclass
class ModelRef:
    name: str  # "teacher" or the students/ folder name
    label: str
    runs: dict[int, Path]  # training seed -> checkpoint folder (one entry for a single run)


def model_label(name: str) -> str:
    """The method's report label (paper names): teacher → KARMMA_T, karmma-video → KARMMA_S (V)."""
    import mmkd.train.methods  # noqa: F401  (registers the methods)
    from mmkd.registry import methods

    labels = {n: methods.get(n).label for n in methods.list()}
    if name in labels:
        return labels[name]
    for method in sorted(labels, key=len, reverse=True):
        prefix = f"{method}-"
        if name.startswith(prefix):
            mods = name[len(prefix):].split("+")
            return f"{labels[method]} ({subset_label(mods)})"
    return name


def discover_models(run_dir: Path, names: list[str] | None = None) -> list[ModelRef]:
    """Trained models of a run (RUN/teacher, RUN/students/*) that have a best checkpoint, each
    with its training seeds (seed-<n>/ subfolders, see `seeded_runs`)."""
    from mmkd.train.runs import seeded_runs

    found: dict[str, dict[int, Path]] = {}
    candidates = [run_dir / "teacher"]
    if (run_dir / "students").is_dir():
        candidates += sorted(d for d in (run_dir / "students").iterdir() if d.is_dir())
    for d in candidates:
        runs = seeded_runs(d)
        if runs:
            found[d.name] = runs
    if names:
        unknown = [n for n in names if n not in found]
        if unknown:
            raise MmkdError(f"--models {','.join(unknown)}: no trained model of that name in "
                            f"{run_dir} (have: {', '.join(found) or 'none'}); train it with "
                            "`mmkd train teacher` or `mmkd distill --method NAME`")
        keep = list(names)
    else:
        keep = sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    if not keep:
        raise MmkdError(f"{run_dir}: no trained models (teacher/ or students/*/ with meta.json); "
                        "run `mmkd train teacher` and `mmkd distill` first")
    return [ModelRef(n, model_label(n), found[n]) for n in keep]


@dataclass
class SplitData:
    """Labels (and participant groups) of the evaluated split, in cache order."""

    split: str
    indices: np.ndarray
    labels: dict[str, np.ndarray]
    unseen: np.ndarray | str | None  # per-sample flags, or why there are none (None: no manifest)
    majority: dict[str, float]  # accuracy of always predicting the most frequent train class


def split_data(cache: Any, heads: list[str], split: str, manifest_dir: Path | None) -> SplitData:
    idx = cache.indices(split)
    labels = {h: cache.labels(h)[idx] for h in heads}
    train_idx = cache.indices("train")
    majority_preds = {}
    for h in heads:
        counts = np.bincount(cache.labels(h)[train_idx], minlength=cache.heads[h])
        majority_preds[h] = np.full(len(idx), int(counts.argmax()))
    if len(heads) > 1:  # the most frequent (verb, noun) pair, not each head's own mode
        pairs = np.stack([cache.labels(h)[train_idx] for h in heads], 1)
        uniq, count = np.unique(pairs, axis=0, return_counts=True)
        best = uniq[count.argmax()]
        majority_preds = {h: np.full(len(idx), int(best[j])) for j, h in enumerate(heads)}
    majority = metrics.accuracy(majority_preds, labels)
    return SplitData(split, idx, labels, _unseen_flags(cache, idx, manifest_dir), majority)


def _unseen_flags(cache: Any, idx: np.ndarray, manifest_dir: Path | None
                  ) -> np.ndarray | str | None:
    """Per-sample unseen-participant flags from the manifest when the split has both groups,
    else why not."""
    if manifest_dir is None or not (manifest_dir / "meta.json").exists():
        return None
    from mmkd.datasets.manifest import read_all

    _, samples = read_all(manifest_dir)
    if [s.sample_id for s in samples] != cache.sample_ids:
        raise MmkdError(f"{manifest_dir}: the manifest's samples differ from the cache's "
                        f"({cache.path}); the cache was built from another manifest — rebuild it "
                        "or point data.manifest_dir at the right manifest")
    flags = [samples[i].unseen for i in idx]
    if any(f is None for f in flags):
        return (f"the manifest does not say for {sum(f is None for f in flags)} of the "
                f"{len(flags)} samples whether their participant is unseen (custom CSV: the "
                "unseen column)")
    arr = np.asarray(flags, dtype=bool)
    if arr.all() or not arr.any():
        return (f"every one of the {len(arr)} samples is from {'an unseen' if arr.all() else 'a seen'}"
                " participant, so there is no other group to compare with")
    return arr


def evaluate_models(cache: Any, refs: list[ModelRef], data: SplitData, protocol_names: list[str],
                    rates: list[float], seeds: list[int], device: str, batch_size: int,
                    progress: Callable[[int], None] | None = None) -> list[protocols.EvaluatedModel]:
    """Predictions of every model under every condition of the accuracy protocols."""
    from mmkd.cache.loader import CacheBatches
    from mmkd.eval.inference import predict
    from mmkd.train.checkpoint import load_model

    out = []
    heads = list(data.labels)
    for ref in refs:
        runs, mods = {}, None
        for train_seed, ckpt_dir in ref.runs.items():
            model, meta = load_model(ckpt_dir, map_location=device)
            if mods is not None and list(model.spec.modalities) != mods:
                raise MmkdError(f"{ckpt_dir}: its modalities {model.spec.modalities} differ from "
                                f"the other seeds' {mods}; retrain that seed")
            mods = list(model.spec.modalities)
            missing_heads = [h for h in heads if h not in model.spec.heads]
            if missing_heads:
                raise MmkdError(f"{ckpt_dir}: the model has no head {missing_heads} that the "
                                "evaluated dataset has; evaluate it on the run it was trained on")
            features = meta.get("features")
            if not features:
                raise MmkdError(f"{ckpt_dir}/meta.json has no 'features' (modality -> "
                                "extractor); retrain it with this mmkd version")
            conds = protocols.build_conditions(mods, len(data.indices), protocol_names, rates,
                                               seeds)
            batches = CacheBatches(cache, {m: features[m] for m in mods}, data.split,
                                   batch_size, shuffle=False, seed=0)
            runs[train_seed] = predict(model, mods, heads, batches, data.indices, conds, device,
                                       progress)
        out.append(protocols.EvaluatedModel(ref.name, ref.label, mods or [], runs))
    return out


def strongest_modality(cache: Any, ref: ModelRef, heads: list[str], device: str,
                       batch_size: int) -> tuple[str, str]:
    """The modality whose loss costs most: the best single one of `ref` on val (on train when
    the cache has no val), as (modality, a note saying so)."""
    splits = set(cache.splits.tolist())
    split = "val" if "val" in splits else "train"
    data = split_data(cache, heads, split, None)
    (model,) = evaluate_models(cache, [ref], data, ["subsets"], [], [], device, batch_size)
    metric = metrics.primary_metric(heads)
    acc = {m: float(np.mean([r[metric] for r in model.per_seed(protocols.subset_key((m,)),
                                                                  data.labels)]))
           for m in model.modalities}  # over the reference's training seeds
    best = max(acc, key=acc.get)
    scores = ", ".join(f"{m} {a:.2f}" for m, a in acc.items())
    return best, (f"Dropped: {best}, the strongest single modality of {ref.label} on {split} "
                  f"({metric} accuracy alone: {scores}); choose another with --robustness-drop.")


def accuracy_tables(evaluated: list[protocols.EvaluatedModel], modalities: list[str],
                    data: SplitData, protocol_names: list[str], rates: list[float],
                    seeds: list[int], reports_dir: Path,
                    dropped: tuple[str, str] | None = None) -> tuple[list[Table], list[Path]]:
    """Tables (and the Fig. 4 plot) of the accuracy protocols; `dropped` is the robustness
    table's (modality, how it was chosen)."""
    tables: list[Table] = []
    figs: list[Path] = []
    heads = list(data.labels)
    metric = metrics.primary_metric(heads)
    majority_note = ("Majority class (most frequent training "
                     f"{'(verb, noun) pair' if len(heads) > 1 else 'class'}) on {data.split}: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in data.majority.items()))
    if "subsets" in protocol_names:
        pivot = protocols.subsets_pivot(evaluated, modalities, data.labels, data.split)
        pivot.notes += [majority_note, *protocols.unimodal_note(evaluated)]
        long = protocols.subsets_table(evaluated, modalities, data.labels, data.split)
        long.notes += [majority_note, *protocols.unimodal_note(evaluated)]
        tables += [pivot, long]
        figs.append(plots.plot_subsets(
            pivot.columns[1:], {r["method"]: [_mean_std(r[c]) for c in pivot.columns[1:]]
                                for r in pivot.rows},
            reports_dir / f"subsets_{metric}.png", metric,
            f"{metric.capitalize()} accuracy by modalities at inference ({data.split}; "
            "error bars: ± std over training seeds)"))
        unimodal = protocols.unimodal_table(evaluated, modalities, data.labels, data.split)
        if unimodal is not None:
            tables.append(unimodal)
        robust = protocols.robustness_table(evaluated, modalities, data.labels, data.split,
                                            *(dropped or ("video", "")))
        if robust is not None:
            tables.append(robust)
        if data.unseen is not None:
            tables.append(protocols.seen_unseen_table(evaluated, modalities, data.labels,
                                                      data.unseen, data.split))
    if "missing-rate" in protocol_names:
        long, curves = protocols.missing_rate_results(evaluated, data.labels, rates, seeds)
        pivot = protocols.missing_rate_pivot(long, metric, len(seeds))
        pivot.notes += [majority_note, *protocols.unimodal_note(evaluated)]
        tables += [pivot, long]
        figs.append(plots.plot_missing_rate(
            curves[metric], metric, reports_dir / f"missing_rate_{metric}.png",
            chance=data.majority[metric],
            title=f"{metric.capitalize()} accuracy vs missing rate ({data.split}, mean ± std over "
                  f"{len(seeds)} seeds)"))
    return tables, figs


def _mean_std(cell: Any) -> tuple[float, float] | None:
    if cell is None:
        return None
    return (cell.mean, cell.std) if isinstance(cell, MeanStd) else (float(cell), 0.0)


# ----------------------------------------------------------------------------- efficiency
def efficiency_configs(cfg: C.RunConfig, sizes: str, devices: list[str],
                       heads: dict[str, int] | None = None) -> tuple[list[CostConfig], str]:
    """Teacher and student at every modality subset; `sizes` paper (Fig. 5) or run (this run)."""
    if sizes == "paper":
        dataset = datasets.get(cfg.data.dataset).paper
        base = C.run_preset(dataset)
        theta, frames, head_sizes = 300, 32, datasets.get(dataset).paper_heads
        what = (f"paper sizes ({dataset} recipes: {frames} frames at 224×224, Θ = {theta}, "
                "random weights)")
    elif sizes == "run":
        base, theta, frames = cfg, cfg.extract.theta, cfg.clip.num_frames
        if heads is None:
            raise MmkdError("efficiency at run sizes needs the run's label heads (its cache)")
        head_sizes = heads
        what = f"this run's sizes ({frames} frames, Θ = {theta}, random weights)"
    else:
        raise MmkdError(f"--efficiency-sizes {sizes!r}: use paper or run")
    mods = list(base.data.modalities)
    out = []
    for device in devices:
        for subset in modality_subsets(mods):
            for role, label in (("teacher", "KARMMA_T"), ("student", "KARMMA_S")):
                recipe: C.RecipeConfig = getattr(base, role)
                out.append(CostConfig(role=role, label=label,
                                      extractors={m: recipe.extractors[m] for m in mods},
                                      fusion=dataclasses.asdict(recipe.fusion),
                                      heads=dict(head_sizes), subset=list(subset), theta=theta,
                                      num_frames=frames, device=device))
    return out, what


def efficiency_results(configs: list[CostConfig], what: str, reports_dir: Path,
                       progress: Callable[[int], None] | None = None
                       ) -> tuple[list[Table], list[Path]]:
    results = measure_all(configs, progress=progress)
    rows, figs = [], []
    teacher_mem: dict[tuple[str, str], float] = {}
    for cfg, cost, _ in results:
        if cfg.role == "teacher":
            teacher_mem[(cfg.device, subset_label(cfg.subset))] = cost.peak_mem_mib
    for cfg, cost, reused in results:
        sub = subset_label(cfg.subset)
        ratio = (100 * cost.peak_mem_mib / teacher_mem[(cfg.device, sub)]
                 if cfg.role == "student" and (cfg.device, sub) in teacher_mem else None)
        rows.append({"model": cfg.label, "modalities": sub, "device": cfg.device,
                     "params (M)": cost.params_m, "GFLOPs": cost.gflops,
                     "peak memory (MiB)": cost.peak_mem_mib,
                     "memory vs teacher (%)": ratio,
                     "measured as": f"same extractors as {reused}" if reused else "measured"})
    methods_used = sorted({c.memory_method for _, c, _ in results})
    table = Table(name="efficiency", title=f"Inference cost per modality subset, batch 1, {what}",
                  columns=["model", "modalities", "device", "params (M)", "GFLOPs",
                           "peak memory (MiB)", "memory vs teacher (%)", "measured as"],
                  rows=rows,
                  notes=["params and GFLOPs cover the extractors of the present modalities, "
                         "Θ-Average, the fusion block and the MH-MLP; GFLOPs from "
                         "torch.utils.flop_counter (1 multiply-add = 2 FLOPs).",
                         *[f"peak memory: {m}" for m in methods_used]])
    for device in sorted({c.device for c in configs}):
        subsets = [subset_label(c.subset) for c in configs
                   if c.device == device and c.role == "teacher"]
        series: dict[str, dict[str, list[float | None]]] = {"peak memory (MiB)": {}, "GFLOPs": {}}
        for label in ("KARMMA_T", "KARMMA_S"):
            by_sub = {r["modalities"]: r for r in rows if r["device"] == device
                      and r["model"] == label}
            series["peak memory (MiB)"][label] = [by_sub[s]["peak memory (MiB)"] for s in subsets]
            series["GFLOPs"][label] = [by_sub[s]["GFLOPs"] for s in subsets]
        figs.append(plots.plot_efficiency(
            subsets, series, reports_dir / f"efficiency_{device.replace(':', '')}.png",
            title=f"Teacher vs student inference cost ({device}, batch 1)"))
    return [table], figs


# ----------------------------------------------------------------------------- report
def _report_rank(name: str) -> tuple[int, str]:
    for i, prefix in enumerate(REPORT_ORDER):
        if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
            return i, name
    return len(REPORT_ORDER), name


def write_reports(reports_dir: Path, tables: list[Table], title: str,
                  preamble: list[str] | None = None) -> Path:
    """Write the new tables, then rebuild report.md from every table and plot in the folder."""
    for t in tables:
        write_table(t, reports_dir)
    everything = [read_table(p) for p in sorted(reports_dir.glob("*.json"))
                  if _is_table(p)]
    everything.sort(key=lambda t: _report_rank(t.name))
    figs = sorted(reports_dir.glob("*.png"))
    return write_report(reports_dir, title, everything, figs, preamble)


def _is_table(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and {"name", "columns", "rows"} <= set(data)


# ----------------------------------------------------------------------------- comparisons
def compare_table(a: protocols.EvaluatedModel, b: protocols.EvaluatedModel,
                  subsets: list[tuple[str, ...]], labels: dict[str, np.ndarray], split: str,
                  n_boot: int = 2000) -> Table:
    """A − B per modality subset with its paired-bootstrap interval (`significance`)."""
    from mmkd.eval.significance import paired_bootstrap

    metric = metrics.primary_metric(list(labels))
    rows = []
    for subset in subsets:
        key = protocols.subset_key(subset)
        right = [{s: metrics.correct(p[key], labels)[metric] for s, p in m.runs.items()
                  if key in p} for m in (a, b)]
        if not right[0] or not right[1]:
            missing = a if not right[0] else b
            raise MmkdError(f"{missing.name} was not trained on {subset_label(subset)} "
                            f"(its modalities: {subset_label(missing.modalities)}); compare on "
                            "a subset of both models' modalities")
        d = paired_bootstrap(*right, n_boot=n_boot)
        rows.append({"modalities": subset_label(subset),
                     f"{a.label} (%)": protocols.aggregate([100 * c.mean() for c in right[0].values()]),
                     f"{b.label} (%)": protocols.aggregate([100 * c.mean() for c in right[1].values()]),
                     "difference (points)": d.diff, "95% CI low": d.low, "95% CI high": d.high,
                     "A > B": "yes" if d.low > 0 else "no" if d.high < 0 else "not shown",
                     "seeds A > B": f"{d.wins}/{d.shared}",
                     "seeds (A, B)": f"{len(right[0])}, {len(right[1])}"})
    n = len(labels[next(iter(labels))])
    return Table(name=f"compare_{a.name}_vs_{b.name}",
                 title=f"{metric.capitalize()} accuracy: {a.label} (A) − {b.label} (B), "
                       f"{split} ({n} samples)",
                 columns=["modalities", f"{a.label} (%)", f"{b.label} (%)",
                          "difference (points)", "95% CI low", "95% CI high", "A > B",
                          "seeds A > B", "seeds (A, B)"],
                 rows=rows,
                 notes=[f"95% interval from a paired bootstrap ({n_boot} replicates): each "
                        "replicate resamples the test samples (the same draw for A and B) and "
                        "each method's training seeds (independently), and takes A's mean "
                        "accuracy over its seeds minus B's. A > B: yes / no when the interval "
                        "excludes 0, else not shown.",
                        "seeds A > B: in how many of the seed numbers trained for both A's "
                        "accuracy on the whole split is higher.",
                        "Cells with ± are mean ± std over the training seeds."])
