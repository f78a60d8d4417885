"""KARMMA_T (stage 2a): L_T = α·CE + β·InfoNCE aligning every modality's output token to video's
(Eq. 3), with the InfoNCE negatives gathered from the whole global batch under DDP."""

from __future__ import annotations

from dataclasses import dataclass

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.distributed import gather_with_grad
from mmkd.train.methods.base import Method, StepOutput, loss_weight


@dataclass
class TeacherConfig:
    alpha: float = loss_weight(0.7)  # CE weight
    beta: float = loss_weight(0.3)  # InfoNCE weight
    tau: float = 0.1  # InfoNCE temperature

    def problems(self) -> list[str]:
        return [f"tau = {self.tau!r}: must be > 0"] if self.tau <= 0 else []


@methods.register("teacher")
class TeacherMethod(Method):
    name = "teacher"
    label = "KARMMA_T"
    Config = TeacherConfig
    student = False

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        present = self.dropped(batch, epoch)
        out = self.model(batch["tokens"], present)
        ce = losses.cross_entropy(out.logits, batch["labels"])
        # negatives from the whole global batch under DDP (the same loss as one process)
        z = {m: gather_with_grad(t) for m, t in out.modality_tokens.items()}
        valid = {m: gather_with_grad(t) for m, t in present.items()}
        nce = losses.info_nce(z, valid, self.cfg.tau)
        loss = self.cfg.alpha * ce + self.cfg.beta * nce
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "infonce": nce.detach()})
