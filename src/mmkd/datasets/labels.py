"""Class lists and the label-text check every builder applies the same way.

Official annotations carry a class id *and* the annotated text (EPIC's `verb`/`verb_class`); the
id is the label. A text that is not among its class's words is an annotation slip (EPIC-100's
validation file has one: `P21_02_54`, verb `bring-into` under class 89 `carry`), so it is
recorded, listed in the build summary and in `meta.json`, and never stops the build. An unknown
class id still does: it has no label to keep.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class ClassList:
    """One head's classes: names by id and the words each class covers (its name included)."""

    head: str
    names: list[str]
    instances: list[set[str]]


@dataclass
class LabelTextMismatch:
    """A sample whose label text is not one of its class's words; its class id stays its label."""

    where: str  # file:line of the row
    sample_id: str
    head: str
    text: str
    class_id: int
    class_name: str


def check_text(found: list[LabelTextMismatch], classes: ClassList, cid: int, text: str,
               where: str, sample_id: str) -> None:
    """Record a text that disagrees with class `cid` in `found`; an empty text is not checked."""
    if text and text not in classes.instances[cid]:
        found.append(LabelTextMismatch(where, sample_id, classes.head, text, cid,
                                       classes.names[cid]))


def mismatch_notes(found: list[LabelTextMismatch]) -> dict[str, Any]:
    """The `meta.json` record: how many and every one of them."""
    return {"count": len(found), "rows": [dataclasses.asdict(m) for m in found]}
