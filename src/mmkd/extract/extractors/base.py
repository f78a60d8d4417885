"""Per-variant config records (weights source + input contract) and the extractor factory.

Each registered name in `mmkd.registry.extractors` maps to an `ExtractorSpec`, a frozen record
of the architecture, where its weights come from, and exactly what input it expects (crop,
mean/std, sample rate, mel parameters, ...). `create_extractor` builds the module and loads local
weights; it never falls back to a random init unless asked (`random_init=True`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmkd import registry
from mmkd.errors import MmkdError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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
    def family_record(self) -> ExtractorFamily:
        return get_family(self.family)

    @property
    def input_kind(self) -> str:
        return self.family_record.input_kind

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.family_record.modalities

    def contract(self) -> dict[str, Any]:
        """The preprocessing fields this family uses (flat, JSON-able) for cache provenance."""
        d = dataclasses.asdict(self)
        return {k: list(d[k]) if isinstance(d[k], tuple) else d[k]
                for k in self.family_record.contract}

    def n_tokens(self, num_frames: int) -> int:
        """k, the number of tokens one clip of `num_frames` frames yields."""
        return self.family_record.n_tokens(self, num_frames)


class Extractor(nn.Module):
    """A frozen feature extractor: `forward(inputs) -> tokens_BKD`."""

    spec: ExtractorSpec

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def convert_state_dict(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Rename a foreign checkpoint's keys to this module's layout (identity by default)."""
        return sd


@dataclass(frozen=True)
class ExtractorFamily:
    """What every variant of one architecture shares, kept next to its builder (timm's pattern):
    callers ask the family instead of keeping tables keyed by family name."""

    name: str
    build: Callable[[ExtractorSpec], Extractor]
    input_kind: str  # frames | mel_windows | fbank | layout (a key of extract.input_kinds)
    modalities: tuple[str, ...]  # the modalities it reads ("frames" serves RGB and flow)
    contract: tuple[str, ...]  # the ExtractorSpec fields of its input contract (provenance)
    n_tokens: Callable[[ExtractorSpec, int], int]  # (spec, num_frames) -> k tokens per clip
    grad_checkpointing: bool = False  # has transformer blocks to recompute in backward
    no_weight_decay: tuple[str, ...] = ()  # suffixes of parameter names trained without decay


_FAMILIES: dict[str, ExtractorFamily] = {}


def register_family(family: str, *, input_kind: str, modalities: tuple[str, ...],
                    contract: tuple[str, ...], n_tokens: Callable[[ExtractorSpec, int], int],
                    grad_checkpointing: bool = False, no_weight_decay: tuple[str, ...] = ()):
    """Decorator: the builder `(spec) -> Extractor` of one family, with the family's facts."""

    def deco(fn):
        if family in _FAMILIES:
            raise KeyError(f"extractor family {family!r} is registered twice")
        _FAMILIES[family] = ExtractorFamily(family, fn, input_kind, tuple(modalities),
                                            tuple(contract), n_tokens, grad_checkpointing,
                                            tuple(no_weight_decay))
        return fn

    return deco


def get_family(family: str) -> ExtractorFamily:
    import mmkd.extract.extractors  # noqa: F401  (registers every family)

    if family not in _FAMILIES:
        raise MmkdError(f"unknown extractor family {family!r}. Known: {', '.join(sorted(_FAMILIES))}.")
    return _FAMILIES[family]


def tokens_per_frame(spec: ExtractorSpec, num_frames: int) -> int:
    """One token per frame (layout families)."""
    return num_frames


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
    model = get_family(spec.family).build(spec)
    model.spec = spec
    if weights is not None:
        load_weights(model, Path(weights))
    return model.eval().requires_grad_(False)
