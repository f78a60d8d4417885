"""A tiny EPIC-KITCHENS-100 annotation folder in the official CSV layout, for manifest tests."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ["narration_id", "participant_id", "video_id", "narration_timestamp",
           "start_timestamp", "stop_timestamp", "start_frame", "stop_frame", "narration", "verb",
           "verb_class", "noun", "noun_class", "all_nouns", "all_noun_classes"]
NOUNS = ["tap", "pan", "lid", "fork", "oven"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def row(vid: str, i: int, noun: int) -> list:
    start = 3 * i
    return [f"{vid}_{i}", vid[:3], vid, f"00:00:{start:02d}.100", f"00:00:{start:02d}.00",
            f"00:00:{start + 2:02d}.50", max(1, start * 60), (start + 2) * 60 + 30,
            f"open {NOUNS[noun]}", "open", 0, NOUNS[noun], noun, f"['{NOUNS[noun]}']", f"[{noun}]"]


def epic_annotations(folder: Path) -> Path:
    """Train uses nouns 0..2; validation adds oven (4, twice) and fork (3, once): pruned."""
    folder.mkdir()
    write_csv(folder / "EPIC_100_train.csv", COLUMNS, [row("P01_01", i, i % 3) for i in range(20)])
    write_csv(folder / "EPIC_100_validation.csv", COLUMNS,
           [row("P03_01", i, n) for i, n in enumerate([0, 4, 1, 4, 3, 2])])
    write_csv(folder / "EPIC_100_verb_classes.csv", ["id", "key", "instances", "category"],
           [[0, "open", "['open']", "access"], [1, "close", "['close']", "block"]])
    write_csv(folder / "EPIC_100_noun_classes.csv", ["id", "key", "instances", "category"],
           [[i, n, f"['{n}']", "misc"] for i, n in enumerate(NOUNS)])
    write_csv(folder / "EPIC_100_video_info.csv", ["video_id", "duration", "fps", "resolution"],
           [["P01_01", 90.0, 59.94, "456x256"], ["P03_01", 30.0, 59.94, "456x256"]])
    write_csv(folder / "EPIC_100_unseen_participant_ids_validation.csv", ["participant_id"], [["P03"]])
    return folder
