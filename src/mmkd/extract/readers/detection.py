"""Something-Else boxes -> per-frame box sets for STLT.

Format (joaanna/something_else annotations): `{video_id: [{"name": "<video_id>/0001.jpg",
"labels": [{"box2d": {"x1", "y1", "x2", "y2"}, "standard_category": "hand" | "0000", ...}]},
...]}` in pixels. Each sampled moment t takes the annotated frame nearest to t × box_fps + 1
(box_fps from the manifest's detection media, else the clip's fps); boxes are normalised by the
frame size to [0, 1] as (x1, y1, x2, y2), categories are 0 pad / 1 hand / 2 object, and each
frame is padded (or cut) to `max_objects`, hands first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkd.datasets.boxes import read_boxes
from mmkd.datasets.manifest import Sample
from mmkd.errors import MmkdError
from mmkd.extract.sampling import Clip, ClipSampler, MediaError, has_segment

PAD, HAND, OBJECT = 0, 1, 2


def _load(path: Path, key: str) -> tuple[np.ndarray, list[list[tuple]]]:
    """(sorted annotated frame numbers, per frame [(x1, y1, x2, y2, category)]) of one video."""
    try:
        frames = read_boxes(path, key)
    except MmkdError as exc:
        raise MediaError(str(exc)) from None
    numbered = [sorted(((b.x1, b.y1, b.x2, b.y2, HAND if b.category == "hand" else OBJECT)
                        for b in fr.boxes), key=lambda r: r[4])  # hands first: a cut keeps them
                for fr in frames]
    return np.array([fr.frame for fr in frames], np.int64), numbered


def read_layout(path: Path, media: dict[str, Any], sample: Sample, sampler: ClipSampler,
                max_objects: int) -> tuple[Clip, np.ndarray, np.ndarray]:
    """(clip, boxes (T, O, 4) float32 in [0, 1], categories (T, O) int64)."""
    if not path.is_file():
        raise MediaError(f"{path}: boxes file not found")
    key = str(media.get("key", sample.video_id))
    numbers, frames = _load(path, key)
    if len(numbers) == 0:
        raise MediaError(f"{path}: no boxes for video {key!r}")
    w, h = float(media.get("width") or 0), float(media.get("height") or 0)
    if w <= 0 or h <= 0:
        raise MediaError(f"sample {sample.sample_id}: detection media has no frame width/height")
    box_fps = float(media.get("fps") or sample.fps or 0) or None
    n = None if has_segment(sample) else int(numbers.max())
    clip = sampler.clip(sample, fps=box_fps, n_frames=n)
    want = np.floor(clip.times_s * (box_fps or clip.fps)).astype(np.int64) + 1
    pos = np.clip(np.searchsorted(numbers, want), 1, len(numbers) - 1) if len(numbers) > 1 \
        else np.zeros_like(want)
    if len(numbers) > 1:
        left_closer = np.abs(numbers[pos - 1] - want) <= np.abs(numbers[pos] - want)
        pos = np.where(left_closer, pos - 1, pos)
    boxes = np.zeros((len(want), max_objects, 4), np.float32)
    cats = np.full((len(want), max_objects), PAD, np.int64)
    scale = np.array([w, h, w, h], np.float32)
    for t, p in enumerate(pos.tolist()):
        for o, (x1, y1, x2, y2, cat) in enumerate(frames[p][:max_objects]):
            boxes[t, o] = np.clip(np.array([x1, y1, x2, y2], np.float32) / scale, 0.0, 1.0)
            cats[t, o] = cat
    return clip, boxes, cats
