"""Write the demo plan as the official EPIC-KITCHENS-100 annotation files, byte for byte in style.

Same columns, same value formats (`HH:MM:SS.ss`, narration time with 3 decimals, stringified
Python lists), same row order (the official files sort by `narration_id` as a string, so
`P01_11_10` precedes `P01_11_2`), `\\n` line endings.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mmkd.demo.plan import Plan, Segment, VideoPlan
from mmkd.demo.spec import HEIGHT, NOUNS, VERBS, WIDTH

ANNOTATION_COLUMNS = (
    "narration_id",
    "participant_id",
    "video_id",
    "narration_timestamp",
    "start_timestamp",
    "stop_timestamp",
    "start_frame",
    "stop_frame",
    "narration",
    "verb",
    "verb_class",
    "noun",
    "noun_class",
    "all_nouns",
    "all_noun_classes",
)
SPLIT_FILES = {"train": "EPIC_100_train.csv", "validation": "EPIC_100_validation.csv"}


def timestamp_cs(cs: int) -> str:
    """Centiseconds -> `HH:MM:SS.ss`."""
    s, frac = divmod(cs, 100)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:02d}"


def timestamp_ms(ms: int) -> str:
    """Milliseconds -> `HH:MM:SS.sss` (EPIC's narration_timestamp)."""
    s, frac = divmod(ms, 1000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:03d}"


def annotation_row(video: VideoPlan, seg: Segment) -> list[str]:
    start, stop = seg.frames(video.fps)
    nouns = seg.all_nouns
    return [
        f"{video.video_id}_{seg.index}",
        video.participant,
        video.video_id,
        timestamp_ms(seg.narration_ms),
        timestamp_cs(seg.start_cs),
        timestamp_cs(seg.stop_cs),
        str(start),
        str(stop),
        seg.narration,
        seg.verb_form,
        str(seg.verb),
        NOUNS[seg.noun].key,
        str(seg.noun),
        str([NOUNS[n].key for n in nouns]),
        str(nouns),
    ]


def write_annotations(plan: Plan, out: Path) -> list[Path]:
    """All six EPIC annotation files into `out` (created); returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split, name in SPLIT_FILES.items():
        rows = [
            annotation_row(v, s) for v in plan.videos if v.layout.split == split for s in v.segments
        ]
        rows.sort(key=lambda r: r[0])
        written.append(_write(out / name, ANNOTATION_COLUMNS, rows))
    written.append(
        _write(
            out / "EPIC_100_verb_classes.csv",
            ("id", "key", "instances", "category"),
            [[str(i), v.key, str(list(v.instances)), v.category] for i, v in enumerate(VERBS)],
        )
    )
    written.append(
        _write(
            out / "EPIC_100_noun_classes.csv",
            ("id", "key", "instances", "category"),
            [[str(i), n.key, str(list(n.instances)), n.category] for i, n in enumerate(NOUNS)],
        )
    )
    written.append(
        _write(
            out / "EPIC_100_video_info.csv",
            ("video_id", "duration", "fps", "resolution"),
            [
                [v.video_id, repr(v.n_frames / v.fps), repr(float(v.fps)), f"{WIDTH}x{HEIGHT}"]
                for v in plan.videos
            ],
        )
    )
    written.append(
        _write(
            out / "EPIC_100_unseen_participant_ids_validation.csv",
            ("participant_id",),
            [[p] for p in plan.unseen],
        )
    )
    return written


def _write(path: Path, header: tuple[str, ...], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path
