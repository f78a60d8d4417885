"""Supervised pretraining of stage-1 extractors on the run's own train split (`mmkd pretrain`).

For datasets without a usable pretrained checkpoint: the built-in demo (nothing can be
downloaded here, and random Video Swins see too little of its pictures), or an extractor the
paper trains from scratch (AST-Tiny, STLT). Each extractor gets one linear classifier per label
head on its mean output token and is trained with cross-entropy by stage 2's loop
(`mmkd.train.loop.fit`: schedule, clipping, best epoch on `val`, exact resume); its best weights
are exported as `<out>/<modality>-<extractor>.safetensors`, which `mmkd extract --weights` (or
`teacher/student.weights.<modality>` in mmkd.yaml) loads like any checkpoint, with the
classifier dropped.

Inputs are stage 1's (readers, the run's clip policy, the extractor's input contract) plus
stage 3's augmentation. Clips are decoded once, in decode worker processes, and kept in RAM as
float16 (`in_ram`, the default: the demo's 8×64×64 clips are 200 KB each) or decoded again every
epoch. Extractors of one modality with the same input contract (the teacher's and the student's)
share the decoded clips. Samples whose media cannot be decoded are left out and counted.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmkd import config as C
from mmkd.datasets.manifest import read_all
from mmkd.errors import MmkdError
from mmkd.extract.extractors import Extractor, create_extractor, get_spec
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.sampling import ClipSampler
from mmkd.files import sha256_file, write_safetensors
from mmkd.train import checkpoint as ckpt
from mmkd.train.augment import Augment, resolve_hflip
from mmkd.train.finetune_data import RawClips
from mmkd.train.finetune_model import extractor_no_weight_decay
from mmkd.train.loop import FitResult, ProgressFn
from mmkd.train.methods import BaselineMethod
from mmkd.train.methods.base import NoConfig
from mmkd.train.pretrain_data import ClipBatches, DecodedClips, decode_split
from mmkd.train.runs import TRAIN_SPLIT, VAL_SPLIT, fit_run

PRETRAINED_DIR = "pretrained"


def weights_name(modality: str, extractor: str) -> str:
    return f"{modality}-{extractor}.safetensors"


# ------------------------------------------------------------------------------- the model
@dataclass
class ClassifierSpec:
    extractor: str
    modality: str
    heads: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ClassifierOutput:
    logits: dict[str, torch.Tensor]  # head -> (B, C)


class ExtractorClassifier(nn.Module):
    """An extractor with one linear classifier per label head on its mean output token."""

    def __init__(self, extractor: Extractor, modality: str, heads: dict[str, int]):
        super().__init__()
        self.spec = ClassifierSpec(extractor.spec.name, modality, dict(heads))
        self.extractor = extractor
        self.heads = nn.ModuleDict({h: nn.Linear(extractor.spec.dim, c) for h, c in heads.items()})

    def no_weight_decay(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.ndim < 2} \
            | extractor_no_weight_decay(self.extractor, "extractor")

    def forward(self, tokens: dict[str, Any], present: dict[str, torch.Tensor]
                ) -> ClassifierOutput:
        pooled_BD = self.extractor(tokens[self.spec.modality]).mean(1)
        return ClassifierOutput({h: head(pooled_BD) for h, head in self.heads.items()})


class PretrainMethod(BaselineMethod):
    """Baseline's step (cross-entropy averaged over the heads, no modality dropout) on the
    classifier's logits."""

    name = "pretrain"


# ------------------------------------------------------------------------------- entry points
@dataclass
class PretrainInputs:
    """The train and val clips of one modality for one input contract, ready for `fit`."""

    modality: str
    contract: str  # `input_key` of the extractors that can use these clips
    heads: dict[str, int]
    labels: dict[str, np.ndarray]  # head -> (N,) over the manifest's samples
    train: torch.utils.data.Dataset
    train_idx: np.ndarray  # manifest rows in each split (decoded ones, when in RAM)
    val: torch.utils.data.Dataset
    val_idx: np.ndarray
    stream_workers: int  # decode workers while training (0: the clips are in RAM)
    flip: bool
    manifest_dir: Path
    n_samples: int
    failures: Counter = field(default_factory=Counter)  # decode failure reason -> count


@dataclass
class PretrainResult:
    modality: str
    extractor: str
    weights: Path  # the exported extractor checkpoint
    sha256: str
    fit: FitResult
    train_clips: int
    val_clips: int
    failures: Counter = field(default_factory=Counter)  # media left out: reason -> count


def default_extractors(cfg: C.RunConfig, modality: str) -> list[str]:
    """The teacher's and the student's extractor of `modality` (once when they coincide)."""
    names = [r.extractors[modality] for r in (cfg.teacher, cfg.student) if modality in r.extractors]
    return list(dict.fromkeys(names))


def input_key(extractor: str) -> str:
    """Extractors with equal keys read identical inputs (their clips can be shared)."""
    spec = get_spec(extractor)
    return f"{spec.input_kind}:{sorted(spec.contract().items())}"


def prepare_inputs(run_dir: str | Path, cfg: C.RunConfig, modality: str, extractor: str,
                   workers: int | None = None, in_ram: bool = True,
                   on_start: Callable[[int], None] | None = None,
                   progress: Callable[[int], None] | None = None) -> PretrainInputs:
    """The run's train/val clips for `extractor`'s input contract; decoded now when `in_ram`
    (`on_start(n)` once, `progress(k)` per decoded batch), else on every epoch."""
    if modality not in cfg.data.modalities:
        raise MmkdError(f"--modality {modality}: not in this run's data.modalities "
                        f"({', '.join(cfg.data.modalities)})")
    manifest_dir = cfg.manifest_path(run_dir)
    meta, samples = read_all(manifest_dir)
    heads = {h: meta.heads[h] for h in cfg.data.heads}
    splits = np.array([s.split for s in samples])
    train_idx, val_idx = np.flatnonzero(splits == TRAIN_SPLIT), np.flatnonzero(splits == VAL_SPLIT)
    if len(train_idx) == 0:
        raise MmkdError(f"{manifest_dir}: no '{TRAIN_SPLIT}' samples to pretrain on")
    labels = {h: np.array([s.labels.get(h, -1) for s in samples], dtype=np.int64) for h in heads}
    sampler = ClipSampler(cfg.clip.num_frames, cfg.clip.frame_stride, cfg.clip.sampling)
    build = InputBuilder(modality, get_spec(extractor), sampler, meta, str(manifest_dir))
    workers = cfg.extract.workers if workers is None else workers
    flip = resolve_hflip(cfg.augment.hflip, cfg.data.dataset, meta.classes)
    seed = cfg.pretrain.train.seed
    augment = Augment(modality, build.spec.input_kind, flip)
    common = dict(modality=modality, contract=input_key(extractor), heads=heads, labels=labels,
                  flip=flip, manifest_dir=manifest_dir, n_samples=len(samples))
    if not in_ram:
        return PretrainInputs(train=RawClips(samples, {modality: build}, {modality: augment}, seed),
                              train_idx=train_idx, val=RawClips(samples, {modality: build}, None,
                                                                 seed),
                              val_idx=val_idx, stream_workers=workers, **common)
    if on_start is not None:
        on_start(len(train_idx) + len(val_idx))
    failures: Counter = Counter()
    sets = []
    for idx, aug in ((train_idx, augment), (val_idx, None)):
        tensors, failed = decode_split(samples, idx, build, workers, progress)
        failures.update(failed)
        sets.append((DecodedClips(modality, tensors, aug, seed),
                     np.array(sorted(tensors), dtype=np.int64)))
    (train, train_ok), (val, val_ok) = sets
    return PretrainInputs(train=train, train_idx=train_ok, val=val, val_idx=val_ok,
                          stream_workers=0, failures=failures, **common)


def train_extractor(run_dir: str | Path, cfg: C.RunConfig, inputs: PretrainInputs,
                    extractor: str, out_dir: str | Path | None = None, device: str = "cpu",
                    progress: ProgressFn | None = None, resume: bool = True) -> PretrainResult:
    """Train `extractor` (random init) + linear heads on `inputs`; export its best weights as
    OUT/<modality>-<extractor>.safetensors (OUT: RUN_DIR/pretrained by default). The loop's
    checkpoints stay in OUT/.<modality>-<extractor>/, so a killed run resumes."""
    if input_key(extractor) != inputs.contract:
        raise MmkdError(f"extractor {extractor} reads other inputs than these clips were "
                        "decoded for; prepare them with its own input contract")
    m, tcfg = inputs.modality, cfg.pretrain.train
    out = Path(out_dir) if out_dir else Path(run_dir) / PRETRAINED_DIR
    model = ExtractorClassifier(create_extractor(extractor, random_init=True)
                                .requires_grad_(True), m, inputs.heads)
    train_b = ClipBatches(inputs.train, inputs.train_idx, inputs.labels, m, tcfg.batch_size,
                          True, tcfg.seed, inputs.stream_workers)
    val_b = (ClipBatches(inputs.val, inputs.val_idx, inputs.labels, m, tcfg.batch_size, False,
                         tcfg.seed, inputs.stream_workers) if len(inputs.val_idx) else None)
    meta = {"kind": "pretrain", "extractor": extractor, "modality": m, "heads": inputs.heads,
            "clip": C.to_dict(cfg.clip), "recipe": C.to_dict(tcfg), "flip": inputs.flip,
            "manifest": str(inputs.manifest_dir)}
    task = PretrainMethod(model, NoConfig(), tcfg, inputs.n_samples)
    ckpt_dir = out / f".{m}-{extractor}"
    res = fit_run(task, train_b, val_b, tcfg, cfg, ckpt_dir, meta, meta,
                  device, progress, resume, checkpoint_every=0)
    path = export_extractor(ckpt_dir, out / weights_name(m, extractor))
    failures = inputs.failures + train_b.failures + (val_b.failures if val_b else Counter())
    return PretrainResult(m, extractor, path, sha256_file(path), res, len(inputs.train_idx),
                          len(inputs.val_idx), failures)


def pretrain_modality(run_dir: str | Path, cfg: C.RunConfig, modality: str, report: Any,
                      extractors: list[str] | None = None, out_dir: str | Path | None = None,
                      workers: int | None = None, in_ram: bool = True, device: str = "cpu",
                      resume: bool = True) -> list[PretrainResult]:
    """Pretrain `extractors` (default: the run's teacher and student extractor) of `modality`,
    decoding once per input contract. `report` takes the progress callbacks: `phase(text)`,
    `start(total)` and `advance(n)` while decoding, `event(TrainEvent)` while training."""
    names = extractors or default_extractors(cfg, modality)
    if not names:
        raise MmkdError(f"no extractor for {modality}: pass --extractor NAME or set "
                        f"teacher.extractors.{modality} in mmkd.yaml")
    prepared: dict[str, PretrainInputs] = {}
    results = []
    for name in names:
        key = input_key(name)
        if key not in prepared:
            report.phase(f"decode for {name}")
            prepared[key] = prepare_inputs(run_dir, cfg, modality, name, workers, in_ram,
                                           on_start=report.start, progress=report.advance)
        report.phase(name)
        results.append(train_extractor(run_dir, cfg, prepared[key], name, out_dir, device,
                                       report.event, resume))
    return results


def export_extractor(ckpt_dir: Path, path: Path) -> Path:
    """The best checkpoint's extractor weights (classifier dropped), in the extractor's own key
    layout, written atomically."""
    from safetensors.torch import load_file

    best = load_file(str(ckpt_dir / ckpt.BEST))
    sd = {k[len("extractor."):]: v for k, v in best.items() if k.startswith("extractor.")}
    # the cache records this file's sha256 as provenance: one metadata entry (see the writer)
    return write_safetensors(path, sd, {"format": "mmkd-extractor"})
