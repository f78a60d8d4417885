"""MST-Distill's three stages from the cache, each resumable (`mmkd distill --method mst`).

RUN_DIR/mst-members/   stage 1, collaborative initialisation of the M + 1 members (the loop's
            usual files; done.json once finished). The members do not depend on the target, so
            every target of the run shares them: stage 1 runs once per run (again only when its
            settings change). Stage 2 starts from the members of its final epoch
            (last.safetensors), as the authors' code does.
RUN_DIR/students/mst-<t>/
  stage2/   the MaskNets (final epoch); done.json names the specialised teachers, written after
            their logits for every sample are in the cache as teachers/mst-<t>-<j>/logits
  best.safetensors, meta.json, ...   stage 3: the target-modality student (what `mmkd eval`
            finds), trained against the cached teacher logits
  mst_summary.json   members, teachers, routing counts, the teacher-logit timing

A killed run resumes inside the stage it was in (each stage's own last.safetensors); finished
stages are skipped while their done.json fingerprint matches. A finished stage 2 that no longer
matches (its config, or retrained members) stops the run and asks for --restart, which redoes
stages 2 and 3 of this target. The CLI runs `stages(...)` one by one, with a progress bar each.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from mmkd import config as C
from mmkd.errors import MmkdError
from mmkd.files import sha256_file, write_json
from mmkd.registry import models
from mmkd.train import checkpoint as ckpt
from mmkd.train import distributed as D
from mmkd.train.loop import FitResult, ProgressFn, autocast_for, to_device
from mmkd.train.methods import BatchNeeds
from mmkd.train.methods.mst import (
    ALL,
    MstCollaborative,
    MstMethod,
    MstSpecialise,
    teacher_id,
)
from mmkd.train.runs import config_fingerprint, fit_run, label_heads, method_class, resolve_device
from mmkd.train.stage2 import cache_batches, check_teachers, resolve_features

DONE, SUMMARY = "done.json", "mst_summary.json"


@dataclass
class Stage:
    title: str
    run: Callable[[ProgressFn | None], None]
    done: Callable[[], bool]


class MstRun:
    """What the three stages share: the cache, features, heads, config and the folders."""

    def __init__(self, cache_path: str | Path, cfg: C.RunConfig, target: str, out_dir: Path,
                 device: str | None, resume: bool, checkpoint_every: int, in_ram: bool):
        from mmkd.cache import Cache

        mods = list(cfg.data.modalities)
        if target not in mods or len(mods) < 2:
            raise MmkdError(f"--method mst --modalities {target}: name one target modality of "
                            f"data.modalities ({','.join(mods)}), which needs at least two")
        self.cfg, self.target, self.out = cfg, target, Path(out_dir)
        self.members_dir = self.out.parent.parent / "mst-members"  # RUN_DIR/mst-members
        self.device, self.resume, self.every, self.in_ram = device, resume, checkpoint_every, in_ram
        self.cache = Cache.open(cache_path, mode="r+")
        self.recipe = cfg.student
        self.features = resolve_features(self.cache, self.recipe.extractors, mods, "student")
        self.heads = label_heads(self.cache, cfg)
        _, self.mcfg = method_class("mst", cfg)
        n_teachers = len(self.mcfg.mask_layers) * len(mods)  # (M - 1 unimodal + all) × layers
        if self.mcfg.top_k > n_teachers:
            raise MmkdError(f"methods.mst.top_k = {self.mcfg.top_k}: there are only {n_teachers} "
                            "specialised teachers (mask_layers × base members); lower it")
        self.strategy = MstMethod.missing_strategy(self.recipe.fusion.missing_strategy)
        self.shapes: dict[str, tuple[int, int]] = {}
        self.result: FitResult | None = None  # stage 3's, once it ran
        provenance = {m: self.cache.feature_provenance(m, e) for m, e in self.features.items()}
        self.shared = {"features": self.features, "heads": self.heads,
                       "fusion": C.to_dict(self.recipe.fusion),
                       "manifest": self.cache.manifest_hash, "provenance": provenance}
        self.common = {**self.shared, "target": target}

    # -------------------------------------------------------------------- shared helpers
    def train_cfg(self, epochs: int) -> C.TrainConfig:
        t = self.recipe.train
        epochs = epochs or t.epochs
        return dataclasses.replace(t, epochs=epochs, warmup_epochs=min(t.warmup_epochs, epochs))

    def loaders(self, train: C.TrainConfig, needs: BatchNeeds, features: dict[str, str]):
        tb, vb = cache_batches(self.cache, features, train, needs, self.in_ram)
        self.shapes.update({m: (r.theta, r.dim) for m, r in tb.readers.items()})
        return tb, vb

    def member(self, modalities: list[str]) -> torch.nn.Module:
        return models.get("student")(self.recipe.fusion, {m: self.shapes[m] for m in modalities},
                                     self.heads, self.strategy)

    def collaborative(self, train: C.TrainConfig) -> MstCollaborative:
        torch.manual_seed(train.seed)
        mods = list(self.cfg.data.modalities)
        full = self.member(mods)
        return MstCollaborative(full, self.mcfg, train, self.cache.n,
                                {m: self.member([m]) for m in mods})

    def stage_dir(self, stage: int) -> Path:
        return self.members_dir if stage == 1 else self.out / f"stage{stage}"

    def fingerprint(self, stage: int) -> str:
        """What decides a stage's result: stage 1 only its recipe, τ and the data; stage 2 also
        the whole method config, the target and the members it starts from."""
        if stage == 1:
            return config_fingerprint(
                stage=1, temperature=self.mcfg.temperature, **self.shared,
                recipe=dataclasses.asdict(self.train_cfg(self.mcfg.stage1_epochs)))
        return config_fingerprint(stage=stage, method=dataclasses.asdict(self.mcfg),
                                  recipe=dataclasses.asdict(self.recipe.train), **self.common,
                                  members=sha256_file(self.members_dir / ckpt.LAST))

    def is_done(self, stage: int) -> bool:
        path = self.stage_dir(stage) / DONE
        if not path.exists() or (stage == 2 and not self.resume):
            return False
        same = json.loads(path.read_text()).get("fingerprint") == self.fingerprint(stage)
        if stage == 2 and not same:
            raise MmkdError(f"{path}: stage 2 of {self.target} was trained with another config "
                            "or other stage-1 members; pass --restart to redo stages 2 and 3")
        return same

    def mark_done(self, stage: int, info: dict[str, Any]) -> None:
        if D.rank_world()[0] != 0:
            return
        write_json(self.stage_dir(stage) / DONE,
                   {"fingerprint": self.fingerprint(stage), **info})

    def meta(self, kind: str, modalities: list[str]) -> dict[str, Any]:
        return {"kind": kind, "modalities": modalities,
                "features": {m: self.features[m] for m in modalities}, "heads": self.heads,
                "mst_target": self.target,
                "cache": {"path": str(self.cache.path), "manifest_hash": self.cache.manifest_hash},
                "feature_provenance": self.common["provenance"]}

    def fit(self, task, tb, vb, train: C.TrainConfig, kind: str, mods: list[str],
            progress: ProgressFn | None, stage: int, resume: bool) -> FitResult:
        fingerprint = {**(self.shared if stage == 1 else self.common), "stage": stage}
        return fit_run(task, tb, vb, train, self.cfg, self.stage_dir(stage) if stage < 3
                       else self.out, self.meta(kind, mods), fingerprint, self.device, progress,
                       resume, self.every)

    # -------------------------------------------------------------------- the stages
    def stage1(self, progress: ProgressFn | None) -> None:
        train = self.train_cfg(self.mcfg.stage1_epochs)
        tb, vb = self.loaders(train, BatchNeeds(), self.features)
        task = self.collaborative(train)
        # members whose settings changed are retrained from scratch (every target shares them)
        stale = (self.members_dir / DONE).exists()
        if stale and D.rank_world()[0] == 0:
            (self.members_dir / DONE).unlink()
        self.fit(task, tb, vb, train, "mst-members", list(self.cfg.data.modalities), progress, 1,
                 resume=self.resume and not stale)
        self.mark_done(1, {"members": self.members()})

    def members(self) -> dict[str, list[str]]:
        mods = list(self.cfg.data.modalities)
        return {ALL: mods, **{m: [m] for m in mods}}

    def stage1_task(self, train: C.TrainConfig) -> MstCollaborative:
        """The stage-1 members as they were after its final epoch."""
        task = self.collaborative(train)
        tensors = load_file(str(self.members_dir / ckpt.LAST))
        task.load_state_dict({k: v for k, v in tensors.items()
                              if not k.startswith(ckpt.STATE_PREFIXES)})
        return task

    def specialise_task(self, train: C.TrainConfig) -> MstSpecialise:
        members = self.stage1_task(self.train_cfg(self.mcfg.stage1_epochs)).all_members()
        bases = {n: m for n, m in members.items() if n != self.target}
        return MstSpecialise(members[self.target], self.mcfg, train, self.cache.n, bases)

    def stage2(self, progress: ProgressFn | None) -> None:
        train = self.train_cfg(self.mcfg.stage2_epochs)
        tb, _ = self.loaders(train, BatchNeeds(), self.features)
        task = self.specialise_task(train)
        out = self.stage_dir(2)
        self.fit(task, tb, None, train, "mst-masknets", list(self.cfg.data.modalities),
                 progress, 2, self.resume)
        if D.rank_world()[0] == 0:  # one process writes the cache
            dev = resolve_device(self.device)
            task.to(dev).eval()
            logits, seconds = self.teacher_outputs(task, dev, train.batch_size)
            sha = sha256_file(out / ckpt.LAST)
            teachers = {}
            for j, (base, layer) in enumerate(task.routes):
                tid = teacher_id(self.target, j + 1)
                prov = {"method": "mst", "target": self.target, "base": base, "layer": layer,
                        "base_modalities": self.members()[base],
                        "masknets": str(out / ckpt.LAST), "weights_sha256": sha,
                        "fingerprint": self.fingerprint(2)}
                for head, arr in logits[j].items():
                    self.cache.write_teacher_logits(tid, head, arr, prov)
                teachers[tid] = {"base": base, "layer": layer}
            self.mark_done(2, {"teachers": teachers, "teacher_logits_s": seconds})
        if D.is_distributed():
            torch.distributed.barrier()

    @torch.no_grad()
    def teacher_outputs(self, task: MstSpecialise, dev: torch.device, batch_size: int
                        ) -> tuple[list[dict[str, np.ndarray]], dict[str, float]]:
        """Every specialised teacher's logits for every sample (cache order), and the seconds
        each split's pass took (the train split's is what recomputing them costs per epoch)."""
        from mmkd.cache.loader import CacheBatches

        out = [{h: np.zeros((self.cache.n, c), np.float32) for h, c in self.heads.items()}
               for _ in task.routes]
        seconds = {}
        for split in sorted(set(self.cache.splits.tolist())):
            t0 = time.perf_counter()
            for batch in CacheBatches(self.cache, self.features, split, batch_size,
                                      shuffle=False, seed=0):
                batch = to_device(batch, dev)
                idx = batch["index"].cpu().numpy()
                present = {m: p.bool() for m, p in batch["present"].items()}
                with autocast_for(dev, self.recipe.train.precision):
                    for j in range(len(task.routes)):
                        for h, v in task.teacher_logits(j, batch["tokens"], present).items():
                            out[j][h][idx] = v.float().cpu().numpy()
            seconds[split] = round(time.perf_counter() - t0, 3)
        return out, seconds

    def stage3(self, progress: ProgressFn | None) -> None:
        done2 = json.loads((self.stage_dir(2) / DONE).read_text())
        ids = list(done2["teachers"])
        needs = BatchNeeds(logits=tuple(ids))
        check_teachers(self.cache, needs, self.heads)
        train = self.recipe.train
        t = self.target
        tb, vb = self.loaders(train, needs, {t: self.features[t]})
        torch.manual_seed(train.seed)
        student = self.member([t])  # from its stage-1 weights (a resume then loads its own)
        prefix = f"members.{t}."
        tensors = load_file(str(self.members_dir / ckpt.LAST))
        student.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                 if k.startswith(prefix)})
        task = MstMethod(student, self.mcfg, train, self.cache.n, teachers=ids)
        self.result = self.fit(task, tb, vb, train, "student", [t], progress, 3, self.resume)
        self.write_summary(task, done2)

    def write_summary(self, task: MstMethod, done2: dict[str, Any]) -> None:
        if D.rank_world()[0] != 0:
            return
        counts = task.routed.cpu().tolist()
        total = max(1, sum(counts))
        records = [json.loads(ln) for ln in (self.out / ckpt.METRICS).read_text().splitlines()
                   if ln.strip()]
        epoch_s = float(np.mean([r["time_s"] for r in records])) if records else None
        write_json(self.out / SUMMARY, {
            "target": self.target, "members": self.members(),
            "teachers": {tid: {**info, "chosen": c, "share": c / total}
                         for (tid, info), c in zip(done2["teachers"].items(), counts,
                                                   strict=True)},
            "teacher_logits_s": done2["teacher_logits_s"],
            "stage3_epoch_s": epoch_s,
        })


def stages(cache_path: str | Path, cfg: C.RunConfig, target: str, out_dir: str | Path,
           device: str | None = None, resume: bool = True, checkpoint_every: int = 0,
           in_ram: bool = False) -> tuple[list[Stage], MstRun]:
    """The three stages, in order, for the CLI (or a test) to run one by one."""
    run = MstRun(cache_path, cfg, target, Path(out_dir), device, resume, checkpoint_every,
                 in_ram)
    return [
        Stage("stage 1/3: collaborative initialisation", run.stage1, lambda: run.is_done(1)),
        Stage("stage 2/3: specialised teachers", run.stage2, lambda: run.is_done(2)),
        Stage(f"stage 3/3: dynamic distillation ({target})", run.stage3, lambda: False),
    ], run
