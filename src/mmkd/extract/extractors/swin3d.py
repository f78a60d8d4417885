"""Video Swin Transformer (torchvision's SwinTransformer3d) as a token extractor.

Tokens are the last stage's output after the final LayerNorm, before pooling: a
(T/2)×(H/32)×(W/32) grid flattened in (t, h, w) order, e.g. 16×7×7 = 784 tokens for a 32×224×224
clip (dim 1024 for Swin-B, 768 for Swin-T). The classification head is dropped.

Checkpoints: torchvision state dicts load as they are; the official Video-Swin-Transformer
checkpoints (`state_dict` with `backbone.` keys, mmaction2 layout) are renamed to torchvision's
layout: `layers.{s}.blocks.{i}` -> `features.{2s}.{i}`, `layers.{s}.downsample` -> `features.{2s+1}`,
`mlp.fc1`/`mlp.fc2` -> `mlp.0`/`mlp.3`; `patch_embed.*` and `norm.*` keep their names.
"""

from __future__ import annotations

import math
import re

import torch
from torchvision.models.video.swin_transformer import SwinTransformer3d

from mmkd.extract.extractors.base import Extractor, ExtractorSpec, register_family, register_spec

K400_SOURCE_B = ("torchvision swin3d_b KINETICS400_V1 (https://download.pytorch.org/models/"
                 "swin3d_b_1k-24f7c7c6.pth) or the official Video-Swin-Transformer "
                 "swin_base_patch244_window877_kinetics400_1k.pth")
K400_SOURCE_T = ("torchvision swin3d_t KINETICS400_V1 (https://download.pytorch.org/models/"
                 "swin3d_t-7615ae03.pth) or the official swin_tiny_patch244_window877_kinetics400_1k.pth")

_HEAD_KEYS = re.compile(r"^(head\.|cls_head\.)")
_LAYER = re.compile(r"^layers\.(\d+)\.(blocks\.(\d+)|downsample)\.(.*)$")


def official_to_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official Video-Swin (mmaction2) backbone keys to torchvision's SwinTransformer3d."""
    out = {}
    for key, value in sd.items():
        key = key.removeprefix("backbone.")
        m = _LAYER.match(key)
        if m:
            stage, rest = int(m.group(1)), m.group(4)
            if m.group(3) is not None:
                rest = rest.replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
                key = f"features.{2 * stage}.{m.group(3)}.{rest}"
            else:
                key = f"features.{2 * stage + 1}.{rest}"
        out[key] = value
    return out


class Swin3dExtractor(Extractor):
    def __init__(self, spec: ExtractorSpec):
        super().__init__()
        a = spec.arch
        self.backbone = SwinTransformer3d(
            patch_size=list(a["patch_size"]), embed_dim=a["embed_dim"], depths=list(a["depths"]),
            num_heads=list(a["num_heads"]), window_size=list(a["window_size"]),
            stochastic_depth_prob=a.get("stochastic_depth_prob", 0.1), num_classes=400)
        del self.backbone.head, self.backbone.avgpool  # tokens come before pooling

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        b = self.backbone
        x = b.norm(b.features(b.pos_drop(b.patch_embed(inputs["frames"]))))  # (B, T, H, W, C)
        return x.flatten(1, 3)

    def convert_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if any(k.startswith(("backbone.", "layers.")) for k in sd):
            sd = official_to_torchvision(sd)
        return {f"backbone.{k}": v for k, v in sd.items() if not _HEAD_KEYS.match(k)}


def swin_tokens(spec: ExtractorSpec, num_frames: int) -> int:
    """Patch grid of the clip, halved in space by each patch merging after the first stage."""
    pt, ph, pw = spec.arch["patch_size"]
    t, h, w = math.ceil(num_frames / pt), math.ceil(spec.crop / ph), math.ceil(spec.crop / pw)
    for _ in range(len(spec.arch["depths"]) - 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return t * h * w


_SWIN = dict(n_tokens=swin_tokens, grad_checkpointing=True,
             no_weight_decay=("relative_position_bias_table",))


@register_family("swin3d", input_kind="frames", modalities=("video", "flow"),
                 contract=("crop", "resize", "mean", "std"), **_SWIN)
def _build(spec: ExtractorSpec) -> Extractor:
    return Swin3dExtractor(spec)


@register_family("swin3d_audio", input_kind="mel_windows", modalities=("audio",),
                 contract=("crop", "sample_rate", "n_mels", "frame_shift_ms", "window_s"), **_SWIN)
def _build_audio(spec: ExtractorSpec) -> Extractor:
    return Swin3dExtractor(spec)


def swin_arch(embed_dim: int, depths, num_heads, window=(8, 7, 7), patch=(2, 4, 4)) -> dict:
    return {"patch_size": tuple(patch), "embed_dim": embed_dim, "depths": tuple(depths),
            "num_heads": tuple(num_heads), "window_size": tuple(window)}


SWIN_B = swin_arch(128, (2, 2, 18, 2), (4, 8, 16, 32))
SWIN_T = swin_arch(96, (2, 2, 6, 2), (3, 6, 12, 24))

register_spec(ExtractorSpec("swin3d_b", "swin3d", 1024, SWIN_B, K400_SOURCE_B))
register_spec(ExtractorSpec("swin3d_t", "swin3d", 768, SWIN_T, K400_SOURCE_T))
# Tiny variant: same code path, CPU-test sized (32 px crop, 2 stages).
register_spec(ExtractorSpec("test_swin3d", "swin3d", 32, swin_arch(16, (1, 1), (2, 2), (2, 4, 4)),
                            "random init (tests only)", crop=32, resize=36))
# Demo variants: small Video Swins that `mmkd demo` pretrains on its own data (`mmkd pretrain`):
# 8 frames, 64 px crop, 8×8 patches and 3 stages (4×2×2 = 16 tokens). Measured on one CPU core,
# batch 32: forward + backward 5.7 ms (teacher, 0.83 M parameters) / 2.5 ms (student, 0.33 M)
# per clip.
DEMO_TEACHER = swin_arch(48, (1, 2, 1), (3, 6, 12), (8, 4, 4), (2, 8, 8))
DEMO_STUDENT = swin_arch(32, (1, 1, 1), (2, 4, 8), (8, 4, 4), (2, 8, 8))
_DEMO = "the demo's own pretraining (mmkd pretrain)"
register_spec(ExtractorSpec("demo_swin3d_teacher", "swin3d", 192, DEMO_TEACHER, _DEMO,
                            crop=64, resize=72))
register_spec(ExtractorSpec("demo_swin3d_student", "swin3d", 128, DEMO_STUDENT, _DEMO,
                            crop=64, resize=72))
