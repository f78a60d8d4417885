"""CMPT (Reza et al., cross-modal proxy tokens): L = CE + λ·L_align on the `cmpt` fusion block,
whose proxy p_{t←s} reads only modality s and stands in for t's pooled token when t is missing.

L_align is over the (sample, pair) cases where both t and s are available in this step (after
modality dropout): per sample the sum over pairs of d(p_{t←s}, z_t), averaged over the samples
that have at least one such pair, z_t detached (the proxy follows the token, not the reverse).
For two modalities that is the paper's Eq. 4 sum over both directions, averaged over D_c.
  distance mse    mean squared error over the feature dimension (the default)
  distance ratio  the paper's Eq. 4: MSE(p_{t←s}, z_t) / MSE(p_{t←s}, z_s), which also pushes
                  the proxy away from its own source's token (applied to every pair)
The paper's two setups: complete training data with modality dropout (`dropout: true`, the rate
is train.modality_dropout) and data with missing modalities as cached (`dropout: false`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mmkd.models.proxies import pair_key
from mmkd.registry import methods
from mmkd.train import losses
from mmkd.train.methods.base import Method, StepOutput, loss_weight

DISTANCES = ("mse", "ratio")


@dataclass
class CmptConfig:
    lambda_align: float = loss_weight(0.2)  # λ (paper §3.4 and Tab. 5)
    distance: str = "mse"  # mse | ratio (module docstring)
    dropout: bool = True  # modality dropout at train.modality_dropout; false: data as cached

    def problems(self) -> list[str]:
        if self.distance not in DISTANCES:
            return [f"distance = {self.distance!r}: allowed {', '.join(DISTANCES)}"]
        return []


def align_loss(proxies: dict[str, torch.Tensor], pooled: dict[str, torch.Tensor],
               present: dict[str, torch.Tensor], distance: str = "mse") -> torch.Tensor:
    """L_align (module docstring); zero where a pair's target or source is missing."""
    total, any_B = None, None
    for t in pooled:
        for s in pooled:
            key = pair_key(t, s)
            if key not in proxies:
                continue
            p_Bd = proxies[key].float()
            d_B = (p_Bd - pooled[t].detach().float()).pow(2).mean(-1)
            if distance == "ratio":
                d_B = d_B / (p_Bd - pooled[s].detach().float()).pow(2).mean(-1).clamp(min=1e-6)
            both_B = present[t].bool() & present[s].bool()
            term = torch.where(both_B, d_B, torch.zeros_like(d_B))
            total = term if total is None else total + term
            any_B = both_B if any_B is None else any_B | both_B
    if total is None:
        raise ValueError("CMPT needs a model built with the `cmpt` strategy (it has no proxies)")
    return total.sum() / any_B.sum().clamp(min=1)


@methods.register("cmpt")
class CmptMethod(Method):
    name = "cmpt"
    label = "CMPT"
    Config = CmptConfig
    forced_strategy = "cmpt"

    def __init__(self, model, cfg: CmptConfig, train: Any, n_samples: int,
                 make_model: Callable | None = None):
        super().__init__(model, cfg, train, n_samples)
        if not cfg.dropout:
            self.p_drop = 0.0

    def training_step(self, batch: dict, epoch: int) -> StepOutput:
        present = self.dropped(batch, epoch)
        out = self.model(batch["tokens"], present)
        ce = losses.cross_entropy(out.logits, batch["labels"])
        align = align_loss(out.proxies, out.modality_tokens, present, self.cfg.distance)
        loss = ce + self.cfg.lambda_align * align
        return StepOutput(loss, out.logits, {"ce": ce.detach(), "align": align.detach()})
