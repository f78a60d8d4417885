"""The kinds of extractor input (an extractor family's `input_kind`), one record each: how stage 1
reads it from a sample's media, how fine-tuning augments it, and a seeded random example of it
(cost measurement, tests). A new kind is one record here, not a branch in each caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmkd.errors import MmkdError
from mmkd.extract import augment
from mmkd.extract.readers import audio, detection, flow, video
from mmkd.extract.readers.image import resize_crop, to_tensor

if TYPE_CHECKING:
    from mmkd.datasets.manifest import Sample
    from mmkd.extract.extractors.base import ExtractorSpec
    from mmkd.extract.inputs import InputBuilder

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class InputKind:
    name: str
    # (builder, sample, media key, media entry) -> the extractor's inputs of one clip
    read: Callable[[InputBuilder, Sample, str, dict[str, Any]], Tensors]
    # (inputs, rng, modality, flip allowed) -> augmented inputs (mmkd.extract.augment)
    augment: Callable[[Tensors, np.random.Generator, str, bool], Tensors]
    # (spec, num_frames, batch) -> random inputs of a batch, shaped as the reader's, seeded
    example: Callable[[ExtractorSpec, int, int], Tensors]


def _read_frames(b: InputBuilder, sample: Sample, key: str, media: dict[str, Any]) -> Tensors:
    s = b.spec
    if b.modality == "flow":
        _, uv0 = flow.read_flow_folder(b.path(media["dir"]), media["template"],
                                       int(media.get("stride", 1)), sample, b.sampler,
                                       s.resize, s.crop)
        return {"frames": torch.from_numpy(uv0).permute(3, 0, 1, 2).contiguous()}
    if key == "rgb":
        _, frames = video.read_rgb_folder(b.path(media["dir"]), media["template"], sample,
                                          b.sampler)
    else:
        _, frames = video.read_video_file(b.path(media["path"]), sample, b.sampler)
    frames = np.stack([resize_crop(f, s.resize, s.crop) for f in frames])
    return {"frames": to_tensor(frames, s.mean, s.std)}


def _read_mel_windows(b: InputBuilder, sample: Sample, key: str, media: dict[str, Any]
                      ) -> Tensors:
    s = b.spec
    clip, src = audio.open_clip(b.path(media["path"]), media, sample, b.sampler)
    win = audio.mel_windows(clip, src, s.sample_rate, s.n_mels, s.frame_shift_ms, s.window_s,
                            s.crop)
    return {"frames": win[None].expand(3, -1, -1, -1).contiguous()}


def _read_fbank(b: InputBuilder, sample: Sample, key: str, media: dict[str, Any]) -> Tensors:
    s = b.spec
    clip, src = audio.open_clip(b.path(media["path"]), media, sample, b.sampler)
    return {"fbank": audio.fbank_clip(clip, src, s.sample_rate, s.n_mels, s.frame_shift_ms,
                                      s.target_frames)}


def _read_layout(b: InputBuilder, sample: Sample, key: str, media: dict[str, Any]) -> Tensors:
    s = b.spec
    _, layout = detection.read_layout(b.path(media["path"]), media, sample, b.sampler,
                                      s.max_objects, detection.VOCABULARIES[s.vocabulary])
    return {k: torch.from_numpy(v) for k, v in layout.items()}


def _example_frames(spec: ExtractorSpec, num_frames: int, batch: int) -> Tensors:
    g = torch.Generator("cpu").manual_seed(0)
    return {"frames": torch.randn(batch, 3, num_frames, spec.crop, spec.crop, generator=g,
                                  device="cpu")}


def _example_fbank(spec: ExtractorSpec, num_frames: int, batch: int) -> Tensors:
    g = torch.Generator("cpu").manual_seed(0)
    return {"fbank": torch.randn(batch, spec.target_frames, spec.n_mels, generator=g,
                                 device="cpu")}


def _example_layout(spec: ExtractorSpec, num_frames: int, batch: int) -> Tensors:
    rng = np.random.default_rng(0)
    vocab = detection.VOCABULARIES[spec.vocabulary]
    clips = [detection.random_layout(rng, num_frames, vocab, spec.max_objects)
             for _ in range(batch)]
    return {k: torch.from_numpy(np.stack([c[k] for c in clips])) for k in clips[0]}


INPUT_KINDS = {k.name: k for k in (
    InputKind("frames", _read_frames, augment.augment_frames, _example_frames),
    InputKind("mel_windows", _read_mel_windows, augment.augment_mel_windows, _example_frames),
    InputKind("fbank", _read_fbank, augment.augment_fbank, _example_fbank),
    InputKind("layout", _read_layout, augment.augment_layout, _example_layout),
)}


def get_input_kind(name: str) -> InputKind:
    if name not in INPUT_KINDS:
        raise MmkdError(f"unknown input kind {name!r}. Known: {', '.join(INPUT_KINDS)}.")
    return INPUT_KINDS[name]


def example_inputs(spec: ExtractorSpec, num_frames: int, batch: int) -> Tensors:
    """Random inputs (seeded) matching an extractor's input contract, as its reader shapes them."""
    return get_input_kind(spec.input_kind).example(spec, num_frames, batch)
