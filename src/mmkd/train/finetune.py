"""Stage 3: fine-tune the student's feature extractors of some modalities end to end.

Starting from a stage-2 student (`RUN_DIR/students/karmma`), the extractors of the chosen
modalities are rebuilt with the weights their cached tokens came from (checked against the
cache provenance), made trainable and trained together with the fusion block on raw media
(stage 1's readers and clip sampling + `mmkd.train.augment`), while the other modalities keep
their cached tokens and the distillation targets stay the cached teacher outputs. The training
itself is stage 2's: the same method task (karmma: γ·CE + λ·KL, modality dropout), run builder
(`mmkd.train.runs`), loop, schedule, checkpoints and exact resume; only the model (`EndToEndStudent`,
a FusionModel that runs its extractors + Θ-Average inside forward) and the batches
(`FinetuneBatches`) differ.

Memory and speed:
  - gradient checkpointing over the extractor's blocks (Swin blocks, ViT blocks, transformer
    encoder layers): activations are recomputed in backward instead of stored;
  - bf16 autocast on CUDA (the loop's `train.precision`);
  - `accum_steps` N: the extractors process each batch in N micro-batches, each checkpointed as
    a whole, so their gradients accumulate micro-batch by micro-batch in backward while only one
    micro-batch's activations are alive. The fusion block and the loss still see the whole batch,
    so the update equals the un-split one (InfoNCE/KL batch statistics included). Unlike the
    usual "N optimizer-free steps", the optimizer batch stays `train.batch_size` (see the README);
  - decoding in DataLoader worker processes, overlapped with the training step.
  - the extractors only run on samples whose modality is present after modality dropout.

Learning rate: the student recipe scaled by `lr_scale` (default 0.1; the paper has no stage 3).
The student is already trained, and re-warming it to the stage-2 peak undoes part of that: on
the small demo (audio, 10 epochs) lr_max 1e-3 lost 2.0 points of V+F+A test accuracy, 1e-4
gained 3.0.

Outputs in RUN_DIR/students/<from>-ft-<m1+m2>/: the loop's files (best.safetensors holds the
fusion block only, so `checkpoint.load_model` and `mmkd eval` read it like any student) plus
`extractors/<modality>.safetensors` (create_extractor-loadable weights) and, in meta.json, a
`finetune` record (extractors, weights sha256, before/after accuracy, s/epoch). This module holds
the options and the orchestration; its parts live next to it: where each modality starts from
(`finetune_sources`), the model (`finetune_model`), the outputs (`finetune_outputs`), the
re-extraction of the fine-tuned extractors' tokens into the cache as `<extractor>+ft-<out dir
name>` (`finetune_reextract`) and the before/after evaluation (`finetune_eval`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkd import config as C
from mmkd import rundir
from mmkd.errors import MmkdError
from mmkd.train import checkpoint as ckpt
from mmkd.train import finetune_cmpt as cmpt
from mmkd.train.finetune_data import FinetuneBatches
from mmkd.train.finetune_eval import evaluate_finetuned, subset_accuracy
from mmkd.train.finetune_model import EndToEndStudent, enable_grad_checkpointing
from mmkd.train.finetune_outputs import finalize, mean_epoch_seconds, update_meta
from mmkd.train.finetune_reextract import reextract
from mmkd.train.finetune_sources import describe_source, ft_entry, load_extractor, read_source
from mmkd.train.loop import FitResult, ProgressFn


# ------------------------------------------------------------------------------- options
@dataclass
class FinetuneOptions:
    """What `mmkd finetune` was asked for (the recipe itself is `student.train` of the run)."""

    modalities: list[str]
    from_dir: Path  # a stage-2 student: RUN_DIR/students/<name>
    out_dir: Path | None = None  # default: RUN_DIR/students/<from>-ft-<m1+m2>
    epochs: int | None = None  # None: student.train.epochs
    lr_scale: float = 0.1  # × student.train.lr_min/lr_max (module docstring: why 0.1)
    accum_steps: int = 1
    grad_checkpointing: bool = False
    workers: int | None = None  # decode processes; None: extract.workers
    device: str | None = None
    reextract: bool = False
    resume: bool = True
    checkpoint_every: int = 0
    method: str | None = None  # None: the --from student's; cmpt: LoRA + encoder proxies


@dataclass
class FinetuneResult:
    fit: FitResult
    out_dir: Path
    eval_split: str
    before: dict[str, dict[str, float]]  # subset label -> {acc, acc_<head>} of the --from student
    after: dict[str, dict[str, float]]  # the same for the fine-tuned student
    s_per_epoch: float  # training time per epoch, stage 3 (this run's metrics.jsonl)
    stage2_s_per_epoch: float | None  # the --from student's, from the cache
    extractor_weights: dict[str, Path]
    entries: dict[str, str] = field(default_factory=dict)  # modality -> new cache entry
    reextract: list[Any] = field(default_factory=list)  # ExtractResult per modality
    failures: Counter = field(default_factory=Counter)  # decode failures while training
    blocks_checkpointed: int = 0
    trainable_params: int = 0  # of the task: what the optimizer updates
    total_params: int = 0
    lora_layers: dict[str, int] = field(default_factory=dict)  # modality -> adapted layers (cmpt)


# ------------------------------------------------------------------------------- entry point
def finetune(run_dir: str | Path, cfg: C.RunConfig, opts: FinetuneOptions,
             progress: ProgressFn | None = None, status: Callable[[str], None] | None = None,
             extract_start: Callable[[int], None] | None = None,
             extract_progress: Callable[[int], None] | None = None) -> FinetuneResult:
    """Fine-tune, evaluate before/after per modality subset, and optionally re-extract.

    `progress` gets the loop's TrainEvents, `status` one line per phase; re-extraction calls
    `extract_start(n)` with each modality's pending clips and `extract_progress(n)` per batch."""
    from mmkd.cache import Cache
    from mmkd.cache.loader import CacheBatches
    from mmkd.datasets.manifest import manifest_hash, read_all
    from mmkd.extract.inputs import InputBuilder
    from mmkd.train.augment import Augment, resolve_hflip
    from mmkd.train.runs import (
        VAL_SPLIT,
        fit_run,
        label_heads,
        method_class,
        resolve_device,
        run_name,
    )

    say = status or (lambda _msg: None)
    run_dir = Path(run_dir)
    cache = Cache.open(rundir.cache_path(run_dir), mode="r")
    student, smeta = ckpt.load_model(opts.from_dir)
    if "finetune" in smeta:
        raise MmkdError(f"{opts.from_dir} is already a fine-tuned student; fine-tune a stage-2 "
                        "student (`--from RUN_DIR/students/<name>`), or distill one on its "
                        "re-extracted tokens first")
    mods, features = list(smeta["modalities"]), dict(smeta["features"])
    bad = [m for m in opts.modalities if m not in mods]
    if bad or not opts.modalities:
        raise MmkdError(f"--modalities {','.join(opts.modalities)}: choose among the modalities "
                        f"of {opts.from_dir} ({','.join(mods)})")
    out_dir = opts.out_dir or run_dir / "students" / default_name(opts.from_dir,
                                                                   opts.modalities)
    manifest_dir = cfg.manifest_path(run_dir)
    mmeta, samples = read_all(manifest_dir)
    if manifest_hash(samples) != cache.manifest_hash:
        raise MmkdError(f"{manifest_dir}: this manifest is not the one {cache.path} was built "
                        "from (manifest hash differs); point data.manifest_dir at that manifest")
    heads = label_heads(cache, cfg)
    device = resolve_device(opts.device)
    tcfg = finetune_recipe(cfg.student.train, opts.epochs, opts.lr_scale)
    method_name = opts.method or smeta["method"]
    method_cls, method_cfg = method_class(method_name, cfg)
    if method_name == "cmpt":
        cmpt.check_from(student, opts.from_dir)
    splits = set(cache.splits.tolist())
    eval_split = cfg.eval.split if cfg.eval.split in splits else VAL_SPLIT

    sources = {m: read_source(cache, run_dir, cfg, m, features[m]) for m in opts.modalities}
    extractors = {m: load_extractor(s) for m, s in sources.items()}
    model = EndToEndStudent(student.spec, extractors, {m: s.theta for m, s in sources.items()},
                            opts.accum_steps)
    model.load_state_dict({**student.state_dict(),
                           **{f"extractors.{m}.{k}": v for m, e in extractors.items()
                              for k, v in e.state_dict().items()}})
    lora_layers = {}
    if method_name == "cmpt":  # frozen encoders + rank-1 LoRA, proxy tokens inside them
        lora_layers = {m: cmpt.add_lora(e) for m, e in model.extractors.items()}
        model.encoder_proxies = cmpt.build_encoder_proxies(student.spec, extractors)
    blocks = sum(enable_grad_checkpointing(e) for e in extractors.values()) \
        if opts.grad_checkpointing else 0

    say(f"evaluating the --from student on {eval_split} (cached tokens)")
    before = subset_accuracy(student, CacheBatches(cache, features, eval_split, 64, shuffle=False,
                                                   seed=0), mods, device, tcfg.precision)

    flip = resolve_hflip(cfg.augment.hflip, cfg.data.dataset, mmeta.classes)
    builders = {m: InputBuilder(m, extractors[m].spec, s.sampler, mmeta, str(manifest_dir))
                for m, s in sources.items()}
    augments = {m: Augment(m, extractors[m].spec.input_kind, flip) for m in sources}
    cached = {m: e for m, e in features.items() if m not in sources}
    workers = cfg.extract.workers if opts.workers is None else opts.workers
    common = dict(cache=cache, samples=samples, builders=builders, cached=cached,
                  batch_size=tcfg.batch_size, seed=tcfg.seed, needs=method_cls.needs(method_cfg),
                  workers=workers, pin_memory=device.type == "cuda")
    train_b = FinetuneBatches(split="train", shuffle=True, augments=augments, **common)
    val_b = (FinetuneBatches(split=VAL_SPLIT, shuffle=False, **common)
             if VAL_SPLIT in splits else None)

    entries = {m: ft_entry(s.entry, run_name(out_dir)) for m, s in sources.items()}
    record = {"from": str(Path(opts.from_dir).resolve()), "from_fingerprint":
              smeta.get("fingerprint", ""), "modalities": opts.modalities, "flip": flip,
              "sources": {m: describe_source(s) for m, s in sources.items()}, "entries": entries,
              "method": method_name}
    if lora_layers:
        record["lora"] = {"rank": cmpt.LORA_RANK, "alpha": cmpt.LORA_ALPHA,
                          "dropout": cmpt.LORA_DROPOUT, "layers": lora_layers,
                          "encoder_proxies": list(model.encoder_proxies)}
    # memory/speed controls change no result, so a resume may change them
    controls = {"accum_steps": opts.accum_steps, "grad_checkpointing": opts.grad_checkpointing}
    meta = {"kind": "student", "modalities": mods,
            "features": {**features, **entries}, "model": student.spec.to_dict(),
            "heads": heads, "cache": {"path": str(cache.path),
                                      "manifest_hash": cache.manifest_hash},
            "feature_provenance": {m: cache.feature_provenance(m, e) for m, e in features.items()},
            "teacher_provenance": smeta.get("teacher_provenance"),
            "finetune": {**record, **controls}}
    # the peer of a two-student method (dml) starts from the same student
    task = method_cls(model, method_cfg, tcfg, cache.n, make_model=lambda: copy.deepcopy(model))
    n_train, n_total = cmpt.trainable_parameters(task), sum(p.numel() for p in task.parameters())
    meta["finetune"]["parameters"] = {"trainable": n_train, "total": n_total}
    say(f"fine-tuning {', '.join(opts.modalities)} end to end → {out_dir}")
    result = fit_run(task, train_b, val_b, tcfg, cfg, out_dir, meta, record, opts.device,
                     progress, opts.resume, opts.checkpoint_every)
    weights = finalize(out_dir, list(sources))

    reextracted = []
    if opts.reextract:
        for m, s in sources.items():
            say(f"re-extracting {m} with the fine-tuned extractor → {entries[m]}")
            reextracted.append(reextract(run_dir, cfg, manifest_dir, s, weights[m], run_name(out_dir),
                                         opts.device or cfg.extract.device, workers,
                                         extract_start, extract_progress))

    say(f"evaluating the fine-tuned student on {eval_split}")
    after = evaluate_finetuned(out_dir, cache, samples, mmeta, manifest_dir, eval_split, device,
                               tcfg.precision, workers)
    s3, s2 = mean_epoch_seconds(out_dir), mean_epoch_seconds(Path(opts.from_dir))
    update_meta(out_dir, {"finetune": {"eval_split": eval_split, "before": before,
                                        "after": after, "s_per_epoch": s3,
                                        "stage2_s_per_epoch": s2}})
    return FinetuneResult(result, out_dir, eval_split, before, after, s3, s2, weights, entries,
                          reextracted, train_b.failures, blocks, n_train, n_total, lora_layers)


def default_name(from_dir: str | Path, modalities: list[str]) -> str:
    """students/karmma + audio,detection -> karmma-ft-audio+detection."""
    return f"{Path(from_dir).name}-ft-{'+'.join(modalities)}"


def finetune_recipe(train: C.TrainConfig, epochs: int | None, lr_scale: float = 1.0
                    ) -> C.TrainConfig:
    """The student recipe; `epochs` overrides the length and keeps the warm-up's share, and
    `lr_scale` multiplies lr_min and lr_max (the schedule keeps its shape)."""
    if epochs is not None and epochs < 1:
        raise MmkdError(f"--epochs {epochs}: must be >= 1")
    if lr_scale <= 0:
        raise MmkdError(f"--lr-scale {lr_scale}: must be > 0")
    epochs = epochs or train.epochs
    return dataclasses.replace(train, epochs=epochs,
                               warmup_epochs=train.warmup_epochs * epochs / train.epochs,
                               lr_min=train.lr_min * lr_scale, lr_max=train.lr_max * lr_scale)


