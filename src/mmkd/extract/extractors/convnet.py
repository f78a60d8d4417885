"""Small convolutional extractors for small datasets, trained from scratch by `mmkd pretrain`.

Transformers trained from a random init (Video Swin, AST, ViT) need far more clips than a user's
first dataset of ~1k clips holds; convolutions carry the locality prior that a small dataset
cannot teach. Each stage is conv 3×3 (video: × `k_time` frames; 1 in the early, high-resolution
stages keeps them cheap, 3 later sees motion) → BatchNorm → ReLU, twice, the first with the
stage's stride. Padding keeps n positions at ceil(n / stride).

- `convnet` (video, flow; frames C×T×H×W): 3D convolutions; the last stage's (t, h, w) grid,
  flattened in that order, gives the tokens.
- `convnet_audio` (audio; the AST fbank T×M as a 1-channel M×T image): 2D convolutions; the
  last stage is averaged over frequency, so each token is one time step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmkd.errors import MmkdError
from mmkd.extract.extractors.base import Extractor, ExtractorSpec, register_family, register_spec


def _stage(conv: type[nn.Module], norm: type[nn.Module], c_in: int, c_out: int,
           stride: tuple[int, ...], k_time: int) -> nn.Sequential:
    k = (k_time, 3, 3) if len(stride) == 3 else (3, 3)
    pad = tuple(n // 2 for n in k)
    return nn.Sequential(conv(c_in, c_out, k, stride, pad, bias=False), norm(c_out),
                         nn.ReLU(inplace=True), conv(c_out, c_out, k, 1, pad, bias=False),
                         norm(c_out), nn.ReLU(inplace=True))


class ConvNetExtractor(Extractor):
    def __init__(self, spec: ExtractorSpec, audio: bool):
        super().__init__()
        a = spec.arch
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if audio else (nn.Conv3d, nn.BatchNorm3d)
        widths = (1 if audio else 3, *a["widths"])
        if widths[-1] != spec.dim:
            raise MmkdError(f"extractor {spec.name}: the last width {widths[-1]} must be its "
                            f"dim {spec.dim}")
        self.audio = audio
        k_time = a.get("k_time", (3,) * len(a["strides"]))
        self.stages = nn.Sequential(*(
            _stage(conv, norm, c_in, c_out, tuple(s), kt)
            for c_in, c_out, s, kt in zip(widths[:-1], widths[1:], a["strides"], k_time,
                                          strict=True)))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.audio:
            x = self.stages(inputs["fbank"].unsqueeze(1).transpose(2, 3))  # (B, C, mel, T)
            return x.mean(2).transpose(1, 2)  # (B, T', D)
        x = self.stages(inputs["frames"])  # (B, C, t, h, w)
        return x.flatten(2).transpose(1, 2)


def convnet_tokens(spec: ExtractorSpec, num_frames: int) -> int:
    """Each stride s: n -> ceil(n / s) (kernel 3, padding 1)."""
    t, h = num_frames, spec.crop
    for st, sh, _ in spec.arch["strides"]:
        t, h = math.ceil(t / st), math.ceil(h / sh)
    return t * h * h


def convnet_audio_tokens(spec: ExtractorSpec, num_frames: int) -> int:
    """One token per remaining time step."""
    t = spec.target_frames
    for _, st in spec.arch["strides"]:
        t = math.ceil(t / st)
    return t


@register_family("convnet", input_kind="frames", modalities=("video", "flow"),
                 contract=("crop", "resize", "mean", "std"), n_tokens=convnet_tokens)
def _build(spec: ExtractorSpec) -> Extractor:
    return ConvNetExtractor(spec, audio=False)


@register_family("convnet_audio", input_kind="fbank", modalities=("audio",),
                 contract=("sample_rate", "n_mels", "frame_shift_ms", "target_frames"),
                 n_tokens=convnet_audio_tokens)
def _build_audio(spec: ExtractorSpec) -> Extractor:
    return ConvNetExtractor(spec, audio=True)


_SMALL = "random init: `mmkd pretrain` trains it on the run's train split (small datasets)"
# 64 px crop: 8 frames -> a 4×4×4 grid (64 tokens).
register_spec(ExtractorSpec(
    "small_convnet", "convnet", 128,
    {"widths": (16, 32, 64, 128), "strides": ((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2)),
     "k_time": (1, 1, 3, 3)}, _SMALL, crop=64, resize=72))
# 2 s of 64-bin fbank (200 frames of 10 ms) -> 25 time tokens.
register_spec(ExtractorSpec(
    "small_convnet_audio", "convnet_audio", 128,
    {"widths": (16, 32, 64, 128), "strides": ((2, 2), (2, 2), (2, 2), (1, 1))},
    _SMALL, sample_rate=24000, n_mels=64, target_frames=200))
register_spec(ExtractorSpec("test_convnet", "convnet", 16,
                            {"widths": (8, 16), "strides": ((1, 2, 2), (2, 2, 2))},
                            "random init (tests only)", crop=32, resize=36))
register_spec(ExtractorSpec("test_convnet_audio", "convnet_audio", 16,
                            {"widths": (8, 16), "strides": ((2, 2), (2, 2))},
                            "random init (tests only)", n_mels=32, target_frames=48))
