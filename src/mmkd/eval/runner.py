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
from mmkd.eval.reports import Table, read_table, write_report, write_table
from mmkd.subsets import modality_subsets, subset_label

PROTOCOLS = ("subsets", "missing-rate", "efficiency", "ablations")
ACCURACY_PROTOCOLS = ("subsets", "missing-rate")
# The paper's label heads, for efficiency at paper sizes (EPIC-100: 97 verbs, 300 nouns).
PAPER_HEADS = {"epic100": {"verb": 97, "noun": 300}, "ssv2": {"action": 174}}
ORDER = ["teacher", "baseline", "baseline-delta", "karmma"]  # registered methods follow, by name
REPORT_ORDER = ["subsets_", "unimodal_", "robustness_", "subsets", "missing_rate_", "missing_rate", "seen_unseen",
                "efficiency", "ablation_tokens", "ablation_strategies"]


@dataclass
class ModelRef:
    name: str  # "teacher" or the students/ folder name
    label: str
    ckpt_dir: Path


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
    """Trained models of a run (RUN/teacher, RUN/students/*) that have a best checkpoint."""
    found: dict[str, Path] = {}
    if (run_dir / "teacher" / "meta.json").exists():
        found["teacher"] = run_dir / "teacher"
    students = run_dir / "students"
    if students.is_dir():
        for d in sorted(students.iterdir()):
            if (d / "meta.json").exists():
                found[d.name] = d
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
    unseen: np.ndarray | None
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


def _unseen_flags(cache: Any, idx: np.ndarray, manifest_dir: Path | None) -> np.ndarray | None:
    """Per-sample unseen-participant flags from the manifest, when it has both groups."""
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
        return None
    arr = np.asarray(flags, dtype=bool)
    return arr if arr.any() and not arr.all() else None


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
        model, meta = load_model(ref.ckpt_dir, map_location=device)
        mods = list(model.spec.modalities)
        missing_heads = [h for h in heads if h not in model.spec.heads]
        if missing_heads:
            raise MmkdError(f"{ref.ckpt_dir}: the model has no head {missing_heads} that the "
                            "evaluated dataset has; evaluate it on the run it was trained on")
        features = meta.get("features")
        if not features:
            raise MmkdError(f"{ref.ckpt_dir}/meta.json has no 'features' (modality -> extractor); "
                            "retrain it with this mmkd version")
        conds = protocols.build_conditions(mods, len(data.indices), protocol_names, rates, seeds)
        batches = CacheBatches(cache, {m: features[m] for m in mods}, data.split, batch_size,
                               shuffle=False, seed=0)
        preds = predict(model, mods, heads, batches, data.indices, conds, device, progress)
        out.append(protocols.EvaluatedModel(ref.name, ref.label, mods, preds))
    return out


def accuracy_tables(evaluated: list[protocols.EvaluatedModel], modalities: list[str],
                    data: SplitData, protocol_names: list[str], rates: list[float],
                    seeds: list[int], reports_dir: Path) -> tuple[list[Table], list[Path]]:
    """Tables (and the Fig. 4 plot) of the accuracy protocols."""
    tables: list[Table] = []
    figs: list[Path] = []
    heads = list(data.labels)
    metric = metrics.primary_metric(heads)
    majority_note = ("Majority class (most frequent training "
                     f"{'(verb, noun) pair' if len(heads) > 1 else 'class'}) on {data.split}: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in data.majority.items()))
    if "subsets" in protocol_names:
        pivot = protocols.subsets_pivot(evaluated, modalities, data.labels, data.split)
        pivot.notes.append(majority_note)
        long = protocols.subsets_table(evaluated, modalities, data.labels, data.split)
        long.notes.append(majority_note)
        tables += [pivot, long]
        unimodal = protocols.unimodal_table(evaluated, modalities, data.labels, data.split)
        if unimodal is not None:
            tables.append(unimodal)
        robust = protocols.robustness_table(evaluated, modalities, data.labels, data.split)
        if robust is not None:
            tables.append(robust)
        if data.unseen is not None:
            tables.append(protocols.seen_unseen_table(evaluated, modalities, data.labels,
                                                      data.unseen, data.split))
    if "missing-rate" in protocol_names:
        long, curves = protocols.missing_rate_results(evaluated, data.labels, rates, seeds)
        pivot = protocols.missing_rate_pivot(curves[metric], metric, len(seeds))
        pivot.notes.append(majority_note)
        tables += [pivot, long]
        figs.append(plots.plot_missing_rate(
            curves[metric], metric, reports_dir / f"missing_rate_{metric}.png",
            chance=data.majority[metric],
            title=f"{metric.capitalize()} accuracy vs missing rate ({data.split}, mean ± std over "
                  f"{len(seeds)} seeds)"))
    return tables, figs


# ----------------------------------------------------------------------------- efficiency
def efficiency_configs(cfg: C.RunConfig, sizes: str, devices: list[str],
                       heads: dict[str, int] | None = None) -> tuple[list[CostConfig], str]:
    """Teacher and student at every modality subset; `sizes` paper (Fig. 5) or run (this run)."""
    if sizes == "paper":
        dataset = "ssv2" if cfg.data.dataset == "ssv2" else "epic100"
        base = C.run_preset(dataset)
        theta, frames, head_sizes = 300, 32, PAPER_HEADS[dataset]
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
