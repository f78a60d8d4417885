"""The demo plan and its EPIC annotation files (no media: fast)."""

import ast
import csv
import math
import re
from collections import Counter

import pytest

from mmkd.demo.annotations import ANNOTATION_COLUMNS, timestamp_cs, write_annotations
from mmkd.demo.plan import make_plan
from mmkd.demo.spec import NOUNS, SCALES, VERBS
from mmkd.errors import MmkdError

TS = re.compile(r"^\d\d:\d\d:\d\d\.\d\d$")
TS_MS = re.compile(r"^\d\d:\d\d:\d\d\.\d\d\d$")


def _seconds(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_annotations(tmp_path_factory):
    out = tmp_path_factory.mktemp("ann")
    write_annotations(make_plan("tiny", 0), out)
    return out


def test_annotation_rows_follow_epic_formats(tiny_annotations):
    info = {r["video_id"]: r for r in _read(tiny_annotations / "EPIC_100_video_info.csv")}
    for split in ("train", "validation"):
        path = tiny_annotations / f"EPIC_100_{split}.csv"
        with open(path) as fh:
            assert tuple(fh.readline().strip().split(",")) == ANNOTATION_COLUMNS
        rows = _read(path)
        assert [r["narration_id"] for r in rows] == sorted(r["narration_id"] for r in rows)
        for r in rows:
            assert TS.match(r["start_timestamp"]) and TS.match(r["stop_timestamp"])
            assert TS_MS.match(r["narration_timestamp"])
            fps = 50 if len(r["video_id"].split("_")[1]) == 3 else 60
            assert float(info[r["video_id"]]["fps"]) == fps
            start, stop = _seconds(r["start_timestamp"]), _seconds(r["stop_timestamp"])
            # EPIC: frame = floor(seconds * fps), 1-based
            assert int(r["start_frame"]) == max(1, math.floor(round(start * fps, 6)))
            assert int(r["stop_frame"]) == math.floor(round(stop * fps, 6))
            assert 1.0 <= round(stop - start, 2) <= 1.6
            assert stop <= float(info[r["video_id"]]["duration"])
            nouns, classes = (
                ast.literal_eval(r["all_nouns"]),
                ast.literal_eval(r["all_noun_classes"]),
            )
            assert nouns[0] == r["noun"] and classes[0] == int(r["noun_class"])
            assert [NOUNS[c].key for c in classes] == nouns
            assert r["verb"] in VERBS[int(r["verb_class"])].instances
            assert r["narration"].startswith(r["verb"].replace("-", " ") + " " + r["noun"])
            assert r["narration_id"].startswith(r["video_id"] + "_")
            assert r["video_id"].startswith(r["participant_id"] + "_")


def test_segments_do_not_overlap_and_leave_gaps():
    for video in make_plan("small", 0).videos:
        for a, b in zip(video.segments, video.segments[1:], strict=False):
            assert b.start_cs - a.stop_cs >= 20
            assert a.frames(video.fps)[1] < b.frames(video.fps)[0]
        assert video.segments[-1].frames(video.fps)[1] <= video.n_frames


def test_splits_participants_and_rare_nouns():
    for scale in SCALES:
        plan = make_plan(scale, 0)
        train = [v for v in plan.videos if v.layout.split == "train"]
        val = [v for v in plan.videos if v.layout.split == "validation"]
        seen = {v.participant for v in train}
        assert plan.unseen and not seen & set(plan.unseen)
        assert {v.participant for v in val} & seen  # validation also has seen participants
        assert {v.participant for v in val} >= set(plan.unseen)
        assert any(v.fps == 50 for v in plan.videos) and any(v.fps == 60 for v in plan.videos)
        rare = {i for i, n in enumerate(NOUNS) if n.validation_only}
        assert len(rare) >= 2
        assert not rare & {s.noun for v in train for s in v.segments}
        assert rare <= {s.noun for v in val for s in v.segments}


def test_scales_have_the_intended_size_and_class_coverage():
    counts = {}
    for scale in SCALES:
        plan = make_plan(scale, 0)
        counts[scale] = Counter(v.layout.split for v in plan.videos for _ in v.segments)
    assert 100 <= sum(counts["tiny"].values()) <= 200
    assert 1000 <= counts["small"]["train"] <= 1500 and 200 <= counts["small"]["validation"] <= 500
    small = make_plan("small", 0)
    verbs = Counter(s.verb for v in small.videos if v.layout.split == "train" for s in v.segments)
    nouns = Counter(s.noun for v in small.videos if v.layout.split == "train" for s in v.segments)
    pairs = Counter(
        (s.verb, s.noun) for v in small.videos if v.layout.split == "train" for s in v.segments
    )
    assert len(verbs) == len(VERBS) and min(verbs.values()) >= 60
    assert len(nouns) == sum(not n.validation_only for n in NOUNS) and min(nouns.values()) >= 40
    assert min(pairs.values()) >= 10  # every combination a small model can learn from


def test_annotations_are_byte_identical_for_a_seed(tmp_path):
    write_annotations(make_plan("tiny", 3), tmp_path / "a")
    write_annotations(make_plan("tiny", 3), tmp_path / "b")
    write_annotations(make_plan("tiny", 4), tmp_path / "c")
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
    assert (tmp_path / "a" / "EPIC_100_train.csv").read_bytes() != (
        tmp_path / "c" / "EPIC_100_train.csv"
    ).read_bytes()


def test_timestamp_format_and_unknown_scale():
    assert timestamp_cs(0) == "00:00:00.00"
    assert timestamp_cs(360000 + 6100 + 105) == "01:01:02.05"
    with pytest.raises(MmkdError, match="unknown demo scale"):
        make_plan("huge", 0)
