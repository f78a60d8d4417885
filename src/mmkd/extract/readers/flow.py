"""EPIC optical flow: u/v JPEG folders, dequantized to pixels, as 3-channel (u, v, 0) frames.

Flow frame j is computed between RGB frames (j-1)·stride+1 and j·stride+1, so the clip's RGB
indices map to flow indices with `Clip.flow_idx(stride)`. Grey levels go back to pixels with
`mmkd.datasets.flow_format.dequantize` (the one EPIC ±20 px mapping of mmkd) and are divided by the
20 px bound, so the network sees u and v in [-1, 1] (the same as mmaction2's flow
normalisation mean = std = 128 on grey levels) and a zero third channel.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmkd.datasets.flow_format import BOUND, dequantize
from mmkd.datasets.manifest import Sample
from mmkd.extract.readers.image import resize_crop
from mmkd.extract.readers.video import _read_jpegs
from mmkd.extract.sampling import Clip, ClipSampler, MediaError, has_segment


def read_flow_folder(folder: Path, template: str, stride: int, sample: Sample,
                     sampler: ClipSampler, resize: int, crop: int) -> tuple[Clip, np.ndarray]:
    """(clip, flow (T, crop, crop, 3) float32 in [-1, 1] as (u, v, 0))."""
    if not (folder / "u").is_dir() or not (folder / "v").is_dir():
        raise MediaError(f"{folder}: flow folder (with u/ and v/) not found")
    n_rgb = None if has_segment(sample) else sum(1 for _ in (folder / "u").iterdir()) * stride + 1
    clip = sampler.clip(sample, n_frames=n_rgb)
    idx = clip.flow_idx(stride)
    u = _read_jpegs(folder / "u", template, idx, cv2.IMREAD_GRAYSCALE, rgb=False)
    v = _read_jpegs(folder / "v", template, idx, cv2.IMREAD_GRAYSCALE, rgb=False)
    if u[0].shape != v[0].shape:
        raise MediaError(f"{folder}: u and v frames differ in size")
    out = np.zeros((len(idx), crop, crop, 3), np.float32)
    for t, (fu, fv) in enumerate(zip(u, v, strict=True)):
        uv = resize_crop(np.stack([fu, fv], axis=-1), resize, crop)
        out[t, :, :, :2] = dequantize(uv) / BOUND
    return clip, out
