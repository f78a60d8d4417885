"""One clip-sampling policy shared by all modalities of a sample.

`ClipSampler` turns a sample's segment into 1-based RGB frame indices at the sample's fps (the
EPIC convention of `Sample.start_frame`); every other modality derives its positions from those
indices, so video, flow, audio and boxes of one sample always look at the same moments:
  - flow:  flow_idx = (rgb_idx - 1) // stride + 1 (EPIC: stride 2 for PXX_YY, 1 for PXX_1YY),
           capped at the last flow frame the segment has ((stop - 1) // stride; flow has one frame
           less than RGB per stride because it is computed between frame pairs);
  - audio: windows centred on each frame's time t = (rgb_idx - 1) / fps;
  - boxes: the annotated frame nearest to t × box_fps + 1.

Policies: `k400` takes `num_frames` frames `stride` apart centred on the segment (Kinetics-400
style); segments shorter than the span repeat their edge frames (indices are clamped to the
segment). `uniform` spreads `num_frames` frames evenly over the segment (centre of each of
`num_frames` equal bins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmkd.datasets.manifest import Sample

POLICIES = ("k400", "uniform")


class MediaError(Exception):
    """A sample's media is missing, unreadable, corrupt or too short: that modality is missing."""


@dataclass(frozen=True)
class Clip:
    """The sampled moments of one sample: 1-based RGB frame indices within [start, stop]."""

    rgb_idx: np.ndarray  # (T,) int64, 1-based
    fps: float
    start: int  # first RGB frame of the segment (1-based)
    stop: int  # last RGB frame of the segment (inclusive)

    @property
    def times_s(self) -> np.ndarray:
        return (self.rgb_idx - 1) / self.fps

    def flow_idx(self, stride: int) -> np.ndarray:
        last = max(1, (self.stop - 1) // stride)
        return np.minimum((self.rgb_idx - 1) // stride + 1, last)


def has_segment(sample: Sample) -> bool:
    """Whether the manifest gives the segment; otherwise the whole media is the action."""
    framed = sample.start_frame is not None and sample.stop_frame is not None
    timed = sample.start_s is not None and sample.stop_s is not None and bool(sample.fps)
    return framed or timed


@dataclass(frozen=True)
class ClipSampler:
    num_frames: int = 32
    stride: int = 2
    policy: str = "k400"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"clip sampling {self.policy!r}: allowed {', '.join(POLICIES)}")

    def indices(self, start: int, stop: int) -> np.ndarray:
        """1-based frame indices for the inclusive segment [start, stop]."""
        if stop < start:
            stop = start
        if self.policy == "k400":
            span = (self.num_frames - 1) * self.stride
            first = math.floor((start + stop) / 2 - span / 2)
            idx = first + np.arange(self.num_frames, dtype=np.int64) * self.stride
        else:
            n = stop - start + 1
            idx = start + np.floor((np.arange(self.num_frames) + 0.5) * n / self.num_frames)
        return np.clip(idx.astype(np.int64), start, stop)

    def clip(self, sample: Sample, fps: float | None = None, n_frames: int | None = None) -> Clip:
        """The clip of `sample`. Without a segment in the manifest (e.g. SSv2: the whole video is
        the action) the reader passes the media's own `fps` and `n_frames`."""
        rate = sample.fps or fps
        if sample.start_frame is not None and sample.stop_frame is not None:
            start, stop = int(sample.start_frame), int(sample.stop_frame)
        elif sample.start_s is not None and sample.stop_s is not None and rate:
            start = math.floor(sample.start_s * rate) + 1
            stop = max(start, math.floor(sample.stop_s * rate))
        elif rate and n_frames:
            start, stop = 1, int(n_frames)
        else:
            raise MediaError(f"sample {sample.sample_id}: no segment (start/stop) and no frame "
                             "rate/count from the media to sample a clip from")
        if not rate:
            raise MediaError(f"sample {sample.sample_id}: no fps in the manifest or the media")
        start = max(1, start)
        return Clip(self.indices(start, max(start, stop)), float(rate), start, max(start, stop))
