"""Hinton et al.'s knowledge distillation: L = w_ce·CE + w_kd·T²·KL(softmax(t/T) ‖ softmax(s/T))
from one cached teacher's logits. The T² factor keeps the soft term's gradients on the scale of
the hard term's when T changes. Unlike KARMMA_S, no modality dropout: the student always sees
every cached modality in training (the configured missing-modality strategy still handles media
that are missing in the cache)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import BatchNeeds, Method, StepOutput, loss_weight, teacher_logits


@dataclass
class KdConfig:
    temperature: float = 4.0  # T
    ce_weight: float = loss_weight(0.1)  # w_ce
    kd_weight: float = loss_weight(0.9)  # w_kd
    teacher: str = "teacher"  # the cached teacher (teachers/<id>/)

    def problems(self) -> list[str]:
        return [f"temperature = {self.temperature!r}: must be > 0"] if self.temperature <= 0 \
            else []


def soft_kl(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor], t: float
            ) -> torch.Tensor:
    """T²·KL(p_T^t ‖ p_S^t), batch mean, averaged over heads."""
    per_head = [F.kl_div(F.log_softmax(student[h].float() / t, -1),
                         F.log_softmax(teacher[h].float() / t, -1),
                         reduction="batchmean", log_target=True) for h in student]
    return torch.stack(per_head).mean() * t * t


@methods.register("kd")
class KdMethod(Method):
    name = "kd"
    label = "KD"
    Config = KdConfig
    uses_dropout = False

    @classmethod
    def needs(cls, cfg: KdConfig) -> BatchNeeds:
        return BatchNeeds(logits=(cfg.teacher,))

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        out = self.model(batch["tokens"], self.dropped(batch, epoch))
        ce = losses.cross_entropy(out.logits, batch["labels"])
        kd = soft_kl(out.logits, teacher_logits(batch, self.cfg.teacher), self.cfg.temperature)
        loss = self.cfg.ce_weight * ce + self.cfg.kd_weight * kd
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "kd": kd.detach()})
