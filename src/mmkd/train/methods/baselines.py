"""The paper's baselines: the student's architecture trained with CE only.

  baseline         no modality dropout, strategy `none` ("no dropout, no tokens")
  baseline-delta   modality dropout p + the configured missing-modality strategy (B5)
"""

from __future__ import annotations

from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import Method, StepOutput


@methods.register("baseline")
class BaselineMethod(Method):
    name = "baseline"
    label = "Baseline"
    forced_strategy = "none"
    uses_dropout = False

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        out = self.model(batch["tokens"], self.dropped(batch, epoch))
        ce = losses.cross_entropy(out.logits, batch["labels"])
        return StepOutput(ce, out.logits, {"ce": ce.detach()})


@methods.register("baseline-delta")
class BaselineDeltaMethod(BaselineMethod):
    name = "baseline-delta"
    label = "Baseline w/ δ"
    forced_strategy = None
    uses_dropout = True
