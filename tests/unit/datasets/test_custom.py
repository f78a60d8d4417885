"""Custom CSV datasets: the documented schema, class lists, and errors naming file/line/column."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmkd.datasets import custom
from mmkd.datasets.manifest import read_all
from mmkd.errors import MmkdError
from mmkd.registry import datasets

HEADER = ["sample_id", "video_id", "split", "start_s", "stop_s", "fps", "video", "flow",
          "flow_stride", "audio", "audio_key", "detection", "detection_width", "detection_height",
          "label_verb", "label_noun"]


def _rows() -> list[list[str]]:
    return [
        ["a1", "vidA", "train", "0.5", "2.0", "30", "vids/vidA.mp4", "flow/vidA", "2",
         "audio.h5", "", "boxes.json", "320", "240", "cut", "onion"],
        ["a2", "vidA", "train", "00:00:03.00", "00:00:04.50", "30", "vids/vidA.mp4", "", "", "",
         "", "", "", "", "stir", "pan"],
        ["b1", "vidB", "test", "1", "3", "", "/data/vidB.mp4", "", "", "snd/vidB.wav", "", "", "",
         "", "cut", "pan"],
    ]


def _csv(path: Path, rows=None, header=None) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header or HEADER)
        w.writerows(_rows() if rows is None else rows)
    return path


def test_schema_to_manifest(tmp_path):
    (tmp_path / "verbs.txt").write_text("stir\ncut\npeel\n")
    report = custom.build_custom(_csv(tmp_path / "d.csv"), tmp_path / "media", tmp_path / "m",
                                 name="mykitchen", classes={"verb": tmp_path / "verbs.txt"})
    assert report.counts == {"train": 2, "test": 1}
    meta, samples = read_all(tmp_path / "m")
    assert meta.dataset == "mykitchen"
    assert meta.heads == {"verb": 3, "noun": 2}
    assert meta.classes == {"verb": ["stir", "cut", "peel"], "noun": ["onion", "pan"]}
    a1, a2, b1 = samples
    assert a1.labels == {"verb": 1, "noun": 0} and b1.labels == {"verb": 1, "noun": 1}
    assert (a1.start_frame, a1.stop_frame) == (15, 60)  # floor(t × fps), as EPIC
    assert (a2.start_s, a2.stop_s) == (3.0, 4.5)
    assert a1.media == {
        "video": {"path": "vids/vidA.mp4"},
        "flow": {"dir": "flow/vidA", "template": "frame_%010d.jpg", "stride": 2},
        "audio": {"path": "audio.h5", "key": "vidA", "sample_rate": 24000},
        "detection": {"path": "boxes.json", "key": "vidA", "width": 320, "height": 240,
                      "fps": 30.0},
    }
    assert set(a2.media) == {"video"}  # empty cells: the modality is missing for that sample
    assert b1.media == {"video": {"path": "/data/vidB.mp4"}, "audio": {"path": "snd/vidB.wav"}}
    assert (b1.fps, b1.start_frame) == (None, None)
    assert datasets.get("custom").build is custom.build_custom


def test_integer_labels_imply_the_class_count(tmp_path):
    rows = [["s1", "v", "train", "3"], ["s2", "v", "val", "0"]]
    custom.build_custom(_csv(tmp_path / "d.csv", rows, ["sample_id", "video_id", "split",
                                                        "label_action"]), "", tmp_path / "m")
    meta, samples = read_all(tmp_path / "m")
    assert meta.heads == {"action": 4} and [s.labels["action"] for s in samples] == [3, 0]
    assert meta.media_root == str(tmp_path)  # no --media-root: paths are relative to the CSV


def _fails(tmp_path, rows=None, header=None, classes=None) -> str:
    with pytest.raises(MmkdError) as exc:
        custom.build_custom(_csv(tmp_path / "d.csv", rows, header), "", tmp_path / "m",
                            classes=classes)
    return str(exc.value)


def _with(row: int, column: str, value: str) -> list[list[str]]:
    rows = _rows()
    rows[row][HEADER.index(column)] = value
    return rows


@pytest.mark.parametrize("row, column, value, problem", [
    (1, "start_s", "3 s", "column 'start_s': '3 s' is not a time"),
    (1, "stop_s", "00:00:0x.50", "column 'stop_s': '00:00:0x.50' is not a HH:MM:SS.ss timestamp"),
    (1, "sample_id", "a1", "column 'sample_id': duplicated id 'a1' (first at line 2)"),
    (1, "flow", "flow/x", ""),  # valid: a flow folder with the default stride
    (1, "label_noun", "", "column 'label_noun': empty label"),
    (0, "detection_width", "wide", "column 'detection_width': 'wide' is not an integer width"),
])
def test_bad_cells(tmp_path, row, column, value, problem):
    if not problem:
        custom.build_custom(_csv(tmp_path / "d.csv", _with(row, column, value)), "", tmp_path / "m")
        return
    msg = _fails(tmp_path, _with(row, column, value))
    assert msg.startswith(f"{tmp_path / 'd.csv'}:{row + 2}: {problem}")


def test_unknown_label_and_bad_class_id(tmp_path):
    (tmp_path / "verbs.txt").write_text("stir\ncut\n")
    msg = _fails(tmp_path, _with(2, "label_verb", "peel"), classes={"verb": tmp_path / "verbs.txt"})
    assert msg.startswith(f"{tmp_path / 'd.csv'}:4: column 'label_verb': unknown label 'peel'")
    assert "use one of the 2 classes" in msg
    msg = _fails(tmp_path, _with(2, "label_verb", "7"), classes={"verb": tmp_path / "verbs.txt"})
    assert ":4: column 'label_verb': class id 7 is outside 0..1" in msg
    msg = _fails(tmp_path, _with(2, "label_verb", "2"))
    assert ":4: column 'label_verb': class id 2 mixed with class names" in msg


def test_label_text_outside_its_class_is_kept_and_listed(tmp_path):
    (tmp_path / "verbs.csv").write_text('id,key,instances\n0,take,"[\'take\', \'grab\']"\n'
                                        '1,carry,"[\'bring\', \'carry\']"\n')
    rows = [["s1", "v", "train", "1", "bring", "pan", "pan"],
            ["s2", "v", "train", "1", "bring-into", "pan", "pan"],
            ["s3", "v", "val", "0", "", "lid", "pot"]]
    header = ["sample_id", "video_id", "split", "label_verb", "text_verb", "label_noun", "text_noun"]
    report = custom.build_custom(_csv(tmp_path / "d.csv", rows, header), "", tmp_path / "m",
                                 classes={"verb": tmp_path / "verbs.csv"})
    assert [(m.where, m.sample_id, m.head, m.text, m.class_id, m.class_name)
            for m in report.label_mismatches] == [("d.csv:3", "s2", "verb", "bring-into", 1, "carry"),
                                                  ("d.csv:4", "s3", "noun", "pot", 0, "lid")]
    meta, samples = read_all(tmp_path / "m")
    assert [s.labels for s in samples] == [{"verb": 1, "noun": 1}, {"verb": 1, "noun": 1},
                                           {"verb": 0, "noun": 0}]
    assert meta.notes["label_text_mismatches"]["count"] == 2
    msg = _fails(tmp_path, rows, [*header[:-1], "text_object"])
    assert ":1: column 'text_object' has no label column label_object" in msg


def test_missing_columns(tmp_path):
    msg = _fails(tmp_path, [["s1", "v", "x"]], ["sample_id", "split", "label_x"])
    assert msg.startswith(f"{tmp_path / 'd.csv'}:1: column 'video_id' is missing")
    msg = _fails(tmp_path, [["s1", "v", "train"]], ["sample_id", "video_id", "split"])
    assert ":1: no label column; add one or more columns named label_<head>" in msg
