"""Per-variant config records (weights source + input contract) and the extractor factory.

Each registered name in `mmkd.registry.extractors` maps to an `ExtractorSpec`, a frozen record
of the architecture, where its weights come from, and exactly what input it expects (crop,
mean/std, sample rate, mel parameters, ...). `create_extractor` builds the module and loads local
weights; it never falls back to a random init unless asked (`random_init=True`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmkd import registry
from mmkd.errors import MmkdError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Which input each family reads; the modality decides the reader for "frames" (RGB or flow).
INPUT_KINDS = {"swin3d": "frames", "swin3d_audio": "mel_windows", "ast": "fbank", "stlt": "layout",
               "convnet": "frames", "convnet_audio": "fbank"}
FAMILY_MODALITIES = {"swin3d": ("video", "flow"), "swin3d_audio": ("audio",), "ast": ("audio",),
                     "stlt": ("detection",), "convnet": ("video", "flow"),
                     "convnet_audio": ("audio",)}


@dataclass(frozen=True)
class ExtractorSpec:
    """Architecture, weights source and input contract of one extractor variant."""

    name: str
    family: str  # swin3d | swin3d_audio | ast | stlt | convnet | convnet_audio
    dim: int  # token width D
    arch: dict[str, Any] = field(default_factory=dict)  # family-specific builder arguments
    weights_source: str = ""  # where the pretrained weights come from (for --weights)
    # input contract (fields a family does not use keep their defaults)
    crop: int = 224
    resize: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    sample_rate: int = 16000
    n_mels: int = 128
    frame_shift_ms: float = 10.0
    target_frames: int = 1024  # AST: fbank frames per clip
    window_s: float = 1.0  # audio Swin: log-mel window around each sampled frame
    max_objects: int = 8  # STLT: boxes per frame, besides the frame's [CLS] box
    vocabulary: str = "something_else"  # STLT: category / frame-type ids (readers.detection)

    @property
    def input_kind(self) -> str:
        return INPUT_KINDS[self.family]

    @property
    def modalities(self) -> tuple[str, ...]:
        return FAMILY_MODALITIES[self.family]

    def contract(self) -> dict[str, Any]:
        """The preprocessing fields this family uses (flat, JSON-able) for cache provenance."""
        keep = {"swin3d": ("crop", "resize", "mean", "std"),
                "swin3d_audio": ("crop", "sample_rate", "n_mels", "frame_shift_ms", "window_s"),
                "ast": ("sample_rate", "n_mels", "frame_shift_ms", "target_frames"),
                "stlt": ("max_objects", "vocabulary"),
                "convnet": ("crop", "resize", "mean", "std"),
                "convnet_audio": ("sample_rate", "n_mels", "frame_shift_ms", "target_frames"),
                }[self.family]
        d = dataclasses.asdict(self)
        return {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in keep}

    def n_tokens(self, num_frames: int) -> int:
        """k, the number of tokens one clip of `num_frames` frames yields."""
        a = self.arch
        if self.family in ("swin3d", "swin3d_audio"):
            pt, ph, pw = a["patch_size"]
            t, h = math.ceil(num_frames / pt), math.ceil(self.crop / ph)
            w = math.ceil(self.crop / pw)
            for _ in range(len(a["depths"]) - 1):
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            return t * h * w
        if self.family == "ast":
            p, s = a["patch_size"], a["patch_stride"]
            return ((self.n_mels - p) // s + 1) * ((self.target_frames - p) // s + 1) + 2
        if self.family == "convnet":  # each stride s: n -> ceil(n / s) (kernel 3, padding 1)
            t, h = num_frames, self.crop
            for st, sh, _ in a["strides"]:
                t, h = math.ceil(t / st), math.ceil(h / sh)
            return t * h * h
        if self.family == "convnet_audio":  # one token per remaining time step
            t = self.target_frames
            for _, st in a["strides"]:
                t = math.ceil(t / st)
            return t
        return num_frames


class Extractor(nn.Module):
    """A frozen feature extractor: `forward(inputs) -> tokens_BKD`."""

    spec: ExtractorSpec

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def convert_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a foreign checkpoint's keys to this module's layout (identity by default)."""
        return sd


_BUILDERS: dict[str, Any] = {}


def register_family(family: str):
    """Decorator: the builder `(spec) -> Extractor` of one family."""

    def deco(fn):
        _BUILDERS[family] = fn
        return fn

    return deco


def register_spec(spec: ExtractorSpec) -> ExtractorSpec:
    registry.extractors.register(spec.name)(spec)
    return spec


def get_spec(name: str) -> ExtractorSpec:
    import mmkd.extract.extractors  # noqa: F401  (registers every variant)

    return registry.extractors.get(name)


def create_extractor(name: str, weights: str | Path | None = None, random_init: bool = False,
                     **overrides: Any) -> Extractor:
    """Build extractor `name` (fields of its spec may be overridden, e.g. target_frames=512) and
    load `weights` (a local file); `random_init=True` is the only way to get random weights."""
    from mmkd.extract.extractors.weights import load_weights

    spec = get_spec(name)
    if overrides:
        bad = sorted(set(overrides) - {f.name for f in dataclasses.fields(spec)})
        if bad:
            raise MmkdError(f"extractor {name}: unknown spec fields {', '.join(bad)}")
        spec = dataclasses.replace(spec, **overrides)
    if weights is None and not random_init:
        raise MmkdError(f"extractor {name} needs weights: pass --weights FILE "
                        f"({spec.weights_source or 'a checkpoint of this architecture'}), or "
                        "--random-init to use random weights on purpose")
    if weights is not None and random_init:
        raise MmkdError(f"extractor {name}: --weights and --random-init exclude each other")
    torch.manual_seed(0)  # a requested random init is reproducible
    model = _BUILDERS[spec.family](spec)
    model.spec = spec
    if weights is not None:
        load_weights(model, Path(weights))
    return model.eval().requires_grad_(False)
