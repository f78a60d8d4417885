"""D-CAT, decoupled cross-attention transfer: a unimodal student on a target modality B learns from
a frozen source model on modality A through their self-attention modules only, so the two
classifiers stay decoupled and inference needs B alone.

  L = CE + λ·L_CA,   L_CA = 1[source right] · ‖n(K_Bᵀ V_B) − n(K_Aᵀ V_A)‖_F   (per sample)

K, V are the last transformer block's keys and values over the modality's own kept tokens. With
multi-head attention Kᵀ V is taken per head, (H, dh, dh): the products a linearised multi-head
attention Q_h (K_hᵀ V_h) uses. n(·) divides a sample's stacked per-head products by their
Frobenius norm (the products are "normalised" without saying how; a unit norm leaves only their
direction to align). Both attention modules must share H and dh (the shared d_out).

The source side comes from the cache (`mmkd train teacher --modalities A --name ID --kv`), so the
source is frozen by construction; a zero row there means A was missing for that sample. A sample
is aligned only when B and A are present and, with `masked` (the default), when the source's
cached prediction is right on every label head; L_CA is the batch mean with the others at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mmkd.errors import ConfigError
from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import BatchNeeds, Method, StepOutput, loss_weight


@dataclass
class DcatConfig:
    source: str = ""  # modality A of the frozen source model
    teacher: str = ""  # the source's teacher id in the cache (default: the name of A)
    ca_weight: float = loss_weight(1.0)  # λ
    masked: bool = True  # align only samples the source classifies correctly

    def problems(self) -> list[str]:
        return [] if self.source else \
            ["source = '': name the source modality, e.g. --set methods.dcat.source=video"]

    @property
    def teacher_id(self) -> str:
        return self.teacher or self.source


def normalised_kv(kv_BHdd: torch.Tensor) -> torch.Tensor:
    """n(Kᵀ V): a sample's per-head products, flattened to (B, H·dh·dh), at unit Frobenius norm
    (a zero product stays zero)."""
    kv_BX = kv_BHdd.float().flatten(1)
    return kv_BX / kv_BX.norm(dim=1, keepdim=True).clamp(min=1e-12)


def source_right(logits: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]
                 ) -> torch.Tensor:
    """(B,) bool: the source's prediction is right on every label head."""
    return torch.stack([logits[h].argmax(-1) == labels[h] for h in labels]).all(0)


def cross_attention_loss(kv_b_BX: torch.Tensor, kv_a_BX: torch.Tensor, weight_B: torch.Tensor
                         ) -> torch.Tensor:
    """L_CA: batch mean of weight · ‖kv_b − kv_a‖_F, both already normalised."""
    per_B = (kv_b_BX - kv_a_BX).norm(dim=1)
    return (per_B * weight_B.to(per_B.dtype)).mean()


@methods.register("dcat")
class DcatMethod(Method):
    name = "dcat"
    label = "D-CAT"
    Config = DcatConfig
    uses_dropout = False  # one modality: nothing to drop

    def __init__(self, model, cfg: DcatConfig, train, n_samples: int, make_model=None):
        super().__init__(model, cfg, train, n_samples)
        if len(model.modalities) != 1 or model.modalities[0] == cfg.source:
            raise ConfigError([
                f"methods.dcat.source = {cfg.source!r}: D-CAT trains a unimodal student on "
                f"another modality (got {'+'.join(model.modalities)}); run `mmkd distill "
                f"--method dcat --modalities B` with one B other than {cfg.source}"])
        self.target = model.modalities[0]

    @classmethod
    def needs(cls, cfg: DcatConfig) -> BatchNeeds:
        t = cfg.teacher_id
        return BatchNeeds(logits=(t,) if cfg.masked else (), kv=((t, cfg.source),))

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        present = self.dropped(batch, epoch)
        out = self.model(batch["tokens"], present, with_kv=True)
        ce = losses.cross_entropy(out.logits, batch["labels"])
        source = batch["teachers"][self.cfg.teacher_id]
        kv_a = normalised_kv(source["kv"][self.cfg.source].detach())  # frozen; fp16 in cache
        kv_b = normalised_kv(out.kv[self.target])
        if kv_a.shape[1] != kv_b.shape[1]:
            spec = self.model.spec
            raise ConfigError([
                f"methods.dcat.teacher = {self.cfg.teacher_id!r}: its Kᵀ V has {kv_a.shape[1]} "
                f"entries per sample, the student's {spec.n_heads} heads × "
                f"{spec.width // spec.n_heads}² = {kv_b.shape[1]}; both attention modules must "
                f"share heads and width: train the source with `--set teacher.fusion.width="
                f"{spec.width} --set teacher.fusion.heads={spec.n_heads}`"])
        weight = present[self.target] & (kv_a != 0).any(1)
        if self.cfg.masked:
            weight = weight & source_right(source["logits"], batch["labels"])
        ca = cross_attention_loss(kv_b, kv_a, weight)
        loss = ce + self.cfg.ca_weight * ca
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "ca": ca.detach()})
