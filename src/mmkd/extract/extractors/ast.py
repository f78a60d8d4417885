"""Audio Spectrogram Transformer (Gong et al. 2021) on timm's VisionTransformerDistilled.

As in AST: the Kaldi fbank (T frames × 128 mel bins) is an image of 1 channel, 128 high and T
wide, cut into overlapping 16×16 patches with stride 10, with two special tokens (cls + dist)
and a learned position embedding. Tokens are all outputs after the final norm (2 + patches).
Official AST checkpoints (`module.v.*` keys, plus `module.mlp_head.*`) load after stripping the
prefix; the classifier heads are dropped. A checkpoint trained on another clip length (AudioSet:
1024 frames, a 12 × 101 patch grid) is fitted to `target_frames` as the official code does
(`resample_pos_embed`). The paper's student AST-Tiny starts from a random init; AST-Base's
source is the AST repo's AudioSet checkpoint.
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed
from timm.models.deit import VisionTransformerDistilled
from torch import nn

from mmkd.extract.extractors.base import Extractor, ExtractorSpec, register_family, register_spec

_DROP = ("head.", "head_dist.", "mlp_head.")


class OverlapPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with a stride smaller than the patch (AST's overlapping patches)."""

    def __init__(self, *args, stride: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        p = self.patch_size
        self.proj = nn.Conv2d(self.proj.in_channels, self.proj.out_channels, kernel_size=p,
                              stride=stride, bias=self.proj.bias is not None)
        self.grid_size = tuple((s - k) // stride + 1 for s, k in zip(self.img_size, p, strict=True))
        self.num_patches = self.grid_size[0] * self.grid_size[1]


class ASTExtractor(Extractor):
    def __init__(self, spec: ExtractorSpec):
        super().__init__()
        a = spec.arch

        def embed(**kw):
            return OverlapPatchEmbed(stride=a["patch_stride"], **kw)

        self.v = VisionTransformerDistilled(
            img_size=(spec.n_mels, spec.target_frames), patch_size=a["patch_size"], in_chans=1,
            num_classes=0, embed_dim=a["embed_dim"], depth=a["depth"], num_heads=a["num_heads"],
            embed_layer=embed)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.v.forward_features(_image(inputs))

    def forward_with_prefix(self, inputs: dict[str, torch.Tensor], prefix_BPD: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """(`forward`'s tokens, the outputs of the P prefix tokens): extra tokens placed before
        the class token that attend to the whole sequence, while no other token attends to them,
        so the tokens equal `forward`'s exactly (CMPT's proxy tokens)."""
        v = self.v
        x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(_image(inputs)))))
        P, L = prefix_BPD.shape[1], x.shape[1]
        mask_LL = torch.ones(P + L, P + L, dtype=torch.bool, device=x.device)
        mask_LL[P:, :P] = False
        x = torch.cat([prefix_BPD.to(x.dtype), x], 1)
        for blk in v.blocks:
            x = blk(x, attn_mask=mask_LL)
        x = v.norm(x)
        return x[:, P:], x[:, :P]

    def convert_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for key, value in sd.items():
            key = key.removeprefix("module.").removeprefix("v.")
            if not key.startswith(_DROP):
                out[f"v.{key}"] = value
        pos, own = out.get("v.pos_embed"), self.v.pos_embed
        f, t = self.v.patch_embed.grid_size
        n_patches = pos.shape[1] - 2 if pos is not None and pos.ndim == 3 else 0
        # same frequency rows, another number of time columns: the clip length differs
        if pos is not None and pos.shape != own.shape and n_patches > 0 and n_patches % f == 0:
            out["v.pos_embed"] = resample_pos_embed(pos, (f, n_patches // f), (f, t))
        return out


def _image(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return inputs["fbank"].unsqueeze(1).transpose(2, 3)  # (B, T, mel) -> (B, 1, mel, T)


def _fit_axis(x: torch.Tensor, axis: int, size: int) -> torch.Tensor:
    """AST's rule on one axis of a (1, D, F, T) grid: cut from the middle or interpolate."""
    n = x.shape[axis]
    if size <= n:
        start = n // 2 - size // 2
        return x.narrow(axis, start, size)
    shape = list(x.shape[2:])
    shape[axis - 2] = size
    return nn.functional.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)


def resample_pos_embed(pos_1ND: torch.Tensor, grid: tuple[int, int],
                       new_grid: tuple[int, int]) -> torch.Tensor:
    """Position embedding of a (F, T) patch grid (after the cls and dist rows) fitted to
    `new_grid` as the official AST does: the time axis first, then frequency, each cut from its
    middle when it shrinks (start = n // 2 - new // 2) and bilinearly interpolated when it grows."""
    d = pos_1ND.shape[-1]
    x = pos_1ND[:, 2:].transpose(1, 2).reshape(1, d, *grid)
    x = _fit_axis(_fit_axis(x, 3, new_grid[1]), 2, new_grid[0])
    patches = x.reshape(1, d, new_grid[0] * new_grid[1]).transpose(1, 2)
    return torch.cat([pos_1ND[:, :2], patches], dim=1)


def ast_tokens(spec: ExtractorSpec, num_frames: int) -> int:
    """Overlapping patches of the fbank, plus the [CLS] and distillation tokens."""
    p, s = spec.arch["patch_size"], spec.arch["patch_stride"]
    return ((spec.n_mels - p) // s + 1) * ((spec.target_frames - p) // s + 1) + 2


@register_family("ast", input_kind="fbank", modalities=("audio",),
                 contract=("sample_rate", "n_mels", "frame_shift_ms", "target_frames"),
                 n_tokens=ast_tokens, grad_checkpointing=True,
                 no_weight_decay=("pos_embed", "cls_token", "dist_token"))
def _build(spec: ExtractorSpec) -> Extractor:
    return ASTExtractor(spec)


def ast_arch(embed_dim: int, depth: int, num_heads: int) -> dict:
    return {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads, "patch_size": 16,
            "patch_stride": 10}


_SRC = "random init (paper: AST-Tiny student from scratch) or an AST checkpoint of this size"
register_spec(ExtractorSpec("ast_tiny", "ast", 192, ast_arch(192, 12, 3), _SRC))
register_spec(ExtractorSpec("ast_small", "ast", 384, ast_arch(384, 12, 6), _SRC))
register_spec(ExtractorSpec("ast_base", "ast", 768, ast_arch(768, 12, 12),
                            "AST repo audioset_10_10_0.4593.pth (github.com/YuanGongND/ast)"))
register_spec(ExtractorSpec("test_ast", "ast", 32, ast_arch(32, 1, 2), "random init (tests only)",
                            n_mels=32, target_frames=48))
register_spec(ExtractorSpec("demo_ast_student", "ast", 64, ast_arch(64, 2, 2),
                            "random init (the demo, as the paper's AST-Tiny)", sample_rate=24000,
                            n_mels=64, target_frames=100))
