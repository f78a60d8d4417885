"""Something-Else box files: the one place that parses them, for builders and detection readers.

Format (joaanna/something_else `annotations.json`): `{video_id: [{"name": "2/0001.jpg",
"labels": [{"box2d": {"x1", "y1", "x2", "y2"}, "standard_category": "0000" | "hand", ...}],
...}, ...]}`, pixel coordinates. The frame number is the integer in the file name (`0001.jpg` at
12 fps for SSv2; `frame_0000000042.jpg` = RGB frame 42 for EPIC-format files such as the demo's).
Categories are mapped to two classes, hand and object, plus the object's placeholder index, which
is what STLT consumes. Full-size files are converted once into a box store (`box_store.py`) that
`box_store.read_boxes` reads one video at a time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mmkd.errors import MmkdError
from mmkd.files import read_text

HAND, OBJECT = "hand", "object"
_DIGITS = re.compile(r"(\d+)\D*$")


@dataclass(frozen=True)
class Box:
    x1: float
    y1: float
    x2: float
    y2: float
    category: str  # "hand" or "object"
    object_index: int  # placeholder index of an object (0000 → 0); -1 for hands
    text: str = ""  # the label's own category text (STLT's vocabularies read it)
    score: float = 1.0  # detector confidence where the file has one


@dataclass(frozen=True)
class BoxFrame:
    frame: int  # the number in the frame name
    name: str
    boxes: tuple[Box, ...]


@lru_cache(maxsize=4)
def load_box_file(path: str) -> dict[str, tuple[BoxFrame, ...]]:
    """All videos of one file, frames sorted by number (cached: files are large, read once)."""
    p = Path(path)
    if not p.is_file():
        raise MmkdError(f"{p}: box file not found; pass the Something-Else annotations file "
                        "(--boxes) or drop the detection modality")
    try:
        data = json.loads(read_text(p))
    except json.JSONDecodeError as exc:
        raise MmkdError(f"{p}:{exc.lineno}: not valid JSON ({exc.msg}); fix or re-download "
                        "the box file") from None
    if not isinstance(data, dict):
        raise MmkdError(f"{p}: expected a JSON object {{video_id: [frames]}} (Something-Else "
                        "format); got a JSON " + type(data).__name__)
    return {str(key): parse_video(p, str(key), frames) for key, frames in data.items()}


def frame_stride(frames: tuple[BoxFrame, ...]) -> int:
    """The most common gap between annotated frame numbers (1 when fewer than two frames)."""
    gaps = [b.frame - a.frame for a, b in zip(frames, frames[1:], strict=False) if b.frame > a.frame]
    return max(set(gaps), key=gaps.count) if gaps else 1


def parse_video(path: Path, key: str, frames: object) -> tuple[BoxFrame, ...]:
    """One video's frames (as in the file) -> BoxFrames sorted by number; refuses bad fields."""
    where = f"{path}: video {key!r}"
    if not isinstance(frames, list):
        raise MmkdError(f"{where}: expected a list of frames (the Something-Else layout is "
                        "{video_id: list of frames}); pass the Something-Else box files")
    out = []
    for i, fr in enumerate(frames):
        name = fr.get("name") if isinstance(fr, dict) else None
        m = _DIGITS.search(name) if isinstance(name, str) else None
        if m is None:
            raise MmkdError(f"{where}, frame {i}: field 'name' {name!r} has no frame number; "
                            "names look like '2/0001.jpg'")
        boxes = []
        for j, lab in enumerate(fr.get("labels") or []):
            try:
                b = lab["box2d"]
                x1, y1, x2, y2 = (float(b[k]) for k in ("x1", "y1", "x2", "y2"))
                std = str(lab.get("standard_category", lab.get("category", "")))
                text = str(lab.get("category", std))
                score = float(lab.get("score", 1.0))
            except (KeyError, TypeError, ValueError):
                raise MmkdError(f"{where}, frame {name}, label {j}: field 'box2d' needs numbers "
                                "x1, y1, x2, y2; fix the box file") from None
            if std == HAND:
                boxes.append(Box(x1, y1, x2, y2, HAND, -1, text, score))
            else:
                idx = int(std) if std.isdigit() else 0
                boxes.append(Box(x1, y1, x2, y2, OBJECT, idx, text, score))
        out.append(BoxFrame(int(m.group(1)), name, tuple(boxes)))
    out.sort(key=lambda f: f.frame)
    return tuple(out)
