"""Cross-modal proxy tokens (CMPT, Reza et al.) in the fusion block: the `cmpt` strategy.

For every ordered pair of modalities (t ← s) one learned query token p_{t←s} cross-attends to
the embedded input tokens of s alone and is trained to approximate t's pooled output token z_t.
When t is missing, the mean of p_{t←s} over the available sources s takes z_t's place in the
mean of predictions and the heads.

The proxies read the fusion block's *inputs* (each modality's projected tokens), not its
outputs: an output token of s has attended to t in the fusion layers, so a proxy reading it
would see t during training (when t is present and the alignment target exists) but not at
test time (when t is missing and the proxy is used). Other tokens never attend to the proxies,
so the ordinary path of the fusion block is unchanged by them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pair_key(target: str, source: str) -> str:
    """The name of p_{target←source} in outputs and losses: "audio<-video"."""
    return f"{target}<-{source}"


class CrossModalProxies(nn.Module):
    """One query per ordered modality pair, one masked cross-attention layer + FFN, all pairs in
    a single attention call."""

    def __init__(self, modalities: list[str], width: int, n_heads: int, mlp_ratio: int):
        super().__init__()
        self.modalities = list(modalities)
        self.pairs = [(t, s) for t in self.modalities for s in self.modalities if t != s]
        self.n_heads = n_heads
        self.query_Pd = nn.Parameter(torch.zeros(len(self.pairs), width))
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))
        self.norm_out = nn.LayerNorm(width)

    def attend_mask(self, keeps: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, P, L) bool, True = proxy p may attend to key l of the concatenated tokens
        [s1 | s2 | …] (modality order): only the kept tokens of its source. Where the source has
        none (missing) the row falls back to all of the source's positions, so no row is empty;
        such a proxy is neither used nor aligned."""
        spans, start = {}, 0
        for m in self.modalities:
            spans[m] = (start, start + keeps[m].shape[1])
            start = spans[m][1]
        B = keeps[self.modalities[0]].shape[0]
        device = keeps[self.modalities[0]].device
        mask_BPL = torch.zeros(B, len(self.pairs), start, dtype=torch.bool, device=device)
        for i, (_, s) in enumerate(self.pairs):
            a, b = spans[s]
            keep_BK = keeps[s]
            mask_BPL[:, i, a:b] = keep_BK | ~keep_BK.any(1, keepdim=True)
        return mask_BPL

    def forward(self, parts: dict[str, torch.Tensor], keeps: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        """{pair_key(t, s): (B, d)} from each modality's embedded tokens (B, K_m, d)."""
        kv_BLd = self.norm_kv(torch.cat([parts[m] for m in self.modalities], 1))
        B, L, d = kv_BLd.shape
        P, H = len(self.pairs), self.n_heads
        x_BPd = self.query_Pd.to(kv_BLd.dtype).expand(B, -1, -1)
        q = self.q(self.norm_q(x_BPd)).view(B, P, H, d // H).transpose(1, 2)
        k, v = self.kv(kv_BLd).view(B, L, 2, H, d // H).permute(2, 0, 3, 1, 4)
        mask = self.attend_mask(keeps).unsqueeze(1)  # (B, 1, P, L)
        a_BHPd = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x_BPd = x_BPd + self.proj(a_BHPd.transpose(1, 2).reshape(B, P, d))
        x_BPd = self.norm_out(x_BPd + self.mlp(self.norm2(x_BPd)))
        return {pair_key(t, s): x_BPd[:, i] for i, (t, s) in enumerate(self.pairs)}


def substitute(out_tokens: dict[str, torch.Tensor], valid: dict[str, torch.Tensor],
               proxies: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The paper's gating: a missing modality t's pooled token becomes the mean of its proxies
    from the available modalities (and then counts in the mean of predictions)."""
    tokens, ok = dict(out_tokens), dict(valid)
    for t in out_tokens:
        sources = [s for s in out_tokens if s != t and pair_key(t, s) in proxies]
        if not sources:
            continue
        w_BS = torch.stack([present[s].bool() for s in sources], 1)
        p_BSd = torch.stack([proxies[pair_key(t, s)] for s in sources], 1)
        w_BS1 = w_BS.unsqueeze(-1).to(p_BSd.dtype)
        mean_Bd = (p_BSd * w_BS1).sum(1) / w_BS1.sum(1).clamp(min=1)
        use_B = ~present[t].bool() & w_BS.any(1)
        tokens[t] = torch.where(use_B.unsqueeze(-1), mean_Bd.to(tokens[t].dtype), tokens[t])
        ok[t] = ok[t] | use_B
    return tokens, ok
