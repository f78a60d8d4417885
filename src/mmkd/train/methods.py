"""Training methods: each owns its forward pass and loss, so one loop serves them all.

Registered in `mmkd.registry.methods` (METHOD.md §3–4):
  teacher          L_T = α·CE + β·InfoNCE(video)          (KARMMA_T, stage 2a)
  karmma           L_S = γ·CE + λ·KL(teacher ‖ student)   modality dropout p + the configured
                                                          missing strategy (B5 by default)
  baseline         CE only, no modality dropout, strategy `none` ("no dropout, no tokens")
  baseline-delta   CE only, modality dropout p + the configured strategy (B5), no teacher

A method sees a batch from `mmkd.cache.loader.CacheBatches` (tokens, present, labels and, for
karmma, teacher_logits) and returns the loss plus the logits for accuracy. Modality dropout
draws one uniform per sample from a per-epoch table seeded by (seed, epoch), indexed by the
sample's cache index, so the draw does not depend on batch order, process count or resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.distributed import gather_with_grad

if TYPE_CHECKING:
    from mmkd.config import TrainConfig
    from mmkd.models import FusionModel, FusionOutput


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, what backward() sees
    logits: dict[str, torch.Tensor]  # head -> (B, C), for accuracy
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named loss terms (detached)


class DropoutDraws:
    """Uniform numbers u[epoch][sample index] for modality dropout (see module docstring)."""

    def __init__(self, seed: int, n_samples: int):
        self.seed, self.n = seed, n_samples
        self._epoch, self._u_N = -1, np.empty(0)

    def __call__(self, epoch: int, index_B: torch.Tensor) -> torch.Tensor:
        if epoch != self._epoch:
            self._epoch = epoch
            self._u_N = np.random.default_rng([self.seed, 0x6D6D6B64, epoch]).random(self.n)
        return torch.from_numpy(self._u_N[index_B.cpu().numpy()])


class Method:
    """Base: forward with (optionally dropped) modalities; subclasses define the loss."""

    name = "method"
    needs_teacher = False
    forced_strategy: str | None = None  # overrides fusion.missing_strategy when set
    uses_dropout = True

    def __init__(self, train: TrainConfig, n_samples: int):
        self.cfg = train
        self.p_drop = train.modality_dropout if self.uses_dropout else 0.0
        self.draws = DropoutDraws(train.seed, n_samples)

    def missing_strategy(self, configured: str) -> str:
        return self.forced_strategy or configured

    def forward(self, model: FusionModel, batch: dict, epoch: int | None = None
                ) -> tuple[FusionOutput, dict[str, torch.Tensor]]:
        """Training forward (epoch given: modality dropout applies) or evaluation (epoch None).

        Returns the model output and the availability it actually saw (after dropout)."""
        present = {m: p.bool() for m, p in batch["present"].items()}
        if epoch is not None and self.p_drop > 0:
            u_B = self.draws(epoch, batch["index"]).to(next(iter(present.values())).device)
            present = losses.modality_dropout(present, self.p_drop, u_B)
        return model(batch["tokens"], present), present

    def training_step(self, model: FusionModel, batch: dict, epoch: int) -> StepOutput:
        raise NotImplementedError


@methods.register("teacher")
class TeacherMethod(Method):
    """KARMMA_T: α·CE + β·InfoNCE aligning every modality's output token to video's (Eq. 3)."""

    name = "teacher"

    def training_step(self, model: FusionModel, batch: dict, epoch: int) -> StepOutput:
        out, present = self.forward(model, batch, epoch)
        ce = losses.cross_entropy(out.logits, batch["labels"])
        # negatives from the whole global batch under DDP (the same loss as one process)
        z = {m: gather_with_grad(t) for m, t in out.modality_tokens.items()}
        valid = {m: gather_with_grad(t) for m, t in present.items()}
        nce = losses.info_nce(z, valid, self.cfg.tau)
        loss = self.cfg.alpha * ce + self.cfg.beta * nce
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "infonce": nce.detach()})


@methods.register("karmma")
class KarmmaMethod(Method):
    """KARMMA_S: γ·CE + λ·KL to the cached teacher logits, with modality dropout (Eq. 5)."""

    name = "karmma"
    needs_teacher = True

    def training_step(self, model: FusionModel, batch: dict, epoch: int) -> StepOutput:
        out, _ = self.forward(model, batch, epoch)
        ce = losses.cross_entropy(out.logits, batch["labels"])
        kl = losses.kl_distill(out.logits, batch["teacher_logits"])
        loss = self.cfg.gamma * ce + self.cfg.lambda_kl * kl
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "kl": kl.detach()})


@methods.register("baseline")
class BaselineMethod(Method):
    """Baseline: the student's architecture trained with CE only, no dropout, no tokens."""

    name = "baseline"
    forced_strategy = "none"
    uses_dropout = False

    def training_step(self, model: FusionModel, batch: dict, epoch: int) -> StepOutput:
        out, _ = self.forward(model, batch, epoch)
        ce = losses.cross_entropy(out.logits, batch["labels"])
        return StepOutput(ce, out.logits, {"ce": ce.detach()})


@methods.register("baseline-delta")
class BaselineDeltaMethod(BaselineMethod):
    """Baseline w/ δ: CE only, plus modality dropout and the missing-modality tokens (B5)."""

    name = "baseline-delta"
    forced_strategy = None
    uses_dropout = True
