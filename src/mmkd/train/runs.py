"""One way to set up a training run (config → data → model → task → `fit`), used by stage 2,
pretraining, stage-3 fine-tuning and the ablations, and what they all resolve the same way:
split names, the device, the label heads, the config fingerprint that guards a resume, and the
training seeds (one model per seed in OUT/seed-<n>/, so seed noise can be measured).

The caller brings the data (cached tokens, decoded clips) and a model factory; `build_task` seeds
torch, builds the model with the method's missing-modality strategy and wraps it in the method's
task; `fit_run` writes the resolved config next to the outputs and fingerprints everything that
changes the result (recipe, method config, features and their provenance, ...).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmkd import config as C
from mmkd.errors import ConfigError, MmkdError
from mmkd.registry import methods
from mmkd.train import distributed as D
from mmkd.train.loop import FitResult, ProgressFn, fit

TRAIN_SPLIT, VAL_SPLIT = "train", "val"
SEED_DIR = re.compile(r"seed-(\d+)")


def resolve_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def label_heads(cache, cfg: C.RunConfig) -> dict[str, int]:
    """data.heads with their class counts from the cache (one error naming the unknown ones)."""
    unknown = [h for h in cfg.data.heads if h not in cache.heads]
    if unknown:
        raise MmkdError(f"data.heads lists {unknown} but the cache has only "
                        f"{list(cache.heads)}; fix data.heads in mmkd.yaml")
    return {h: cache.heads[h] for h in cfg.data.heads}


def config_fingerprint(**parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def method_class(name: str, cfg: C.RunConfig):
    """The registered method and its typed config (defaults + `methods.<name>` of the run)."""
    problems = C.method_problems(cfg)  # every `methods.*` section, not only this method's
    if problems:
        raise ConfigError(problems)
    cls = methods.get(name)
    return cls, cls.config_from(cfg)


def build_task(name: str, cfg: C.RunConfig, train: C.TrainConfig, n_samples: int,
               make_model: Callable[[str], torch.nn.Module], configured_strategy: str):
    """Seed torch with train.seed, build the model with the method's strategy, wrap it."""
    cls, mcfg = method_class(name, cfg)
    strategy = cls.missing_strategy(configured_strategy)
    torch.manual_seed(train.seed)
    model = make_model(strategy)
    return cls(model, mcfg, train, n_samples, make_model=lambda: make_model(strategy))


def fit_run(task, train_batches, val_batches, train: C.TrainConfig, cfg: C.RunConfig,
            out_dir: Path, meta: dict[str, Any], fingerprint: dict[str, Any], device: str | None,
            progress: ProgressFn | None, resume: bool, checkpoint_every: int) -> FitResult:
    """`fit` with the method, its config and the resolved run config in meta and fingerprint.
    `fingerprint` holds what else decides the result (features, provenance, heads, ...)."""
    if train.batch_size % D.rank_world()[1]:
        raise MmkdError(f"train.batch_size={train.batch_size} is the global batch and must be "
                        f"divisible by the {D.rank_world()[1]} processes")
    method_cfg = dataclasses.asdict(task.cfg)
    meta = {"method": task.name, "method_config": method_cfg, **meta, "config": C.to_dict(cfg)}
    meta["fingerprint"] = config_fingerprint(**{"method": task.name, "method_config": method_cfg,
                                                "recipe": dataclasses.asdict(train),
                                                **fingerprint})
    if D.rank_world()[0] == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    return fit(task, train_batches, val_batches, train, out_dir, meta,
               device=resolve_device(device), progress=progress, resume=resume,
               checkpoint_every=checkpoint_every)


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` (or a range `0-4`) as distinct non-negative ints, in the given order."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise MmkdError(f"--seeds {text}: use non-negative integers, e.g. 0,1,2 or 0-4")
        seeds += [s for s in range(int(lo), int(hi or lo) + 1) if s not in seeds]
    return seeds


def seed_dir(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed-{seed}"


def with_seed(cfg: C.RunConfig, role: str, seed: int) -> C.RunConfig:
    """A copy of the run config whose `role` recipe trains with train.seed = seed (the seed
    drives the initialisation, the shuffling and the modality dropout)."""
    out = copy.deepcopy(cfg)
    getattr(out, role).train.seed = seed
    return out


def seed_plan(cfg: C.RunConfig, role: str, out_dir: Path, seeds: list[int] | None
              ) -> list[tuple[C.RunConfig, Path]]:
    """(config, output folder) per training run: the run itself without seeds, else one per
    seed in OUT/seed-<n>/ (each resumes on its own)."""
    if not seeds:
        return [(cfg, Path(out_dir))]
    return [(with_seed(cfg, role, s), seed_dir(out_dir, s)) for s in seeds]


def run_name(out_dir: Path) -> str:
    """A run's name for cache entries: its folder, prefixed by the model's for a seed folder
    (karmma-ft-audio/seed-1 -> karmma-ft-audio-seed-1)."""
    out_dir = Path(out_dir)
    return f"{out_dir.parent.name}-{out_dir.name}" if SEED_DIR.fullmatch(out_dir.name) \
        else out_dir.name


def seeded_runs(model_dir: Path) -> dict[int, Path]:
    """The trained runs of one model folder by training seed: its seed-<n>/ subfolders and the
    folder itself when it holds a run (counted as the seed its config recorded)."""
    runs: dict[int, Path] = {}
    if (model_dir / "meta.json").exists():
        meta = json.loads((model_dir / "meta.json").read_text())
        role = meta.get("kind", "student")
        runs[int(meta.get("config", {}).get(role, {}).get("train", {}).get("seed", 0))] = model_dir
    for d in sorted(model_dir.iterdir()) if model_dir.is_dir() else ():
        m = SEED_DIR.fullmatch(d.name)
        if m and (d / "meta.json").exists():
            if int(m.group(1)) in runs:
                raise MmkdError(f"{model_dir}: seed {m.group(1)} is trained twice (in {d.name}/ "
                                "and in the folder itself); remove one of them")
            runs[int(m.group(1))] = d
    return dict(sorted(runs.items()))
