"""The one training loop for teacher, students and baselines (the method object owns the loss).

The whole step, nanoGPT style, is `_train_step` below: forward + loss by the task (bf16
autocast on CUDA), backward, gradient clipping, AdamW. Nothing in a step waits for the device:
running sums and the finiteness of loss and gradient norm are kept on it and read back every
`log_every` steps, at epoch ends and before any checkpoint is written (a non-finite step stops
training there, agreed by all ranks, with the last good checkpoint kept). Around it: the schedule
of `train.schedule` (`lr_at`: KARMMA's warm-up + cosine, or CMPT's warm-up + polynomial decay),
updated every step, validation after every epoch with the best epoch kept,
metrics as JSONL, and an exact resume: the last checkpoint holds model, optimizer, per-rank RNG
states and the position in the epoch, and the loader's order is a function of (seed, epoch).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmkd.errors import MmkdError
from mmkd.train import checkpoint as ckpt
from mmkd.train import distributed as D

if TYPE_CHECKING:
    from mmkd.config import TrainConfig
    from mmkd.train.methods import Method, StepOutput


class NonFiniteLossError(MmkdError):
    """Training stopped on a NaN/inf loss or gradient; the last good checkpoint is kept."""


@dataclass
class TrainEvent:
    """What a progress callback receives after every step (phase "train") and epoch ("epoch")."""

    phase: str
    epoch: int
    epochs: int
    step: int  # global step, 1-based after the step
    total_steps: int
    samples: int = 0  # samples in this step (the global batch)
    loss: float = float("nan")  # running mean over the epoch so far
    acc: float = float("nan")  # running accuracy (all heads right) over the epoch so far
    samples_per_s: float = 0.0
    lr: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)  # epoch summary (phase "epoch")


ProgressFn = Callable[[TrainEvent], None]


@dataclass
class FitResult:
    out_dir: Path
    best_epoch: int
    best: dict[str, float]  # validation (or, without one, training) metrics of the best epoch
    last: dict[str, float]  # the final epoch's metrics record
    resumed_from: dict[str, int] | None  # {"epoch" (1-based, the one continued), "step" (its
    # steps already done), "epochs"} when the run continued a checkpoint


def lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """`cosine` (KARMMA): linear warm-up lr_min → lr_max over warmup_epochs, then cosine back to
    lr_min. `poly` (CMPT): warmup_factor × lr_max during the warm-up, then
    lr_min + (lr_max - lr_min)·(1 - progress)^poly_power."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if step < warmup:
        if cfg.schedule == "poly":
            return cfg.warmup_factor * cfg.lr_max
        return cfg.lr_min + (cfg.lr_max - cfg.lr_min) * step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule == "poly":
        return cfg.lr_min + (cfg.lr_max - cfg.lr_min) * (1 - progress) ** cfg.poly_power
    return cfg.lr_min + 0.5 * (cfg.lr_max - cfg.lr_min) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over every parameter of `model` (a task: the fusion model and the method's own
    parts), without weight decay on the names its `no_weight_decay()` lists; frozen parameters
    (a LoRA-adapted encoder's base weights) are left out."""
    skip = model.no_weight_decay()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if n not in skip]
    no_decay = [p for n, p in params if n in skip]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr_min,
                             eps=cfg.adam_eps)


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on CUDA (precision auto/bf16); fp32 everywhere else."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    if device.type == "cpu":
        return batch
    return {k: ({kk: vv.to(device, non_blocking=True) for kk, vv in v.items()}
                if isinstance(v, dict) else v.to(device, non_blocking=True))
            for k, v in batch.items()}


class EpochStats:
    """Running sums of one epoch (sample-weighted), restorable from a step checkpoint.

    The sums stay on the device (float64, added in step order) so a step costs no host sync;
    `sync()` reads them back, at log intervals and epoch ends only."""

    def __init__(self, sums: dict[str, float] | None = None):
        self.sums: dict[str, float] = dict(sums or {})  # as of the last sync
        self._n = self.sums.get("n", 0.0)
        self._keys: list[str] = []
        self._total: torch.Tensor | None = None

    def add(self, n: int, loss: torch.Tensor, parts: dict[str, torch.Tensor],
            correct: dict[str, torch.Tensor]) -> None:
        vals = torch.cat([torch.stack([loss.detach(), *parts.values()]).double() * n,
                          torch.stack(list(correct.values())).double()])
        if self._total is None:
            self._keys = ["loss", *(f"loss_{k}" for k in parts),
                          *(f"correct_{k}" for k in correct)]
            self._total = torch.tensor([self.sums.get(k, 0.0) for k in self._keys],
                                       dtype=torch.float64, device=vals.device)
        self._total += vals
        self._n += float(n)

    def sync(self) -> dict[str, float]:
        """The sums as host floats (one device-to-host copy)."""
        if self._total is not None:
            self.sums.update(zip(self._keys, self._total.tolist(), strict=True))
        self.sums["n"] = self._n
        return self.sums

    def means(self) -> dict[str, float]:
        n = max(self.sums.get("n", 0.0), 1.0)
        out = {}
        for k, v in self.sums.items():
            if k.startswith("correct_"):
                out["acc" if k == "correct_all" else "acc_" + k[8:]] = v / n
            elif k != "n":
                out[k] = v / n
        return out


class FiniteGuard:
    """Checks every step's loss and gradient norm on the device, without a host sync; `check()`
    (a sync, agreed by all ranks) raises for the first non-finite step since the last check.
    The loop checks before every checkpoint it writes, so a bad step never reaches one."""

    def __init__(self) -> None:
        self._bad: torch.Tensor | None = None  # any non-finite step since the last check
        self._row = torch.empty(0)  # [loss, grad norm, parts...] of the first such step
        self._step = torch.empty(0)  # its global step
        self._names: list[str] = []

    def watch(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor,
              parts: dict[str, torch.Tensor]) -> None:
        row = torch.stack([loss.detach().float(), grad_norm.float(),
                           *(v.detach().float() for v in parts.values())])
        bad = ~torch.isfinite(row[:2]).all()
        if self._bad is None:
            self._bad, self._row, self._names = bad, row, list(parts)
            self._step = torch.full((), step, device=row.device)
        else:
            new = bad & ~self._bad
            self._row = torch.where(new, row, self._row)
            self._step = torch.where(new, step, self._step)
            self._bad = self._bad | bad

    def check(self, steps_per_epoch: int) -> None:
        if self._bad is None:
            return
        bad_here, self._bad = self._bad, None
        if float(D.all_reduce_sum(bad_here.float())) == 0:
            return
        if not bad_here.item():
            raise NonFiniteLossError("another process saw a non-finite loss or gradient")
        step, (loss, grad, *parts) = int(self._step), self._row.tolist()
        what = (f"loss is {loss:.4g} ({_fmt(dict(zip(self._names, parts, strict=True)))})"
                if not math.isfinite(loss) else f"gradient norm is {grad}")
        raise NonFiniteLossError(f"{what} at epoch {step // steps_per_epoch + 1}, step "
                                 f"{step % steps_per_epoch + 1}")


def correct_counts(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
    """Per head and `all` (every head right; EPIC's action accuracy) top-1 hit counts."""
    hits = {h: logits[h].argmax(-1) == labels[h] for h in logits}
    every = torch.stack(list(hits.values())).all(0)
    return {**{h: v.sum() for h, v in hits.items()}, "all": every.sum()}


def _train_step(task, batch: dict, epoch: int, optimizer, cfg: TrainConfig, amp
                ) -> tuple[StepOutput, torch.Tensor]:
    """`task` is the Method, or its DDP wrapper (whose forward is the training step). Returns
    the step's output and gradient norm, both left on the device (no host sync)."""
    with amp:
        out = task(batch, epoch)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(task.parameters(), cfg.grad_clip)
    optimizer.step()
    return out, grad_norm


def fit(task: Method, train_batches, val_batches, cfg: TrainConfig,
        out_dir: str | Path, meta: dict[str, Any], device: str | torch.device = "cpu",
        progress: ProgressFn | None = None, resume: bool = True,
        checkpoint_every: int = 0, log_every: int = 10) -> FitResult:
    """Train `task` (its model and its own parts); write checkpoints, meta and metrics into
    `out_dir`. The best checkpoint holds `task.model`, the resumable state the whole task.

    `meta` (resolved config, cache provenance, ...) is stored with every best checkpoint; its
    "config" is written as config.yaml once the first step succeeded (as is the reset of a
    fresh run: see `ckpt.start_run`). `checkpoint_every` > 0 also saves the training state every that many steps, so a kill
    loses at most that many steps (the epoch end always saves). `val_batches` None: the last
    epoch is kept as "best". The host syncs with the device every `log_every` steps (running
    loss/accuracy for `progress`, the finiteness check), at epoch ends and before checkpoints.
    """
    out_dir, device = Path(out_dir), torch.device(device)
    meta = {"model": task.model.spec.to_dict(), **meta}
    rank, world = D.rank_world()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    task.to(device)
    optimizer = make_optimizer(task, cfg)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise MmkdError(f"the training split has fewer samples than one batch "
                        f"(batch_size={cfg.batch_size}); lower train.batch_size")
    total_steps = cfg.epochs * steps_per_epoch
    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_acc": -1.0,
                             "best_epoch": -1, "best": {}, "sums": {},
                             "steps_per_epoch": steps_per_epoch, "world_size": world,
                             "fingerprint": meta.get("fingerprint", ""), "last": {}}
    last_path, resumed, saved = out_dir / ckpt.LAST, None, None
    fresh = not (resume and last_path.exists())
    if not fresh:
        state = _resume(last_path, task, optimizer, state, rank, world, device)
        resumed = {"epoch": state["epoch"] + 1, "step": state["step_in_epoch"],
                   "epochs": cfg.epochs}
        saved = _position(state)
        if rank == 0:
            _truncate_metrics(out_dir / ckpt.METRICS, state["epoch"])
    started = False
    train_task = (torch.nn.parallel.DistributedDataParallel(task) if D.is_distributed()
                  else task)
    amp = autocast_for(device, cfg.precision)
    lr, guard = cfg.lr_min, FiniteGuard()
    for epoch in range(state["epoch"], cfg.epochs):
        train_batches.set_epoch(epoch)
        task.train()
        stats = EpochStats(state["sums"])  # non-empty only when resuming inside this epoch
        t0, seen, g = time.perf_counter(), 0, None
        for i, batch in enumerate(train_batches):
            if i < state["step_in_epoch"]:
                continue  # resume inside an epoch: the order is a function of (seed, epoch)
            lr = lr_at(state["global_step"], steps_per_epoch, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = to_device(batch, device)
            out, grad_norm = _train_step(train_task, batch, epoch, optimizer, cfg, amp)
            guard.watch(state["global_step"], out.loss, grad_norm, out.parts)
            n = batch["index"].shape[0]
            stats.add(n, out.loss, out.parts, correct_counts(out.logits, batch["labels"]))
            state.update(global_step=state["global_step"] + 1, step_in_epoch=i + 1)
            seen += n * world
            save = checkpoint_every and state["global_step"] % checkpoint_every == 0 \
                and state["step_in_epoch"] < steps_per_epoch
            if save or g is None or state["global_step"] % log_every == 0 \
                    or state["step_in_epoch"] == steps_per_epoch:  # host syncs only here
                _check(guard, steps_per_epoch, last_path, saved)
                g = _global_sums(stats.sync())  # a collective: every rank runs it
            if not started:  # the first step is checked: only now may a fresh run reset the folder
                if rank == 0:
                    ckpt.start_run(out_dir, meta.get("config"), fresh)
                started = True
            if save:
                _save_last(last_path, task, optimizer, {**state, "sums": stats.sums}, rank)
                saved = _position(state)
            if progress is not None:  # loss and accuracy as of the last sync
                progress(TrainEvent("train", epoch + 1, cfg.epochs, state["global_step"],
                                    total_steps, samples=n * world, loss=g["loss"] / g["n"],
                                    acc=g["correct_all"] / g["n"],
                                    samples_per_s=seen / (time.perf_counter() - t0), lr=lr))
        epoch_s = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "step": state["global_step"], "lr": lr,
                  "time_s": round(epoch_s, 3), "samples_per_s": seen / epoch_s,
                  **{f"train_{k}": v for k, v in EpochStats(g).means().items()}}
        if val_batches is not None:
            record.update({f"val_{k}": v for k, v in
                           evaluate(task, val_batches, device, cfg.precision).items()})
        score = record.get("val_acc", record["train_acc"])
        if val_batches is None or score > state["best_acc"]:
            state.update(best_acc=score, best_epoch=epoch + 1, best=record)
            if rank == 0:
                ckpt.save_best(out_dir, task.model, {
                    **meta, "epoch": epoch + 1, "metrics": record,
                    "selected_by": "val_acc" if val_batches is not None else "last epoch"})
        if rank == 0:
            with open(out_dir / ckpt.METRICS, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        state.update(epoch=epoch + 1, step_in_epoch=0, sums={}, last=record)
        _save_last(last_path, task, optimizer, state, rank)
        saved = _position(state)
        if progress is not None:
            progress(TrainEvent("epoch", epoch + 1, cfg.epochs, state["global_step"], total_steps,
                                loss=record["train_loss"], acc=record["train_acc"], lr=lr,
                                metrics=record))
    return FitResult(out_dir=out_dir, best_epoch=state["best_epoch"], best=state["best"],
                     last=state["last"], resumed_from=resumed)


Masks = Callable[[dict[str, Any]], dict[str, dict[str, torch.Tensor] | None]]


@torch.no_grad()
def masked_logits(model: torch.nn.Module, batches, masks: Masks | None = None,
                  device: str | torch.device = "cpu", precision: str = "auto"
                  ) -> Iterator[tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]]:
    """The one evaluator: for each batch, the logits {key: {head: (B, C)}} under every modality
    mask `masks(batch)` returns ({key: {modality: keep (B,) bool}}; None keeps every cached
    modality; no `masks`: one key "all"). A mask only switches availability off, so a model sees
    what it would see if that media were missing.

    `model` is a task (its `predict`) or a fusion model; one with `encode` (a stage-3 student)
    turns raw inputs into tokens once per batch, not once per mask. Validation, stage 3,
    `mmkd eval` and the ablations all evaluate through here."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    run = getattr(model, "predict", model)
    try:
        for batch in batches:
            batch = to_device(batch, device)
            cached = {m: p.bool() for m, p in batch["present"].items()}
            out = {}
            with autocast_for(device, precision):
                tokens = model.encode(batch["tokens"], cached) if hasattr(model, "encode") \
                    else batch["tokens"]
                for key, keep in (masks(batch) if masks else {"all": None}).items():
                    present = cached if keep is None else {m: p & keep[m].to(p.device)
                                                           for m, p in cached.items()}
                    out[key] = run(tokens, present).logits
            yield batch, out
    finally:
        model.train(was_training)


def evaluate(task: torch.nn.Module, batches, device: str | torch.device = "cpu",
             precision: str = "auto") -> dict[str, float]:
    """CE loss and top-1 accuracy (per head and all heads right) with every cached modality.

    Under DDP each rank evaluates its share; per-sample results are gathered and de-duplicated
    by sample index (the loader pads ranks to equal length), so the numbers are exact."""
    rows: dict[str, list[torch.Tensor]] = {}
    for batch, out in masked_logits(task, batches, None, device, precision):
        logits, labels = out["all"], batch["labels"]
        per = {"index": batch["index"],
               "loss": torch.stack([torch.nn.functional.cross_entropy(
                   logits[h].float(), labels[h], reduction="none", ignore_index=-1)
                   for h in logits]).mean(0)}
        hits = {h: logits[h].argmax(-1) == labels[h] for h in logits}
        per.update({f"hit_{h}": v for h, v in hits.items()})
        per["hit_all"] = torch.stack(list(hits.values())).all(0)
        for k, v in per.items():
            rows.setdefault(k, []).append(D.gather_with_grad(v.detach()).cpu())
    cat = {k: torch.cat(v).numpy() for k, v in rows.items()}
    _, first = np.unique(cat["index"], return_index=True)
    res = {"loss": float(cat["loss"][first].mean())}
    res.update({("acc" if k == "hit_all" else "acc_" + k[4:]): float(v[first].mean())
                for k, v in cat.items() if k.startswith("hit_")})
    return res


# ------------------------------------------------------------------------------------ helpers
def _fmt(parts: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in parts.items()) or "no parts"


def _check(guard: FiniteGuard, steps_per_epoch: int, last_path: Path, saved: str | None
           ) -> None:
    try:
        guard.check(steps_per_epoch)
    except NonFiniteLossError as exc:
        kept = (f"the last good checkpoint {last_path} ({saved}) is kept" if saved else
                "no checkpoint of this run was written yet")
        raise NonFiniteLossError(
            f"{exc}: training stopped; {kept}. Check the features with `mmkd cache verify`, or "
            "lower train.lr_max") from None


def _position(state: dict) -> str:
    """Where a saved training state stands, 1-based like every epoch the user sees."""
    if state["step_in_epoch"] == 0:
        return f"after epoch {state['epoch']}"
    return f"epoch {state['epoch'] + 1}, step {state['step_in_epoch']}"


def _global_sums(sums: dict[str, float]) -> dict[str, float]:
    if not D.is_distributed():
        return sums
    keys = sorted(sums)
    summed = D.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64))
    return dict(zip(keys, summed.tolist(), strict=True))


def _rng_states() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _save_last(path: Path, model, optimizer, state: dict, rank: int) -> None:
    """Rank 0 writes one file holding every rank's RNG states (attention dropout streams)."""
    mine = _rng_states()
    if D.is_distributed():
        gathered: list[dict] = [None] * D.rank_world()[1]  # type: ignore[list-item]
        torch.distributed.all_gather_object(gathered, {k: v.cpu() for k, v in mine.items()})
    else:
        gathered = [mine]
    if rank == 0:
        rng = {f"{k}.rank{r}": v for r, s in enumerate(gathered) for k, v in s.items()}
        ckpt.save_training_state(path, model, optimizer, state, rng)
    if D.is_distributed():
        torch.distributed.barrier()


def _resume(path: Path, model, optimizer, defaults: dict, rank: int, world: int,
            device: torch.device) -> dict:
    state, rng = ckpt.load_training_state(path, model, optimizer)
    if state.get("fingerprint") != defaults["fingerprint"]:
        raise MmkdError(f"{path} belongs to a run with another config, cache or method; pass "
                        "--restart to train from scratch (its checkpoints are replaced)")
    if state.get("world_size", 1) != world or state["steps_per_epoch"] != defaults[
            "steps_per_epoch"]:
        raise MmkdError(
            f"{path} was written by a run with world_size={state.get('world_size', 1)} and "
            f"{state['steps_per_epoch']} steps per epoch; this run has {world} and "
            f"{defaults['steps_per_epoch']}: resume with the same setup, or pass --restart")
    if f"cpu.rank{rank}" in rng:
        torch.set_rng_state(rng[f"cpu.rank{rank}"])
    if f"cuda.rank{rank}" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng[f"cuda.rank{rank}"])
    return {**defaults, **state}


def _truncate_metrics(path: Path, epochs_done: int) -> None:
    """Drop records of epochs the resumed run will redo (a kill between log and checkpoint)."""
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines()
                if ln.strip() and json.loads(ln)["epoch"] <= epochs_done]
        path.write_text("".join(ln + "\n" for ln in keep))


