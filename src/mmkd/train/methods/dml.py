"""Deep mutual learning (Zhang et al.): two students of the same architecture trained together,
no teacher; each minimises CE + w·KL(p_other ‖ p_self), the other's prediction held fixed in its
own term. Both see the same modality dropout draw. The first student is the one kept (best
checkpoint, evaluation); the peer exists only in training and in the resumable state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import Method, StepOutput, loss_weight


@dataclass
class DmlConfig:
    kl_weight: float = loss_weight(1.0)  # w


@methods.register("dml")
class DmlMethod(Method):
    name = "dml"
    label = "DML"
    Config = DmlConfig

    def __init__(self, model, cfg: DmlConfig, train: Any, n_samples: int,
                 make_model: Callable | None = None):
        super().__init__(model, cfg, train, n_samples)
        if make_model is None:
            raise ValueError("dml trains two students: pass make_model")
        self.peer = make_model()

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        present = self.dropped(batch, epoch)
        a = self.model(batch["tokens"], present).logits
        b = self.peer(batch["tokens"], present).logits
        ce_a = losses.cross_entropy(a, batch["labels"])
        ce_b = losses.cross_entropy(b, batch["labels"])
        kl_a = losses.kl_distill(a, {h: v.detach() for h, v in b.items()})
        kl_b = losses.kl_distill(b, {h: v.detach() for h, v in a.items()})
        w = self.cfg.kl_weight
        loss = ce_a + w * kl_a + ce_b + w * kl_b
        return StepOutput(loss, a, {"ce": ce_a.detach(), "kl": kl_a.detach(),
                                    "peer_ce": ce_b.detach(), "peer_kl": kl_b.detach()})
