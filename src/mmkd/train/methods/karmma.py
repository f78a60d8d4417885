"""KARMMA_S (stage 2b): L_S = γ·CE + λ·KL(teacher ‖ student) to the cached teacher logits, with
modality dropout p and the configured missing-modality strategy (B5 by default) (Eq. 5)."""

from __future__ import annotations

from dataclasses import dataclass

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import BatchNeeds, Method, StepOutput, loss_weight, teacher_logits


@dataclass
class KarmmaConfig:
    gamma: float = loss_weight(0.7)  # CE weight
    lambda_kl: float = loss_weight(0.3)  # KL weight
    teacher: str = "teacher"  # the cached teacher (teachers/<id>/) to distil from


@methods.register("karmma")
class KarmmaMethod(Method):
    name = "karmma"
    label = "KARMMA_S"
    Config = KarmmaConfig

    @classmethod
    def needs(cls, cfg: KarmmaConfig) -> BatchNeeds:
        return BatchNeeds(logits=(cfg.teacher,))

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        out = self.model(batch["tokens"], self.dropped(batch, epoch))
        ce = losses.cross_entropy(out.logits, batch["labels"])
        kl = losses.kl_distill(out.logits, teacher_logits(batch, self.cfg.teacher))
        loss = self.cfg.gamma * ce + self.cfg.lambda_kl * kl
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "kl": kl.detach()})
