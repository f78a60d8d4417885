"""Per-modality embedding with the missing-modality strategies of KARMMA (Eq. 6 and Tab. B.1).

Each strategy maps the projected tokens t_BKd of one modality and its availability to the
fusion block's input tokens o_BKd plus a key mask keep_BK (True = a real token the transformer
attends to). A missing modality's raw tokens are zeroed *before* the projection, so whatever the
cache holds for it (zeros, stale values, even inf/NaN) cannot reach the output.

  B1   available t_i + t̆          missing: one token t̆ (the other k-1 positions are masked out)
  B2   available t_i + t̆          missing: t̆ repeated k times
  B3   available t_i + t̆_i        missing: t̆_i
  B4   available t_i              missing: t̆_i
  B5   available t_i + t̆ + î_i    missing: t̆ + î_i          (Eq. 6, KARMMA's choice)
  none available t_i              missing: all k positions masked out (plain modality dropout)
  cmpt as none; the fusion block puts a cross-modal proxy token in place of the missing output

B1 and none change the number of *attended* tokens; the tensor stays (B, k, d) so a batch mixes
samples with and without the modality, and the fusion block masks the unused positions.
"""

from __future__ import annotations

import torch
from torch import nn

STRATEGIES = ("B1", "B2", "B3", "B4", "B5", "none", "cmpt")


class ModalityEmbedding(nn.Module):
    """Linear projection D -> d and one missing-modality strategy for one modality."""

    def __init__(self, in_dim: int, width: int, n_tokens: int, strategy: str = "B5"):
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"missing_strategy {strategy!r}: allowed {', '.join(STRATEGIES)}")
        self.strategy = strategy
        self.n_tokens = n_tokens
        self.proj = nn.Linear(in_dim, width)
        # t̆ (modality token, one per modality) and t̆_i / î_i (token-specific, k per modality)
        self.modality_token = nn.Parameter(torch.zeros(width)) if strategy in ("B1", "B2", "B5") else None
        self.token_tokens = (nn.Parameter(torch.zeros(n_tokens, width))
                             if strategy in ("B3", "B4", "B5") else None)
        for p in (self.modality_token, self.token_tokens):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    @property
    def masks_tokens(self) -> bool:
        """Whether this strategy ever leaves key positions out (the fusion block then masks)."""
        return self.strategy in ("B1", "none", "cmpt")

    def forward(self, tokens_BKD: torch.Tensor, present_B: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        B, K, _ = tokens_BKD.shape
        if K != self.n_tokens:
            raise ValueError(f"expected {self.n_tokens} tokens per sample, got {K}; the model was "
                             "built for a cache with a different Θ")
        avail_B11 = present_B.view(B, 1, 1)
        t_BKd = self.proj(tokens_BKD.masked_fill(~avail_B11, 0.0))
        keep_BK = torch.ones(B, K, dtype=torch.bool, device=t_BKd.device)
        s = self.strategy
        if s in ("none", "cmpt"):
            return t_BKd, keep_BK & present_B.view(B, 1)
        if s in ("B1", "B2"):
            added_d = self.modality_token
            o_avail_BKd = t_BKd + added_d
            o_miss_BKd = added_d.expand_as(t_BKd)
            if s == "B1":
                keep_BK = keep_BK.clone()
                keep_BK[:, 1:] = present_B.view(B, 1)
        elif s in ("B3", "B4"):
            o_avail_BKd = t_BKd + self.token_tokens if s == "B3" else t_BKd
            o_miss_BKd = self.token_tokens.expand_as(t_BKd)
        else:  # B5, Eq. 6
            learned_Kd = self.modality_token + self.token_tokens
            o_avail_BKd = t_BKd + learned_Kd
            o_miss_BKd = learned_Kd.expand_as(t_BKd)
        return torch.where(avail_B11, o_avail_BKd, o_miss_BKd), keep_BK
