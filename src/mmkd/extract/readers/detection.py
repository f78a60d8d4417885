"""Something-Else boxes -> the layout inputs of the official STLT (Radevski et al. 2021).

Format (joaanna/something_else annotations): `{video_id: [{"name": "<video_id>/0001.jpg",
"labels": [{"box2d": {"x1", "y1", "x2", "y2"}, "category": "hand" | "cup" | ...,
"score": 0.9 (optional, detections)}, ...]}, ...]}` in pixels. Each sampled moment t takes the
annotated frame nearest to t × box_fps + 1 (box_fps from the manifest's detection media, else the
clip's fps); the clip policy picks the frames (the official loader takes 16 evenly spaced
annotated frames), everything after follows the official `StltDataset` and `StltCollater`:

- every frame starts with a [CLS] box (0, 0, 1, 1) of category `cls`, score 1; then its boxes of
  score >= 0.5, each cleaned as the official `fix_box` does (integer pixels, corners ordered,
  inside the frame, at least 1 px wide) and divided by (width, height, width, height); padding
  slots are category 0 with a zero box and score 0;
- the frame type is `empty` when the frame has no box at all, else `regular`;
- an "extract" frame (only the [CLS] box) is appended: its output is the official video summary.

Categories come from the vocabulary of the checkpoint's training set (`VOCABULARIES`):
Something-Else has hand / object (a label is a hand when its category text contains "hand", as
the official Something-Else conversion decides), Action Genome its 36 object classes + person.
Scores count only with the Action Genome vocabulary: the official Something-Else conversion
gives every box score 1 and its collater does not pass scores to the model. A frame with more
than `max_objects` boxes keeps the highest scores first, then the lower category ids
(Something-Else: hands before objects); the official loader never cuts (it pads to the data
set's maximum).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkd.datasets.box_store import read_boxes
from mmkd.datasets.manifest import Sample
from mmkd.errors import MmkdError
from mmkd.extract.sampling import Clip, ClipSampler, MediaError, has_segment

PAD = 0
SCORE_THRESHOLD = 0.5  # the official default (--score_threshold)
CLS_BOX = (0.0, 0.0, 1.0, 1.0)
_ACTION_GENOME_OBJECTS = (
    "chair", "book", "medicine", "vacuum", "food", "groceries", "floor", "mirror",
    "closet/cabinet", "doorway", "paper/notebook", "picture", "phone/camera", "sofa/couch",
    "sandwich", "cup/glass/bottle", "towel", "box", "blanket", "television", "bag",
    "refrigerator", "table", "light", "broom", "shoe", "doorknob", "bed", "window", "shelf",
    "door", "pillow", "laptop", "dish", "clothes", "person")


@dataclass(frozen=True)
class LayoutVocab:
    """Category and frame-type ids of one family of official STLT checkpoints."""

    name: str
    categories: tuple[str, ...]  # index = id; 0 is padding
    frame_types: dict[str, int]
    uses_scores: bool

    def category_id(self, text: str) -> int | None:
        """The id of a box label's category text (None: not in this vocabulary)."""
        if self.name == "something_else":
            return self.categories.index("hand" if "hand" in text else "object")
        return self.categories.index(text) if text in self.categories else None

    @property
    def cls(self) -> int:
        return self.categories.index("cls")


VOCABULARIES = {
    "something_else": LayoutVocab(
        "something_else", ("pad", "hand", "object", "cls"),
        {"pad": 0, "start": 1, "regular": 2, "empty": 3, "extract": 4}, uses_scores=False),
    "action_genome": LayoutVocab(
        "action_genome", ("pad", "cls", *_ACTION_GENOME_OBJECTS),
        {"pad": 0, "regular": 1, "extract": 2, "empty": 3}, uses_scores=True),
}


def _load(path: Path, key: str) -> tuple[np.ndarray, list[list[tuple]]]:
    """(sorted annotated frame numbers, per frame [(x1, y1, x2, y2, category text, score)])."""
    try:
        frames = read_boxes(path, key)
    except MmkdError as exc:
        raise MediaError(str(exc)) from None
    boxes = [[(b.x1, b.y1, b.x2, b.y2, b.text, b.score) for b in fr.boxes] for fr in frames]
    return np.array([fr.frame for fr in frames], np.int64), boxes


def fix_box(box: tuple[float, ...], width: int, height: int) -> list[int]:
    """The official clean-up of one pixel box: integer, ordered corners inside the frame."""
    x1, y1, x2, y2 = (max(0, int(v)) for v in box)
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    x1, x2 = min(x1, width - 1), min(x2, width - 1)
    y1, y2 = min(y1, height - 1), min(y2, height - 1)
    if x1 == x2 == 0:
        x2 = 1
    if y1 == y2 == 0:
        y2 = 1
    if x1 == x2:
        x1 -= 1
    if y1 == y2:
        y1 -= 1
    return [x1, y1, x2, y2]


def pack_layout(frames: list[list[tuple[int, tuple[float, float, float, float], float]]],
                empty: list[bool], vocab: LayoutVocab, max_objects: int) -> dict[str, np.ndarray]:
    """Per frame [(category id, normalised box, score)] -> the STLT inputs of one clip of T frames:
    boxes (T+1, O+1, 4) float32, categories (T+1, O+1) int64, frame_types (T+1,) int64 and, with
    a scored vocabulary, scores (T+1, O+1) float32; slot 0 is the [CLS] box, frame T the extract
    frame."""
    T, slots = len(frames), max_objects + 1
    boxes = np.zeros((T + 1, slots, 4), np.float32)
    cats = np.full((T + 1, slots), PAD, np.int64)
    scores = np.zeros((T + 1, slots), np.float32)
    boxes[:, 0], cats[:, 0], scores[:, 0] = CLS_BOX, vocab.cls, 1.0
    for t, objects in enumerate(frames):
        for o, (cid, box, score) in enumerate(objects[:max_objects], start=1):
            boxes[t, o], cats[t, o], scores[t, o] = box, cid, score
    types = [vocab.frame_types["empty" if e else "regular"] for e in empty]
    out = {"boxes": boxes, "categories": cats,
           "frame_types": np.array([*types, vocab.frame_types["extract"]], np.int64)}
    if vocab.uses_scores:
        out["scores"] = scores
    return out


def random_layout(rng: np.random.Generator, frames: int, vocab: LayoutVocab, max_objects: int
                  ) -> dict[str, np.ndarray]:
    """A clip with every slot filled by a random box of a random object category (for shape,
    speed and memory checks)."""
    ids = [i for i in range(1, len(vocab.categories)) if i != vocab.cls]
    objects = [[(int(rng.choice(ids)), np.sort(rng.random(4).reshape(2, 2), 0).T.ravel(),
                 float(rng.uniform(SCORE_THRESHOLD, 1))) for _ in range(max_objects)]
               for _ in range(frames)]
    return pack_layout(objects, [False] * frames, vocab, max_objects)


def read_layout(path: Path, media: dict[str, Any], sample: Sample, sampler: ClipSampler,
                max_objects: int, vocab: LayoutVocab) -> tuple[Clip, dict[str, np.ndarray]]:
    """(clip, the STLT inputs of `pack_layout` for the clip's T sampled frames)."""
    if not path.is_file():
        raise MediaError(f"{path}: boxes file not found")
    key = str(media.get("key", sample.video_id))
    numbers, frames = _load(path, key)
    if len(numbers) == 0:
        raise MediaError(f"{path}: no boxes for video {key!r}")
    w, h = int(media.get("width") or 0), int(media.get("height") or 0)
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
    scale = np.array([w, h, w, h], np.float32)
    packed = []
    for p in pos.tolist():
        objects = []
        for x1, y1, x2, y2, text, file_score in frames[p]:
            score = file_score if vocab.uses_scores else 1.0
            if score < SCORE_THRESHOLD:
                continue
            cid = vocab.category_id(text)
            if cid is None:
                raise MediaError(f"{path}: video {key!r}, frame {numbers[p]}: category {text!r} "
                                 f"is not in the {vocab.name} vocabulary of this extractor; "
                                 "use an extractor trained on these categories")
            box = np.array(fix_box((x1, y1, x2, y2), w, h), np.float32) / scale
            objects.append((cid, box, score))
        objects.sort(key=lambda r: (-r[2], r[0]))
        packed.append(objects)
    layout = pack_layout(packed, [len(frames[p]) == 0 for p in pos.tolist()], vocab, max_objects)
    return clip, layout
