"""Bad EPIC input stops with one MmkdError naming the file, the line, the column and the fix."""

from __future__ import annotations

import csv

import pytest

from helpers.epic_csv import HEADER, train_rows, write_csv, write_epic
from mmkd.datasets import epic100
from mmkd.errors import MmkdError

COL = {c: i for i, c in enumerate(HEADER)}


def _broken(tmp_path, column: str, value: str, row: int = 4):
    rows = train_rows()
    rows[row][COL[column]] = value
    return write_epic(tmp_path / "ann", train=rows)


def _error(ann, tmp_path) -> str:
    with pytest.raises(MmkdError) as exc:
        epic100.build_epic100(ann, "", tmp_path / "m")
    return str(exc.value)


@pytest.mark.parametrize("column, value, problem, fix", [
    ("start_timestamp", "00:01:xx.00", "is not a HH:MM:SS.ss timestamp", "00:01:02.35"),
    ("stop_timestamp", "1:2", "is not a HH:MM:SS.ss timestamp", "00:01:02.35"),
    ("noun_class", "300", "class id 300 is outside 0..3", "EPIC_100_noun_classes.csv"),
    ("verb_class", "x", "'x' is not an integer class id", "EPIC_100_verb_classes.csv"),
    ("video_id", "P01_99", "video 'P01_99' is not in EPIC_100_video_info.csv", "fix the id"),
    ("video_id", "kitchen-1", "'kitchen-1' is not an EPIC video id", "P01_11"),
    ("start_frame", "-3", "frame -3 is outside", "≥ 0"),
    ("all_noun_classes", "[1, ", "is not a list", "['plate', 'cup']"),
])
def test_bad_value_names_file_line_column_and_fix(tmp_path, column, value, problem, fix):
    # row index 4 of the data is physical line 6 of the file (line 1 is the header)
    msg = _error(_broken(tmp_path, column, value), tmp_path)
    assert msg.startswith(f"{tmp_path / 'ann' / 'EPIC_100_train.csv'}:6: column {column!r}: ")
    assert problem in msg and fix in msg


def test_missing_column_is_named(tmp_path):
    ann = write_epic(tmp_path / "ann")
    header = [c for c in HEADER if c != "stop_frame"]
    rows = [[v for c, v in zip(HEADER, r, strict=True) if c != "stop_frame"] for r in train_rows()]
    write_csv(ann / epic100.VALIDATION_CSV, header, rows)
    msg = _error(ann, tmp_path)
    assert msg.startswith(f"{ann / 'EPIC_100_validation.csv'}:1: column 'stop_frame' is missing")
    assert "add it" in msg


def test_duplicated_id_across_files_names_both_places(tmp_path):
    rows = train_rows()
    ann = write_epic(tmp_path / "ann", validation=[rows[2]])
    msg = _error(ann, tmp_path)
    assert msg.startswith(f"{ann / 'EPIC_100_validation.csv'}:2: column 'narration_id': "
                          "duplicated id 'P01_01_2' (first at EPIC_100_train.csv:4)")
    assert "keep one row per narration_id" in msg


def test_stop_before_start_is_refused(tmp_path):
    msg = _error(_broken(tmp_path, "stop_timestamp", "00:00:00.10", row=3), tmp_path)
    assert ":5: column 'stop_timestamp': stop 0.10 s is before start 6.00 s" in msg


def test_class_file_out_of_order_and_missing_file(tmp_path):
    ann = write_epic(tmp_path / "ann")
    with open(ann / epic100.VERB_CSV, "a", newline="") as fh:
        csv.writer(fh).writerow(["7", "cut", "['cut']", "split"])
    assert f"{ann / epic100.VERB_CSV}:5: column 'id': class id 7 is out of order" in _error(
        ann, tmp_path)
    (ann / epic100.UNSEEN_CSV).unlink()
    assert "EPIC_100_unseen_participant_ids_validation.csv: annotation file not found" in _error(
        ann, tmp_path)


def test_too_many_values_on_a_line(tmp_path):
    ann = write_epic(tmp_path / "ann")
    with open(ann / epic100.TRAIN_CSV, "a") as fh:
        fh.write(",".join(train_rows()[0]) + ",extra\n")
    msg = _error(ann, tmp_path)
    assert ":42: 16 values for 15 columns" in msg
