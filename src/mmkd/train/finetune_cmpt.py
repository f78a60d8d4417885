"""Stage 3 for CMPT (`mmkd finetune --method cmpt`): proxy tokens inside the modality encoders,
the encoders frozen and adapted by rank-1 LoRA, as the paper trains them end to end.

LoRA (peft): rank 1, alpha 1, dropout 0.1 on every attention block's input and output
projections: `attn.qkv` and `attn.proj` of timm's ViT/AST blocks and of torchvision's Video
Swin windows. Both libraries fuse query, key and value into one Linear, so q, k and v share the
adapter's rank-1 down-projection and have their own up-projection rows. At initialisation
B = 0: the adapted encoder computes exactly what the frozen one did. torchvision's Swin
attention hands `qkv.weight`/`proj.weight` to a functional call instead of calling the layers,
which would bypass the adapters: there the call reads W + (alpha/r)·B·A, the same map without
the adapters' input dropout (the ViT/AST blocks call the layers, with dropout).

Proxy tokens inside an encoder with a class token (AST, a timm ViT: `forward_with_prefix`):
the encoder of modality s carries one token per other modality t, placed before its class
token; it attends to s's sequence (and so never to t's tokens) and no token of s attends to it,
so s's own tokens, and a re-extraction with the plain encoder, stay what they were. Its output,
projected to the fusion width, is p_{t←s} and replaces the fusion block's proxy of that pair.
The Video Swin (and the audio Swin, STLT) have no class token, and the Swin attends within
local windows only, so a global token has no place in its blocks: for such a source the proxy
stays the fusion block's cross-attention over the encoder's tokens, now computed end to end, so
the alignment and task losses reach the Swin's LoRA through it.

Outputs: LoRA is merged into the extractor weights (W + (alpha/r)·B·A) when the run is
finalised, so `extractors/<m>.safetensors` loads with `create_extractor` and `--reextract`
works unchanged; the encoder proxies are saved as `extractors/<m>.proxies.safetensors`.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn

from mmkd.errors import MmkdError
from mmkd.models import FusionModel, ModelSpec
from mmkd.models.proxies import pair_key

LORA_TARGETS = r".*\.attn\.(qkv|proj)$"
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 1, 1, 0.1
PROXIES_SUFFIX = ".proxies.safetensors"


def add_lora(extractor: nn.Module, rank: int = LORA_RANK, alpha: int = LORA_ALPHA,
             dropout: float = LORA_DROPOUT) -> int:
    """Freeze `extractor` and give every attention projection a LoRA adapter (in place);
    returns the number of adapted layers."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    extractor.requires_grad_(False)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                     target_modules=LORA_TARGETS)
    try:
        inject_adapter_in_model(cfg, extractor)
    except ValueError as exc:
        raise MmkdError(f"{type(extractor).__name__}: no attention projections (attn.qkv, "
                        f"attn.proj) for LoRA ({exc})") from None
    from torchvision.models.swin_transformer import ShiftedWindowAttention
    from torchvision.models.video.swin_transformer import ShiftedWindowAttention3d

    n = 0
    for module in extractor.modules():
        if isinstance(module, LoraLayer):
            n += 1
            for name, p in module.named_parameters():
                p.requires_grad_("lora_" in name)
        elif isinstance(module, ShiftedWindowAttention | ShiftedWindowAttention3d):
            module.forward = types.MethodType(_adapted_weights_forward, module)
    return n


def _adapted_weights_forward(self: nn.Module, *args, **kwargs):
    """The class's forward, during which `qkv`/`proj` read as their adapted weights."""
    for name in ("qkv", "proj"):
        layer = self._modules[name]
        base = layer.get_base_layer()
        self.__dict__[name] = types.SimpleNamespace(
            weight=base.weight + layer.get_delta_weight("default"), bias=base.bias)
    try:
        return type(self).forward(self, *args, **kwargs)
    finally:
        for name in ("qkv", "proj"):
            self.__dict__.pop(name, None)


def merge_lora(sd: dict[str, torch.Tensor], scaling: float = LORA_ALPHA / LORA_RANK
               ) -> dict[str, torch.Tensor]:
    """A peft-adapted state dict in the plain layout: X.weight = W + scaling·B·A."""
    out = {}
    for key, value in sd.items():
        if ".lora_" in key:
            continue
        if ".base_layer." in key:
            layer, leaf = key.split(".base_layer.")
            if leaf == "weight":
                a = sd[f"{layer}.lora_A.default.weight"].float()
                b = sd[f"{layer}.lora_B.default.weight"].float()
                value = (value.float() + scaling * b @ a).to(value.dtype)
            key = f"{layer}.{leaf}"
        out[key] = value
    return out


def has_prefix_tokens(extractor: nn.Module) -> bool:
    return hasattr(extractor, "forward_with_prefix")


class EncoderProxies(nn.Module):
    """The proxy tokens one encoder carries (one per target modality) and their projections
    from the encoder's width to the fusion block's."""

    def __init__(self, targets: list[str], enc_dim: int, width: int):
        super().__init__()
        self.targets = list(targets)
        self.tokens_PD = nn.Parameter(torch.zeros(len(targets), enc_dim))
        nn.init.trunc_normal_(self.tokens_PD, std=0.02)
        self.out = nn.ModuleDict({t: nn.Linear(enc_dim, width) for t in targets})

    def project(self, source: str, out_BPD: torch.Tensor) -> dict[str, torch.Tensor]:
        return {pair_key(t, source): self.out[t](out_BPD[:, i])
                for i, t in enumerate(self.targets)}


def proxy_key(modality: str) -> str:
    """Where `encode` leaves an encoder's proxy outputs in the token dict (B, P, D)."""
    return f"{modality}/proxies"


def build_encoder_proxies(spec: ModelSpec, extractors: dict[str, nn.Module]) -> nn.ModuleDict:
    mods = list(spec.modalities)
    return nn.ModuleDict({s: EncoderProxies([t for t in mods if t != s], e.spec.dim, spec.width)
                          for s, e in extractors.items() if has_prefix_tokens(e)})


def check_from(model: FusionModel, from_dir: Any) -> None:
    if model.spec.missing_strategy != "cmpt":
        raise MmkdError(f"{from_dir} was trained with missing strategy "
                        f"{model.spec.missing_strategy!r}, not CMPT's proxies; train a CMPT "
                        "student first (`mmkd distill --method cmpt`) and pass "
                        "--from RUN_DIR/students/cmpt")


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
