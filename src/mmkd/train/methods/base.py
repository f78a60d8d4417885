"""What every training method shares: the task base class, its batch declaration, dropout draws.

A method is a task (open_clip style): an `nn.Module` holding the fusion model it trains (and any
trainable parts of its own, registered as submodules), so the one loop's optimizer, DDP wrapper,
checkpoints and resume see every parameter. Each method has a typed config dataclass (its loss
weights; the dataclass defaults are the paper's values), overridable per run under
`methods.<name>.<field>` in mmkd.yaml or with `--set`. `needs()` declares (as a `BatchNeeds`)
what the cache loader must put into a batch besides tokens, presence and labels.

Modality dropout draws one uniform per sample from a per-epoch table seeded by (seed, epoch),
indexed by the sample's cache index, so the draw does not depend on batch order, process count
or resumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from mmkd.cache.loader import BatchNeeds
from mmkd.errors import ConfigError
from mmkd.registry import methods
from mmkd.train import losses

if TYPE_CHECKING:
    from mmkd.config import RunConfig, TrainConfig
    from mmkd.models import FusionModel, FusionOutput


def loss_weight(default: float) -> Any:
    """A config field that weights a loss term: `config_from` refuses a negative value."""
    return field(default=default, metadata={"loss_weight": True})


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, what backward() sees
    logits: dict[str, torch.Tensor]  # head -> (B, C), for accuracy
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named loss terms (detached)


@dataclass
class NoConfig:
    """A method without settings of its own."""


class DropoutDraws:
    """Uniform numbers u[epoch][sample index] for modality dropout (see module docstring)."""

    def __init__(self, seed: int, n_samples: int):
        self.seed, self.n = seed, n_samples
        self._epoch, self._u_N = -1, torch.empty(0, dtype=torch.float64)

    def __call__(self, epoch: int, index_B: torch.Tensor) -> torch.Tensor:
        """u (B,) float64 on index_B's device; the table moves there once per epoch, so a step
        does not wait for the device."""
        if epoch != self._epoch or self._u_N.device != index_B.device:
            self._epoch = epoch
            u_N = np.random.default_rng([self.seed, 0x6D6D6B64, epoch]).random(self.n)
            self._u_N = torch.from_numpy(u_N).to(index_B.device)
        return self._u_N[index_B]


class Method(torch.nn.Module):
    """Base task: forward with (optionally dropped) modalities; subclasses define the loss.

    `forward(batch, epoch)` is the training step, so DDP can wrap the whole task."""

    name: ClassVar[str] = "method"
    label: ClassVar[str] = "method"  # the name reports use
    Config: ClassVar[type] = NoConfig
    forced_strategy: ClassVar[str | None] = None  # overrides fusion.missing_strategy when set
    uses_dropout: ClassVar[bool] = True
    student: ClassVar[bool] = True  # trained by `mmkd distill` (the teacher by `train teacher`)

    def __init__(self, model: FusionModel, cfg: Any, train: TrainConfig, n_samples: int,
                 make_model: Callable[[], FusionModel] | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.p_drop = train.modality_dropout if self.uses_dropout else 0.0
        self.draws = DropoutDraws(train.seed, n_samples)

    @classmethod
    def needs(cls, cfg: Any) -> BatchNeeds:
        return BatchNeeds()

    @classmethod
    def missing_strategy(cls, configured: str) -> str:
        return cls.forced_strategy or configured

    @classmethod
    def config_from(cls, run: RunConfig) -> Any:
        """This method's typed config: its defaults with `methods.<name>` of the run on top."""
        from mmkd.config import from_dict

        where = f"methods.{cls.name}"
        cfg = from_dict(cls.Config, dict(run.methods.get(cls.name) or {}), where)
        problems = [f"{f.name} = {getattr(cfg, f.name)!r}: a loss weight must be >= 0"
                    for f in dataclasses.fields(cfg)
                    if f.metadata.get("loss_weight") and getattr(cfg, f.name) < 0]
        problems += cfg.problems() if hasattr(cfg, "problems") else []
        if problems:
            raise ConfigError([f"{where}.{p}" for p in problems])
        return cfg

    def no_weight_decay(self) -> set[str]:
        """Parameter names (as in `named_parameters()`) that AdamW must not decay."""
        return {f"{name}.{p}" for name, child in self.named_children()
                if hasattr(child, "no_weight_decay") for p in child.no_weight_decay()}

    def dropped(self, batch: dict, epoch: int | None) -> dict[str, torch.Tensor]:
        """The availability a training step sees: the cached flags after modality dropout."""
        present = {m: p.bool() for m, p in batch["present"].items()}
        if epoch is not None and self.p_drop > 0:
            u_B = self.draws(epoch, batch["index"])
            present = losses.modality_dropout(present, self.p_drop, u_B)
        return present

    def predict(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
                ) -> FusionOutput:
        """Inference: the trained model on these tokens and availability flags."""
        return self.model(tokens, present)

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        raise NotImplementedError

    def forward(self, batch: dict, epoch: int) -> StepOutput:
        return self.training_step(batch, epoch)


def teacher_logits(batch: dict, teacher: str) -> dict[str, torch.Tensor]:
    return batch["teachers"][teacher]["logits"]


def student_methods() -> list[str]:
    """Names `mmkd distill --method` accepts."""
    return [n for n in methods.list() if methods.get(n).student]


