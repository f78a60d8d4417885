"""Tiny EPIC-KITCHENS-100 annotation folders in the official CSV layout.

`write_epic` is the fixture the EPIC tests build (its rows can be replaced to inject errors;
`tests/unit/datasets/test_epic100_fixture_format.py` checks it against the real excerpts);
`pruning_epic` has validation-only nouns for the CLI's pruning report.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mmkd.datasets import epic100

HEADER = epic100.SEGMENT_COLUMNS
VERBS = [("take", ["take", "pick-up"]), ("put", ["put", "put-down"]), ("wash", ["wash", "rinse"])]
NOUNS = [("plate", ["plate", "dish"]), ("cup", ["cup", "mug"]), ("knife", ["knife"]),
         ("jar", ["jar"])]
VIDEOS = [("P01_01", 59.9400599400599), ("P01_101", 50.0), ("P02_01", 59.9400599400599),
          ("P18_01", 59.9400599400599)]


def timestamp(seconds: float, decimals: int = 2) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:0{3 + decimals}.{decimals}f}"


def segment(vid: str, idx: int, verb: int, noun: int, start: float, fps: int) -> list[str]:
    stop = start + 1.5
    verb_word, noun_word = VERBS[verb][1][idx % 2], NOUNS[noun][1][0]
    return [f"{vid}_{idx}", vid.split("_")[0], vid, timestamp(start + 0.2, 3), timestamp(start),
            timestamp(stop), str(max(1, int(start * fps))), str(int(stop * fps)),
            f"{verb_word} {noun_word}", verb_word, str(verb), noun_word, str(noun),
            f"['{noun_word}']", f"[{noun}]"]


def train_rows() -> list[list[str]]:
    """20 segments per training video, nouns 0..2 only (noun 3, jar, is validation-only)."""
    rows = []
    for vid, fps in (("P01_01", 60), ("P01_101", 50)):
        rows += [segment(vid, i, i % 3, i % 3, 2.0 * i, fps) for i in range(20)]
    return rows


def validation_rows() -> list[list[str]]:
    """P02 (seen) and P18 (unseen); two jar segments that pruning must drop."""
    return [segment("P02_01", i, i % 3, i % 3, 2.0 * i, 60) for i in range(4)] + [
        segment("P18_01", 0, 0, 3, 0.0, 60), segment("P18_01", 1, 1, 0, 2.0, 60),
        segment("P18_01", 2, 1, 3, 4.0, 60)]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def write_epic(folder: Path, train: list[list[str]] | None = None,
               validation: list[list[str]] | None = None) -> Path:
    """The six official annotation files, tiny; rows can be replaced to inject errors."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / epic100.TRAIN_CSV, HEADER, train_rows() if train is None else train)
    write_csv(folder / epic100.VALIDATION_CSV, HEADER,
              validation_rows() if validation is None else validation)
    for name, classes in ((epic100.VERB_CSV, VERBS), (epic100.NOUN_CSV, NOUNS)):
        write_csv(folder / name, ["id", "key", "instances", "category"],
                  [[str(i), k, str(inst), "misc"] for i, (k, inst) in enumerate(classes)])
    write_csv(folder / epic100.VIDEO_INFO_CSV, ["video_id", "duration", "fps", "resolution"],
              [[v, "120.0", str(fps), "456x256"] for v, fps in VIDEOS])
    write_csv(folder / epic100.UNSEEN_CSV, ["participant_id"], [["P18"]])
    return folder


CLI_NOUNS = ["tap", "pan", "lid", "fork", "oven"]


def cli_row(vid: str, i: int, noun: int) -> list:
    start = 3 * i
    return [f"{vid}_{i}", vid[:3], vid, f"00:00:{start:02d}.100", f"00:00:{start:02d}.00",
            f"00:00:{start + 2:02d}.50", max(1, start * 60), (start + 2) * 60 + 30,
            f"open {CLI_NOUNS[noun]}", "open", 0, CLI_NOUNS[noun], noun, f"['{CLI_NOUNS[noun]}']", f"[{noun}]"]


def pruning_epic(folder: Path) -> Path:
    """Train uses nouns 0..2; validation adds oven (4, twice) and fork (3, once): pruned."""
    folder.mkdir()
    write_csv(folder / "EPIC_100_train.csv", HEADER, [cli_row("P01_01", i, i % 3) for i in range(20)])
    write_csv(folder / "EPIC_100_validation.csv", HEADER,
              [cli_row("P03_01", i, n) for i, n in enumerate([0, 4, 1, 4, 3, 2])])
    write_csv(folder / "EPIC_100_verb_classes.csv", ["id", "key", "instances", "category"],
              [[0, "open", "['open']", "access"], [1, "close", "['close']", "block"]])
    write_csv(folder / "EPIC_100_noun_classes.csv", ["id", "key", "instances", "category"],
              [[i, n, f"['{n}']", "misc"] for i, n in enumerate(CLI_NOUNS)])
    write_csv(folder / "EPIC_100_video_info.csv", ["video_id", "duration", "fps", "resolution"],
              [["P01_01", 90.0, 59.94, "456x256"], ["P03_01", 30.0, 59.94, "456x256"]])
    write_csv(folder / "EPIC_100_unseen_participant_ids_validation.csv", ["participant_id"], [["P03"]])
    return folder
