"""`mmkd demo` as a library: the whole pipeline on the built-in dataset, stage by stage, resumable.

    generate (demo-data) → manifest (epic100 builder) → init (run config) → pretrain (video and
    flow extractors on the train split) → extract (teacher and student extractors per modality)
    → train teacher → distill (karmma, baseline, baseline-delta; one model per seed) → eval
    (subsets + missing rates, mean ± std over seeds; KARMMA_S vs Baseline w/ δ with a paired
    bootstrap interval) → report

Each stage is a function the CLI runs with a progress bar; independent work (pretraining
video and flow, the six extractions, the teacher and the students' seeds) runs as jobs side by
side in worker processes. A stage whose output already exists is
skipped (generate, manifest, init, pretrain) or resumes where it stopped (extract skips done
shards; training continues from its last checkpoint and returns at once when finished), so a
re-run after an interruption only does what is left. Nothing here prints.

Why the demo pretrains its video and flow extractors (`mmkd pretrain`), and why its audio is
weak: with random Swins (the earlier design) audio was the strongest modality of this dataset
and video nearly useless (V alone 4–11 % action), the opposite of EPIC, so Baseline did not
collapse without video. Pretrained on the train split (the stand-in for Kinetics-400), video is
the strongest modality and audio (random extractors, many barely audible actions) the weakest,
as in EPIC (Table 1: A alone 2–8 %).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmkd import config as C
from mmkd import rundir
from mmkd.errors import MmkdError

STUDENT_METHODS = ("karmma", "baseline", "baseline-delta")
COMPARED = ("karmma", "baseline-delta")  # the demo's question: does KARMMA_S beat Baseline w/ δ?


@dataclass
class DemoPaths:
    out: Path
    scale: str
    seed: int = 0

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def manifest(self) -> Path:
        return self.run / "manifest"


def data_ready(p: DemoPaths) -> bool:
    """Whether `data/demo.json` records a finished dataset of the same scale and seed."""
    from mmkd.demo.generate import DEMO_JSON

    info = p.data / DEMO_JSON
    if not info.exists():
        return False
    meta = json.loads(info.read_text())
    return meta.get("scale") == p.scale and meta.get("seed") == p.seed


def generate_data(p: DemoPaths, progress: Callable[[int], None] | None = None,
                  workers: int | None = None) -> tuple[bool, str]:
    """The built-in dataset; skipped when it is already there (`data_ready`)."""
    from mmkd.demo.generate import generate

    if data_ready(p):
        return False, f"{p.data} ({p.scale}, seed {p.seed}) already generated"
    s = generate(p.data, p.scale, p.seed, workers=workers, overwrite=True,
                 command=f"mmkd demo --out {p.out} --scale {p.scale}", progress=progress)
    return True, (f"{s.videos} videos, segments {', '.join(f'{k} {v}' for k, v in s.segments.items())}"
                  f" in {s.seconds:.0f} s")


def n_videos(p: DemoPaths) -> int:
    from mmkd.demo.plan import make_plan

    return len(make_plan(p.scale, p.seed).videos)


def build_manifest(p: DemoPaths) -> tuple[bool, str]:
    """EPIC-100 manifests (train/val/test) with the real builder; skipped when present."""
    from mmkd.datasets.epic100 import build_epic100
    from mmkd.datasets.manifest import read_meta

    if (p.manifest / "meta.json").exists():
        meta = read_meta(p.manifest)
        return False, f"{p.manifest} already built (splits {', '.join(meta.splits)})"
    build_epic100(p.data / "annotations", p.data / "media", p.manifest,
                  command=f"mmkd manifest epic100 --annotations {p.data / 'annotations'} "
                          f"--media-root {p.data / 'media'} --out {p.manifest}")
    meta = read_meta(p.manifest)
    return True, f"splits {', '.join(meta.splits)}; heads {meta.heads}"


def init_run(p: DemoPaths, overrides: list[str] | None = None) -> tuple[bool, C.RunConfig]:
    """RUN/mmkd.yaml from the demo preset + overrides, with the extractor weights of the
    pretrained modalities pointing at the pretrain stage's outputs; an existing one is kept."""
    target = p.run / C.CONFIG_FILE
    if target.exists():
        return False, C.load(target, overrides)
    from mmkd.train.pretrain import PRETRAINED_DIR, weights_name

    cfg = C.run_preset("demo")
    cfg.data.annotations = str((p.data / "annotations").resolve())
    cfg.data.media_root = str((p.data / "media").resolve())
    cfg = C.apply_overrides(cfg, list(overrides or []))
    cfg.validate()
    for role in (cfg.teacher, cfg.student):  # the pretrain stage writes these files
        for m in pretrained_modalities(cfg):  # (after overrides: they may change extractors)
            role.weights.setdefault(m, f"{PRETRAINED_DIR}/{weights_name(m, role.extractors[m])}")
    C.save(cfg, target)
    return True, cfg


def pretrained_modalities(cfg: C.RunConfig) -> list[str]:
    return [m for m in cfg.pretrain.modalities if m in cfg.data.modalities]


def pretrain_pending(p: DemoPaths, cfg: C.RunConfig) -> list[str]:
    """The pretrained modalities whose weights are not all written yet."""
    pending = []
    for m in pretrained_modalities(cfg):
        files = [role.weights.get(m) for role in (cfg.teacher, cfg.student)]
        if not all(f and (p.run / f).exists() for f in files):
            pending.append(m)
    return pending


@dataclass
class ExtractTarget:
    modality: str
    role: str
    extractor: str


def extract_targets(cfg: C.RunConfig) -> list[ExtractTarget]:
    """Teacher and student extractor for every modality (one entry when they coincide)."""
    out: list[ExtractTarget] = []
    for m in cfg.data.modalities:
        for role in ("teacher", "student"):
            name = getattr(cfg, role).extractors[m]
            if not any(t.modality == m and t.extractor == name for t in out):
                out.append(ExtractTarget(m, role, name))
    return out


def extract(p: DemoPaths, cfg: C.RunConfig, target: ExtractTarget, report: Any) -> Any:
    """One (modality, extractor) into the cache with its configured weights (random where none
    are configured); done shards are skipped. A job: it decodes in its own process, next to
    another extraction (each writes its own feature group, which the cache allows)."""
    from mmkd.extract.runner import ExtractJob, run_extract
    from mmkd.extract.sampling import ClipSampler

    ex = cfg.extract
    weights = getattr(cfg, target.role).weights.get(target.modality) or None
    if weights and not Path(weights).is_absolute():
        weights = str(p.run / weights)
    job = ExtractJob(cache_path=str(rundir.cache_path(p.run)), manifest_dir=str(p.manifest),
                     modality=target.modality, extractor=target.extractor, weights=weights,
                     random_init=weights is None, theta=ex.theta, batch_size=ex.batch_size,
                     workers=0, device=ex.device, strict=ex.strict,
                     shard_size=ex.shard_size,
                     sampler=ClipSampler(cfg.clip.num_frames, cfg.clip.frame_stride,
                                         cfg.clip.sampling))
    return run_extract(job, progress=report.advance, on_start=report.start)


def pretrain(p: DemoPaths, cfg: C.RunConfig, modality: str, report: Any) -> list[Any]:
    """The teacher's and the student's extractor of `modality` on the train split (a job:
    decoding in this process, as the jobs already use every core)."""
    from mmkd.train.pretrain import pretrain_modality

    return pretrain_modality(p.run, cfg, modality, report, workers=0)


def train_rounds(seeds: list[int]) -> list[list[tuple[str, int | None]]]:
    """(model, seed) jobs in rounds; each round's jobs run side by side. KARMMA_S needs the
    teacher's logits, so its seeds form the second round, with one Baseline w/ δ seed moved
    there to keep both rounds even on two workers."""
    delta = [("baseline-delta", s) for s in seeds]
    first = [("teacher", None), *[("baseline", s) for s in seeds], *delta[:-1]]
    return [first, [("karmma", s) for s in seeds] + delta[-1:]]


def train(p: DemoPaths, cfg: C.RunConfig, name: str, seed: int | None, report: Any) -> Any:
    """A job: the teacher (`name` "teacher"; its logits go into the cache) or one seed of one of
    `STUDENT_METHODS` (in students/NAME/seed-N/), on CPU, reporting the loop's events. Returns
    the teacher's result or the student's FitResult."""
    from mmkd.train.runs import seed_plan
    from mmkd.train.stage2 import distill, train_teacher

    if name == "teacher":
        return train_teacher(rundir.cache_path(p.run), cfg, p.run / "teacher", device="cpu",
                             progress=report.event)
    if name not in STUDENT_METHODS:
        raise MmkdError(f"demo method {name!r}: use one of {', '.join(STUDENT_METHODS)}")
    [(seeded, out_dir)] = seed_plan(cfg, "student", p.run / "students" / name,
                                    None if seed is None else [seed])
    return distill(rundir.cache_path(p.run), seeded, out_dir, method=name, device="cpu",
                   progress=report.event)


def _pct(cell: Any, digits: int = 1) -> str:
    """A table cell as a percentage: mean ± std over seeds, or a single run's value."""
    from mmkd.eval.reports import MeanStd

    if isinstance(cell, MeanStd):
        return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}%"
    return f"{cell:.{digits}f}%"


def findings(reports_dir: Path, metric: str = "action") -> list[str]:
    """The demo's questions answered from the measured tables, as sentences."""
    from mmkd.eval.reports import read_table
    from mmkd.subsets import LETTERS

    subsets = read_table(reports_dir / f"subsets_{metric}.json")
    robust_path = reports_dir / f"robustness_{metric}.json"
    by = {r["method"]: r for r in subsets.rows}
    majority = next((n for n in subsets.notes if n.startswith("Majority")), "")
    full = subsets.columns[1]
    out = [f"{metric} accuracy with {full}: " + ", ".join(
        f"{m} {_pct(r[full])}" for m, r in by.items()) + (f" ({majority})" if majority else "")]
    if robust_path.exists():
        robust = read_table(robust_path)
        rest = robust.columns[2]
        gone = "+".join(set(full.split("+")) - set(rest.split("+")))
        gone = {letter: m for m, letter in LETTERS.items()}.get(gone, gone)
        out.append(f"without {gone} ({rest}): " + ", ".join(
            f"{r['method']} {_pct(r[rest])}" + (f" (keeps {_pct(r['kept (%)'], 0)})"
                                                if r["kept (%)"] is not None else "")
            for r in robust.rows))
    compare_path = reports_dir / f"compare_{COMPARED[0]}_vs_{COMPARED[1]}.json"
    if compare_path.exists():
        out.append(verdict(read_table(compare_path)))
    return out


def verdict(compare: Any) -> str:
    """One sentence from a `compare_table`: A − B per subset with its interval and seed wins."""
    a, b = (c[:-len(" (%)")] for c in compare.columns[1:3])
    parts = [f"{r['difference (points)']:+.1f} points with {r['modalities']} (95% CI "
             f"[{r['95% CI low']:+.1f}, {r['95% CI high']:+.1f}], ahead in {r['seeds A > B']} "
             "seeds)" for r in compare.rows]
    shown = [r["A > B"] for r in compare.rows]
    word = ("beats" if all(v == "yes" for v in shown) else
            "partly beats" if "yes" in shown else
            "is beaten by" if all(v == "no" for v in shown) else
            "does not beat (an interval includes 0)")
    return f"{a} {word} {b}: " + "; ".join(parts)
