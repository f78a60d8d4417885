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
`finetune` record (extractors, weights sha256, before/after accuracy, s/epoch). `reextract`
writes the fine-tuned extractors' tokens into the cache as `<extractor>+ft-<out dir name>`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkd import config as C
from mmkd import registry, rundir
from mmkd.errors import MmkdError
from mmkd.extract.extractors import Extractor, create_extractor, get_spec
from mmkd.extract.extractors.base import register_spec
from mmkd.extract.theta import n_out
from mmkd.files import sha256_file, write_json, write_safetensors
from mmkd.models import FusionModel, ModelSpec
from mmkd.subsets import modality_subsets, subset_label
from mmkd.train import checkpoint as ckpt
from mmkd.train import finetune_cmpt as cmpt
from mmkd.train.finetune_data import FinetuneBatches
from mmkd.train.finetune_model import EndToEndStudent, enable_grad_checkpointing, split_state
from mmkd.train.loop import FitResult, ProgressFn, correct_counts, masked_logits

FT_TAG = "+ft-"
EXTRACTORS_DIR = "extractors"


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


@dataclass(frozen=True)
class _Source:
    """Where one fine-tuned modality's starting point comes from."""

    modality: str
    entry: str  # cache group of the --from student's tokens = its extractor's registry name
    weights: Path | None  # None: random init (as the cached tokens were made)
    theta: int
    sampler: Any  # ClipSampler from the cache provenance


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

    sources = {m: _source(cache, run_dir, cfg, m, features[m]) for m in opts.modalities}
    extractors = {m: _load_extractor(s) for m, s in sources.items()}
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
              "sources": {m: _describe(s) for m, s in sources.items()}, "entries": entries,
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
    _update_meta(out_dir, {"finetune": {"eval_split": eval_split, "before": before,
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


def _source(cache, run_dir: Path, cfg: C.RunConfig, m: str, entry: str) -> _Source:
    """The weights and preprocessing that made the cached tokens of (m, entry), verified."""
    from mmkd.extract.sampling import ClipSampler

    prov = cache.feature_provenance(m, entry)
    base = entry.split(FT_TAG, 1)[0]
    sha = prov["weights_sha256"]
    weights: Path | None = None
    if FT_TAG in entry:  # an earlier fine-tune's entry: its weights live in its output dir
        weights = run_dir / "students" / entry.split(FT_TAG, 1)[1] / EXTRACTORS_DIR / \
            f"{m}.safetensors"
        register_entry(base, entry, weights)
    elif sha != "random-init":
        w = cfg.student.weights.get(m)
        if not w:
            raise MmkdError(f"{cache.path}: the {m}/{entry} tokens came from weights with sha256 "
                            f"{sha[:16]}…; set student.weights.{m}=FILE in mmkd.yaml so "
                            "fine-tuning starts from them")
        weights = Path(w) if Path(w).is_absolute() else run_dir / w
    if weights is not None and sha256_file(weights) != sha:
        raise MmkdError(f"{weights}: sha256 differs from the weights that made the cached {m} "
                        f"tokens ({entry}: {sha[:16]}…); use the same file, or re-extract")
    spec = get_spec(entry)
    contract = {f"pre_{k}": v for k, v in spec.contract().items()}
    stale = [k for k, v in contract.items() if json.loads(json.dumps(v)) != prov.get(k)]
    if stale or spec.family != prov.get("family"):
        raise MmkdError(f"{cache.path}: {m}/{entry} was extracted with other preprocessing than "
                        f"extractor {entry} now declares ({', '.join(stale) or 'family'}); "
                        f"re-extract it with `mmkd extract --modality {m} --extractor {entry}`")
    sampler = ClipSampler(int(prov["clip_frames"]), int(prov["clip_stride"]),
                          str(prov["clip_sampling"]))
    theta = int(prov["theta_param"])
    if n_out(spec.n_tokens(sampler.num_frames), theta) != int(prov["theta"]):
        raise MmkdError(f"{cache.path}: {m}/{entry} stores {prov['theta']} tokens per clip, "
                        f"extractor {entry} with Θ={theta} would give another number")
    return _Source(m, entry, weights, theta, sampler)


def _load_extractor(s: _Source) -> Extractor:
    ext = create_extractor(s.entry, weights=s.weights, random_init=s.weights is None)
    return ext.requires_grad_(True)


def _describe(s: _Source) -> dict[str, Any]:
    return {"entry": s.entry, "weights": str(s.weights) if s.weights else "random-init",
            "theta": s.theta, "clip_frames": s.sampler.num_frames,
            "clip_stride": s.sampler.stride, "clip_sampling": s.sampler.policy}


def register_entry(base: str, entry: str, weights: Path) -> None:
    """Register `entry` (e.g. demo_ast_student+ft-karmma-ft-audio) as the base extractor's
    architecture and input contract, so stage 1's runner can extract with it by name."""
    if entry not in registry.extractors:
        register_spec(dataclasses.replace(get_spec(base), name=entry,
                                          weights_source=f"mmkd finetune: {weights}"))


# ------------------------------------------------------------------------------- outputs
def finalize(out_dir: Path, modalities: list[str]) -> dict[str, Path]:
    """Split the loop's best checkpoint (fusion + extractors) into a plain student checkpoint
    and `extractors/<modality>.safetensors`; idempotent (a resumed, finished run skips it)."""
    from safetensors.torch import load_file

    best = load_file(str(out_dir / ckpt.BEST))
    paths = {m: out_dir / EXTRACTORS_DIR / f"{m}.safetensors" for m in modalities}
    if not any(k.startswith("extractors.") for k in best):
        return paths
    fusion_sd, ext_sd = split_state(best, modalities)
    proxies_sd = {m: {k[len(f"encoder_proxies.{m}."):]: v for k, v in fusion_sd.items()
                      if k.startswith(f"encoder_proxies.{m}.")} for m in modalities}
    fusion_sd = {k: v for k, v in fusion_sd.items() if not k.startswith("encoder_proxies.")}
    (out_dir / EXTRACTORS_DIR).mkdir(exist_ok=True)
    for m, path in paths.items():  # extractors first: a plain best.safetensors implies them
        write_safetensors(path, cmpt.merge_lora(ext_sd[m]),
                          {"format": "mmkd-extractor", "modality": m})
        if proxies_sd[m]:
            write_safetensors(path.with_suffix(cmpt.PROXIES_SUFFIX), proxies_sd[m],
                              {"format": "mmkd-encoder-proxies", "modality": m})
    meta = json.loads((out_dir / ckpt.META).read_text())
    fusion = FusionModel(ModelSpec(**meta["model"]))
    fusion.load_state_dict(fusion_sd)
    meta["finetune"]["extractor_weights"] = {
        m: {"path": f"{EXTRACTORS_DIR}/{m}.safetensors", "sha256": sha256_file(p),
            **({"proxies": f"{EXTRACTORS_DIR}/{m}{cmpt.PROXIES_SUFFIX}"} if proxies_sd[m] else {})}
        for m, p in paths.items()}
    ckpt.save_best(out_dir, fusion, meta)
    return paths


def _update_meta(out_dir: Path, changes: dict[str, Any]) -> None:
    meta = json.loads((out_dir / ckpt.META).read_text())
    for k, v in changes.items():
        meta[k] = {**meta[k], **v} if isinstance(v, dict) and isinstance(meta.get(k), dict) else v
    write_json(out_dir / ckpt.META, meta)


def load_finetuned(out_dir: str | Path, map_location: str = "cpu"
                   ) -> tuple[EndToEndStudent, dict[str, Any]]:
    """The fine-tuned student (fusion block + its extractors) of a `mmkd finetune` output."""
    out_dir = Path(out_dir)
    fusion, meta = ckpt.load_model(out_dir, map_location=map_location)
    ft = meta.get("finetune")
    if not ft or "extractor_weights" not in ft:
        raise MmkdError(f"{out_dir}: not a finished `mmkd finetune` output (no extractor weights "
                        "in meta.json); run `mmkd finetune` (it resumes)")
    extractors, theta = {}, {}
    for m, src in ft["sources"].items():
        name = src["entry"]
        if FT_TAG in name:
            register_entry(name.split(FT_TAG, 1)[0], name, Path(src["weights"]))
        extractors[m] = create_extractor(name, weights=out_dir / ft["extractor_weights"][m]["path"])
        theta[m] = int(src["theta"])
    from safetensors.torch import load_file

    with_proxies = {m: e for m, e in extractors.items() if "proxies" in ft["extractor_weights"][m]}
    proxies = cmpt.build_encoder_proxies(fusion.spec, with_proxies)
    for m in proxies:
        proxies[m].load_state_dict(load_file(str(out_dir / ft["extractor_weights"][m]["proxies"])))
    model = EndToEndStudent(fusion.spec, extractors, theta, encoder_proxies=proxies)
    model.load_state_dict({**fusion.state_dict(),
                           **{f"extractors.{m}.{k}": v for m, e in extractors.items()
                              for k, v in e.state_dict().items()},
                           **{f"encoder_proxies.{k}": v for k, v in proxies.state_dict().items()}})
    return model.to(map_location).eval(), meta


def ft_entry(entry: str, run_name: str) -> str:
    """The cache entry of a fine-tuned extractor: demo_ast_student+ft-karmma-ft-audio."""
    return f"{entry.split(FT_TAG, 1)[0]}{FT_TAG}{run_name}"


def reextract(run_dir: Path, cfg: C.RunConfig, manifest_dir: Path, s: _Source, weights: Path,
              run_name: str, device: str, workers: int,
              on_start: Callable[[int], None] | None = None,
              progress: Callable[[int], None] | None = None) -> Any:
    """Write the fine-tuned extractor's tokens of every sample into the cache as a new entry,
    with stage 1's runner (same readers, sampling, Θ-Average, resumable units, failures table).
    Provenance: the entry's name and the fine-tuned weights' sha256 (everything else as the
    tokens it replaces)."""
    from mmkd.cache import Cache, ProvenanceError
    from mmkd.extract.runner import ExtractJob, run_extract

    base = s.entry.split(FT_TAG, 1)[0]
    entry = ft_entry(s.entry, run_name)
    register_entry(base, entry, weights)
    cache_path = rundir.cache_path(run_dir)
    job = ExtractJob(cache_path=str(cache_path), manifest_dir=str(manifest_dir),
                     modality=s.modality, extractor=entry, weights=str(weights), theta=s.theta,
                     batch_size=cfg.extract.batch_size, workers=workers, device=device,
                     shard_size=Cache.open(cache_path).shard_size, sampler=s.sampler)
    try:
        return run_extract(job, progress=progress, on_start=on_start)
    except ProvenanceError as exc:
        raise MmkdError(f"{exc} (the cache already holds {s.modality}/{entry} from another "
                        f"fine-tune of this name: delete {cache_path / s.modality / entry}, or "
                        "fine-tune under another --name)") from None


# ------------------------------------------------------------------------------- evaluation
def subset_accuracy(model: FusionModel, batches, modalities: list[str], device: torch.device,
                    precision: str = "auto") -> dict[str, dict[str, float]]:
    """Top-1 accuracy (per head, and `acc` = all heads right) for every non-empty modality
    subset (Table 1's protocol: the other modalities marked missing), in one pass: the
    extractors of an EndToEndStudent run once per batch, the fusion block once per subset."""
    model.to(device)
    subsets = {subset_label(s): s for s in modality_subsets(modalities)}
    sums: dict[str, Counter] = {label: Counter() for label in subsets}
    n = 0

    def masks(batch):
        return {label: {m: torch.full_like(p, m in s, dtype=torch.bool)
                        for m, p in batch["present"].items()} for label, s in subsets.items()}

    for batch, out in masked_logits(model, batches, masks, device, precision):
        for label, logits in out.items():
            sums[label].update({k: int(v) for k, v in
                                correct_counts(logits, batch["labels"]).items()})
        n += int(batch["index"].shape[0])
    return {label: {("acc" if k == "all" else f"acc_{k}"): v / max(n, 1) for k, v in c.items()}
            for label, c in sums.items()}


def evaluate_finetuned(out_dir: Path, cache, samples, mmeta, manifest_dir: Path, split: str,
                       device: torch.device, precision: str, workers: int
                       ) -> dict[str, dict[str, float]]:
    """After-accuracy: from the re-extracted cache entries when meta.json names them, else
    online (decode + fine-tuned extractors) for the fine-tuned modalities."""
    from mmkd.cache.loader import CacheBatches
    from mmkd.extract.inputs import InputBuilder

    model, meta = load_finetuned(out_dir, map_location=str(device))
    mods, features, ft = meta["modalities"], meta["features"], meta["finetune"]
    if all((m, features[m]) in set(cache.features()) for m in ft["modalities"]):
        batches = CacheBatches(cache, features, split, 64, shuffle=False, seed=0)
        return subset_accuracy(model, batches, mods, device, precision)
    builders = {m: InputBuilder(m, model.extractors[m].spec, _source_sampler(ft["sources"][m]),
                                mmeta, str(manifest_dir)) for m in ft["modalities"]}
    batches = FinetuneBatches(cache, samples, builders,
                              {m: e for m, e in features.items() if m not in builders}, split,
                              batch_size=16, shuffle=False, seed=0, workers=workers)
    return subset_accuracy(model, batches, mods, device, precision)


def _source_sampler(src: dict[str, Any]):
    from mmkd.extract.sampling import ClipSampler

    return ClipSampler(int(src["clip_frames"]), int(src["clip_stride"]), str(src["clip_sampling"]))


def mean_epoch_seconds(ckpt_dir: Path) -> float | None:
    """Mean training time per epoch (the loop's `time_s`, validation excluded) of a run."""
    path = ckpt_dir / ckpt.METRICS
    if not path.exists():
        return None
    times = [json.loads(ln)["time_s"] for ln in path.read_text().splitlines() if ln.strip()]
    return float(np.mean(times)) if times else None
