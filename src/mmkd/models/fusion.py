"""KARMMA's fusion block and multi-head MLP, as one `FusionModel`.

tokens (per modality, B×k×D) → linear embedding + missing-modality strategy → [CLS | m1 | m2 …]
→ l pre-norm transformer layers (8 heads, attention dropout only) → M + 1 output tokens (the mean
output token of each modality, and the CLS output) → MH-MLP on each → logits = mean of the M + 1
predictions per head.

With the `none` strategy a missing modality has no tokens at all: its key positions are masked in
attention, its output token is reported as zeros, and it is left out of the mean of predictions
(the mean runs over the CLS token and the modalities present in that sample). With B1 a missing
modality contributes its single learned token, whose output is that modality's output token.
`cmpt` masks a missing modality like `none` and puts its cross-modal proxy token (models/proxies)
in place of its output token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mmkd.models.missing import ModalityEmbedding
from mmkd.models.proxies import CrossModalProxies, substitute


@dataclass
class ModelSpec:
    """Everything needed to rebuild a FusionModel (stored in checkpoint meta as JSON)."""

    modalities: dict[str, list[int]]  # modality -> [k tokens (Θ), input dim D], in fusion order
    heads: dict[str, int]  # label head -> number of classes
    width: int = 768
    layers: int = 2
    n_heads: int = 8
    attn_dropout: float = 0.0
    missing_strategy: str = "B5"
    mlp_hidden: int = 768
    mlp_ratio: int = 4  # transformer FFN width = mlp_ratio * width (ViT default; paper silent)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FusionOutput:
    logits: dict[str, torch.Tensor]  # head -> (B, C): mean over the M + 1 token predictions
    modality_tokens: dict[str, torch.Tensor]  # modality -> (B, d): mean output token (z_m)
    cls: torch.Tensor  # (B, d)
    token_valid: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (B,) bool:
    # whether z_m counts in the mean of predictions (False only for a missing modality under `none`)
    proxies: dict[str, torch.Tensor] = field(default_factory=dict)  # "t<-s" -> (B, d), `cmpt` only
    kv: dict[str, torch.Tensor] = field(default_factory=dict)  # modality -> (B, H, dh, dh): the
    # last block's per-head Kᵀ V over that modality's kept tokens (only when asked, `with_kv`)


class PreNormBlock(nn.Module):
    """x + MHSA(LN(x)); x + MLP(LN(x)). Dropout only on the attention weights (as in the paper)."""

    def __init__(self, width: int, n_heads: int, attn_dropout: float, mlp_ratio: int):
        super().__init__()
        self.n_heads = n_heads
        self.attn_dropout = attn_dropout
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))

    def forward(self, x_BLd: torch.Tensor, keep_BL: torch.Tensor | None, with_kv: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The block's output; with `with_kv` also its keys and values, each (B, H, L, dh)."""
        B, L, d = x_BLd.shape
        q, k, v = self.qkv(self.norm1(x_BLd)).view(B, L, 3, self.n_heads, d // self.n_heads) \
            .permute(2, 0, 3, 1, 4)  # each (B, H, L, dh)
        mask = None if keep_BL is None else keep_BL.view(B, 1, 1, L)  # True = attend to this key
        a_BHLd = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        x_BLd = x_BLd + self.proj(a_BHLd.transpose(1, 2).reshape(B, L, d))
        x_BLd = x_BLd + self.mlp(self.norm2(x_BLd))
        return (x_BLd, k, v) if with_kv else x_BLd


class MultiHeadMLP(nn.Module):
    """One shared FC layer (+ GELU) and one independent linear classifier per label head."""

    def __init__(self, width: int, hidden: int, heads: dict[str, int]):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(width, hidden), nn.GELU())
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, c) for h, c in heads.items()})

    def forward(self, x_BTd: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.shared(x_BTd)
        return {name: head(h) for name, head in self.heads.items()}


class FusionModel(nn.Module):
    """Fusion block + MH-MLP over cached tokens; runs on any subset of its modalities."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        d = spec.width
        self.modalities = list(spec.modalities)
        self.embed = nn.ModuleDict({
            m: ModalityEmbedding(in_dim, d, k, spec.missing_strategy)
            for m, (k, in_dim) in spec.modalities.items()})
        self.cls_token = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(PreNormBlock(d, spec.n_heads, spec.attn_dropout, spec.mlp_ratio)
                                    for _ in range(spec.layers))
        self.norm = nn.LayerNorm(d)
        self.proxies = (CrossModalProxies(self.modalities, d, spec.n_heads, spec.mlp_ratio)
                        if spec.missing_strategy == "cmpt" else None)
        self.mlp_head = MultiHeadMLP(d, spec.mlp_hidden, spec.heads)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.proxies is not None:
            nn.init.trunc_normal_(self.proxies.query_Pd, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Learned tokens, biases and norms are not decayed (timm convention; paper silent)."""
        return {n for n, p in self.named_parameters()
                if p.ndim < 2 or n.endswith(("token_tokens", "modality_token", "query_Pd", "tokens_PD"))}

    def forward(self, tokens: dict[str, torch.Tensor], present: dict[str, torch.Tensor],
                proxies: dict[str, torch.Tensor] | None = None, with_kv: bool = False
                ) -> FusionOutput:
        """Logits and output tokens. `proxies` ("t<-s" -> (B, d)) replace the block's own
        proxies of those pairs (`cmpt`; stage 3 computes some inside the extractors); `with_kv`
        adds the last block's Kᵀ V per modality."""
        missing = [m for m in self.modalities if m not in tokens or m not in present]
        if missing:
            raise KeyError(f"model inputs lack modality {missing}; pass every modality of "
                           f"{self.modalities} (present=False for the missing ones)")
        parts, keeps = [], []
        for m in self.modalities:
            o_BKd, keep_BK = self.embed[m](tokens[m], present[m].bool())
            parts.append(o_BKd)
            keeps.append(keep_BK)
        B = parts[0].shape[0]
        cls_B1d = self.cls_token.to(parts[0].dtype).expand(B, 1, -1)
        x_BLd = torch.cat([cls_B1d, *parts], dim=1)
        keep_BL = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x_BLd.device), *keeps], 1)
        masked = any(self.embed[m].masks_tokens for m in self.modalities)
        for block in self.blocks[:-1]:
            x_BLd = block(x_BLd, keep_BL if masked else None)
        x_BLd = self.blocks[-1](x_BLd, keep_BL if masked else None, with_kv=with_kv)
        if with_kv:
            x_BLd, k_BHLd, v_BHLd = x_BLd
        x_BLd = self.norm(x_BLd)

        out_tokens, valid, kv, start = {}, {}, {}, 1
        for m, keep_BK in zip(self.modalities, keeps, strict=True):
            stop = start + keep_BK.shape[1]
            w_BK1 = keep_BK.unsqueeze(-1).to(x_BLd.dtype)
            out_tokens[m] = (x_BLd[:, start:stop] * w_BK1).sum(1) / w_BK1.sum(1).clamp(min=1)
            valid[m] = keep_BK.any(1)
            if with_kv:  # Σ over m's kept tokens of k_t v_tᵀ, per head
                w_B1K1 = keep_BK.view(B, 1, -1, 1).to(k_BHLd.dtype)
                kv[m] = (k_BHLd[:, :, start:stop] * w_B1K1).transpose(-1, -2) \
                    @ v_BHLd[:, :, start:stop]
            start = stop
        own: dict[str, torch.Tensor] = {}
        if self.proxies is not None:
            own = {**self.proxies(dict(zip(self.modalities, parts, strict=True)),
                                  dict(zip(self.modalities, keeps, strict=True))),
                   **(proxies or {})}
            out_tokens, valid = substitute(out_tokens, valid, own, present)
        cls_Bd = x_BLd[:, 0]
        z_BTd = torch.stack([*out_tokens.values(), cls_Bd], dim=1)  # T = M + 1
        w_BT = torch.stack([*valid.values(), torch.ones_like(valid[self.modalities[0]])], 1)
        w_BT1 = w_BT.unsqueeze(-1).to(z_BTd.dtype)
        preds = self.mlp_head(z_BTd)
        logits = {h: (p_BTC * w_BT1).sum(1) / w_BT1.sum(1) for h, p_BTC in preds.items()}
        return FusionOutput(logits=logits, modality_tokens=out_tokens, cls=cls_Bd,
                            token_valid=valid, proxies=own, kv=kv)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
