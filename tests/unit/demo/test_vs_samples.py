"""The demo files have the formats of the real excerpts in tests/fixtures/samples.

It checks that the generator's formats did not drift from the real files'.
"""

import ast
import csv
import json
import re
from pathlib import Path

import cv2
import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "samples"

PATTERNS = {  # column -> how every value looks in the real file
    "narration_timestamp": r"\d\d:\d\d:\d\d\.\d{3}",
    "start_timestamp": r"\d\d:\d\d:\d\d\.\d\d",
    "stop_timestamp": r"\d\d:\d\d:\d\d\.\d\d",
    "start_frame": r"\d+",
    "stop_frame": r"\d+",
    "verb_class": r"\d+",
    "noun_class": r"\d+",
    "participant_id": r"P\d\d",
    "video_id": r"P\d\d_\d{2,3}",
    "narration_id": r"P\d\d_\d{2,3}_\d+",
    "all_nouns": r"\['.*'\]",
    "all_noun_classes": r"\[\d+(, \d+)*\]",
}


def _csv(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_annotation_csvs_match_the_real_files(demo_tiny):
    real_cols, real = _csv(SAMPLES / "epic100" / "EPIC_100_validation_head200.csv")
    for split in ("train", "validation"):
        cols, rows = _csv(demo_tiny / "annotations" / f"EPIC_100_{split}.csv")
        assert cols == real_cols
        for col, pattern in PATTERNS.items():
            assert all(re.fullmatch(pattern, r[col]) for r in real), col  # the pattern is right
            assert all(re.fullmatch(pattern, r[col]) for r in rows), col
        for r in rows[:20]:
            assert type(ast.literal_eval(r["all_nouns"])[0]) is str
    for name in ("EPIC_100_video_info.csv", "EPIC_100_unseen_participant_ids_validation.csv"):
        assert _csv(demo_tiny / "annotations" / name)[0] == _csv(SAMPLES / "epic100" / name)[0]
    _, info = _csv(demo_tiny / "annotations" / "EPIC_100_video_info.csv")
    for r in info:
        float(r["duration"]), float(r["fps"])
        assert re.fullmatch(r"\d+x\d+", r["resolution"])


@pytest.mark.parametrize("kind", ["verb", "noun"])
def test_class_csvs_use_real_keys_categories_and_spellings(demo_tiny, kind):
    name = f"EPIC_100_{kind}_classes.csv"
    real_cols, real = _csv(SAMPLES / "epic100" / name)
    cols, ours = _csv(demo_tiny / "annotations" / name)
    assert cols == real_cols
    by_key = {r["key"]: r for r in real}
    assert [int(r["id"]) for r in ours] == list(range(len(ours)))
    for r in ours:
        assert r["key"] in by_key, r["key"]
        assert r["category"] == by_key[r["key"]]["category"]
        assert set(ast.literal_eval(r["instances"])) <= set(
            ast.literal_eval(by_key[r["key"]]["instances"])
        )


def test_boxes_use_something_else_keys(demo_tiny):
    real = json.loads((SAMPLES / "ssv2" / "something_else_annotations_sample.json").read_text())
    real_entry_keys = {k for frames in real.values() for f in frames for k in f}
    real_label_keys = {
        k for frames in real.values() for f in frames for lab in f["labels"] for k in lab
    }
    real_std = {
        lab["standard_category"] for frames in real.values() for f in frames for lab in f["labels"]
    }
    real_hand = {
        lab["gt_annotation"]
        for frames in real.values()
        for f in frames
        for lab in f["labels"]
        if lab["standard_category"] == "hand"
    }
    ours = json.loads((demo_tiny / "media" / "detections.json").read_text())
    for frames in ours.values():
        for f in frames[:50]:
            assert set(f) <= real_entry_keys
            for lab in f["labels"]:
                assert set(lab) == real_label_keys
                assert set(lab["box2d"]) == {"x1", "y1", "x2", "y2"}
                assert lab["standard_category"] in real_std | {"0001"}
                if lab["standard_category"] == "hand":
                    assert lab["gt_annotation"] in real_hand


def test_flow_jpegs_look_like_the_real_ones(demo_tiny):
    real = cv2.imread(str(SAMPLES / "media" / "frames" / "x_00001.jpg"), cv2.IMREAD_UNCHANGED)
    flow_dir = demo_tiny / "media" / "P01" / "flow_frames" / "P01_01"
    for comp in ("u", "v"):
        ours = cv2.imread(str(flow_dir / comp / "frame_0000000100.jpg"), cv2.IMREAD_UNCHANGED)
        assert ours.ndim == real.ndim == 2 and ours.dtype == real.dtype
        assert abs(float(cv2.mean(ours)[0]) - 128) < 20 and abs(float(cv2.mean(real)[0]) - 128) < 20
    rgb = cv2.imread(
        str(demo_tiny / "media" / "P01" / "rgb_frames" / "P01_01" / "frame_0000000001.jpg"),
        cv2.IMREAD_UNCHANGED,
    )
    real_rgb = cv2.imread(str(SAMPLES / "media" / "frames" / "img_00001.jpg"), cv2.IMREAD_UNCHANGED)
    assert rgb.ndim == real_rgb.ndim == 3 and rgb.shape[2] == real_rgb.shape[2] == 3
