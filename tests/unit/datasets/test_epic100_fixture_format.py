"""The tiny EPIC-format fixture every EPIC test builds, and a check that it matches the real files.

`write_epic` writes the six official annotation files into a folder. The format test compares
its headers and value shapes with the real excerpts in /work/shared/samples (skipped when
absent) and runs the real validation excerpt and class files through the parser.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from mmkd.datasets import epic100

SAMPLES = Path("/work/shared/samples/epic100")
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


needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="no real-format samples here")


def _header(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


@needs_samples
def test_fixture_headers_match_the_real_files(tmp_path):
    ann = write_epic(tmp_path)
    real = {epic100.VALIDATION_CSV: "EPIC_100_validation_head200.csv"}
    for name in (epic100.VALIDATION_CSV, epic100.VERB_CSV, epic100.NOUN_CSV,
                 epic100.VIDEO_INFO_CSV, epic100.UNSEEN_CSV):
        assert _header(ann / name) == _header(SAMPLES / real.get(name, name)), name


@needs_samples
def test_fixture_values_have_the_real_shapes(tmp_path):
    """Same timestamp decimals, list syntax and id pattern as the real validation rows."""
    ann = write_epic(tmp_path)
    shapes = {
        "narration_timestamp": r"\d\d:\d\d:\d\d\.\d{3}",
        "start_timestamp": r"\d\d:\d\d:\d\d\.\d\d", "stop_timestamp": r"\d\d:\d\d:\d\d\.\d\d",
        "narration_id": r"P\d\d_\d{2,3}_\d+", "all_nouns": r"\['[^']+'(, '[^']+')*\]",
        "all_noun_classes": r"\[\d+(, \d+)*\]",
    }
    for path in (SAMPLES / "EPIC_100_validation_head200.csv", ann / epic100.VALIDATION_CSV):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                for column, pattern in shapes.items():
                    assert re.fullmatch(pattern, row[column]), (path.name, column, row[column])


@needs_samples
def test_the_parser_reads_the_real_excerpts(tmp_path):
    verbs = epic100.read_classes(SAMPLES / epic100.VERB_CSV, "verb")
    nouns = epic100.read_classes(SAMPLES / epic100.NOUN_CSV, "noun")
    assert (len(verbs.names), len(nouns.names)) == (97, 300)
    videos = epic100.read_video_info(SAMPLES / epic100.VIDEO_INFO_CSV)
    assert videos["P01_101"].fps == 50.0 and videos["P01_01"].width == 1920
    unseen = epic100.read_unseen(SAMPLES / epic100.UNSEEN_CSV)
    assert unseen == {"P18", "P32"}
    media = epic100._Media(audio_hdf5="", audio_rate=0, boxes_path="", boxes={})
    mismatches: list = []
    samples = epic100.read_segments(SAMPLES / "EPIC_100_validation_head200.csv", "test", verbs,
                                    nouns, videos, unseen, media, {}, mismatches)
    assert len(samples) == 200 and mismatches == []
    first = samples[0]
    assert (first.sample_id, first.labels, first.fps) == ("P01_11_0", {"verb": 0, "noun": 2}, 60.0)
    assert (first.start_s, first.stop_s, first.stop_frame) == (0.0, 1.89, 113)
    # start_frame = floor(start seconds × 60), as the real rows show (1-based: 0 s → frame 1)
    assert all(abs(s.start_frame - int(s.start_s * 60)) <= 1 for s in samples)
