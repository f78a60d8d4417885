"""The tiny EPIC-format fixture every EPIC test builds, and a check that it matches the real files.

`helpers.epic_csv.write_epic` writes the six official annotation files into a folder; this
test compares its headers and value shapes with the real excerpts in tests/fixtures/samples and
runs the real validation excerpt and class files through the parser.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from helpers.epic_csv import write_epic
from mmkd.datasets import epic100

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "samples" / "epic100"



def _header(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


def test_fixture_headers_match_the_real_files(tmp_path):
    ann = write_epic(tmp_path)
    real = {epic100.VALIDATION_CSV: "EPIC_100_validation_head200.csv"}
    for name in (epic100.VALIDATION_CSV, epic100.VERB_CSV, epic100.NOUN_CSV,
                 epic100.VIDEO_INFO_CSV, epic100.UNSEEN_CSV):
        assert _header(ann / name) == _header(SAMPLES / real.get(name, name)), name


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
