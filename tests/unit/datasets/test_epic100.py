"""EPIC-100 builder: Epic-Kitchens* splits, pruning, seen/unseen, EPIC media layout."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from helpers.epic_csv import (
    HEADER,
    VERBS,
    VIDEOS,
    segment,
    train_rows,
    validation_rows,
    write_csv,
    write_epic,
)
from mmkd.datasets import epic100
from mmkd.datasets.manifest import manifest_hash, read_all, read_split, resolve
from mmkd.registry import datasets


@pytest.fixture
def ann(tmp_path):
    return write_epic(tmp_path / "annotations")


def test_splits_pruning_and_heads(ann, tmp_path):
    report = epic100.build_epic100(ann, "", tmp_path / "m", seed=0)
    assert report.counts == {"train": 36, "val": 4, "test": 5}  # 40 train rows; 7 val - 2 jar
    assert report.pruned == {"jar (3)": 2}
    meta, samples = read_all(tmp_path / "m")
    assert meta.splits == ["train", "val", "test"]
    assert meta.heads == {"verb": 3, "noun": 4}
    assert meta.classes["noun"] == ["plate", "cup", "knife", "jar"]
    assert meta.notes["pruned_samples"] == 2 and meta.notes["eval_split"] == "test"
    assert all(s.labels["noun"] != 3 for s in samples)
    test = read_split(tmp_path / "m", "test")
    assert {s.sample_id: s.unseen for s in test} == {
        "P02_01_0": False, "P02_01_1": False, "P02_01_2": False, "P02_01_3": False,
        "P18_01_1": True}


def test_holdout_is_seeded_reproducible_and_order_free(ann, tmp_path):
    a = epic100.build_epic100(ann, "", tmp_path / "a", seed=0)
    b = epic100.build_epic100(ann, "", tmp_path / "b", seed=0)
    c = epic100.build_epic100(ann, "", tmp_path / "c", seed=1)
    val = {k: [x.sample_id for x in read_split(r.out_dir, "val")]
           for k, r in zip("abc", (a, b, c), strict=True)}
    assert val["a"] == val["b"] and val["a"] != val["c"]
    # shuffling the rows of the official file does not move any segment between splits
    rows = train_rows()
    np.random.default_rng(3).shuffle(rows)
    shuffled = write_epic(tmp_path / "shuffled", train=rows)
    d = epic100.build_epic100(shuffled, "", tmp_path / "d", seed=0)
    assert sorted(x.sample_id for x in read_split(d.out_dir, "val")) == sorted(val["a"])
    _, all_a = read_all(a.out_dir)
    _, all_b = read_all(b.out_dir)
    assert manifest_hash(all_a) == manifest_hash(all_b)


def test_holdout_fraction_by_segment():
    from mmkd.datasets.manifest import Sample

    samples = [Sample(f"s{i}", "v", "train", {}) for i in range(1000)]
    train, val = epic100.holdout(samples, seed=7, fraction=0.1)
    assert len(val) == 100 and len(train) == 900
    assert {s.sample_id for s in train} | {s.sample_id for s in val} == {f"s{i}" for i in range(1000)}


def test_epic_layout_rates_and_strides(ann, tmp_path):
    epic100.build_epic100(ann, tmp_path / "media", tmp_path / "m", seed=0)
    meta, samples = read_all(tmp_path / "m")
    by_video = {s.video_id: s for s in samples}
    main, ext = by_video["P01_01"], by_video["P01_101"]
    assert (main.fps, main.media["flow"]["stride"]) == (60.0, 2)
    assert (ext.fps, ext.media["flow"]["stride"]) == (50.0, 1)
    assert main.media["video"]["path"] == "P01/videos/P01_01.MP4"
    assert main.media["rgb"] == {"dir": "P01/rgb_frames/P01_01", "template": "frame_%010d.jpg"}
    assert main.media["flow"]["dir"] == "P01/flow_frames/P01_01"
    assert main.media["audio"] == {"path": "P01/audio/P01_01.wav"}  # no HDF5 under the root
    assert "detection" not in main.media
    assert resolve(meta, main.media["video"]["path"], tmp_path / "m") == (
        tmp_path / "media" / "P01" / "videos" / "P01_01.MP4")


def test_audio_hdf5_and_boxes_found_under_the_media_root(ann, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    with h5py.File(root / "EPIC_audio.hdf5", "w") as f:
        f.create_dataset("P01_01", data=np.zeros(10, np.float32))
    boxes = {"P01_01": [{"name": f"P01_01/frame_{n:010d}.jpg", "labels": [
        {"box2d": {"x1": 1, "y1": 2, "x2": 30, "y2": 40}, "standard_category": "hand"},
        {"box2d": {"x1": 5, "y1": 5, "x2": 50, "y2": 60}, "standard_category": "0000"}]}
        for n in range(1, 400, 5)]}
    (root / "detections.json").write_text(json.dumps(boxes))
    epic100.build_epic100(ann, root, tmp_path / "m", seed=0)
    _, samples = read_all(tmp_path / "m")
    s = next(s for s in samples if s.sample_id == "P01_01_1")  # 2.0–3.5 s: RGB frames 120..210
    assert s.media["audio"] == {"path": "EPIC_audio.hdf5", "key": "P01_01", "sample_rate": 24000}
    det = s.media["detection"]
    assert det["path"] == "detections.json" and det["key"] == "P01_01"
    assert (det["width"], det["height"], det["fps"], det["frame_stride"]) == (456, 256, 60.0, 5)
    assert det["n_frames"] == len(range(121, 211, 5))
    late = next(s for s in samples if s.sample_id == "P01_01_19")  # past the last boxed frame
    assert "detection" not in late.media
    assert "detection" not in next(s for s in samples if s.video_id == "P01_101").media


# EPIC_100_verb_classes.csv row 89, as shipped; the official validation file labels P21_02_54
# "bring-into" with it (no class lists that word)
CARRY = ("carry", ["bring", "carry", "have", "bring-to"])


def test_label_text_outside_its_class_is_kept_counted_and_listed(tmp_path):
    ann = write_epic(tmp_path / "ann")
    verbs = [*VERBS, *[(f"verb{i}", [f"verb{i}"]) for i in range(len(VERBS), 89)], CARRY]
    write_csv(ann / epic100.VERB_CSV, ["id", "key", "instances", "category"],
              [[str(i), k, str(inst), "misc"] for i, (k, inst) in enumerate(verbs)])
    write_csv(ann / epic100.VIDEO_INFO_CSV, ["video_id", "duration", "fps", "resolution"],
              [[v, "120.0", str(fps), "456x256"] for v, fps in [*VIDEOS, ("P21_02", 50.0)]])
    carry = segment("P21_02", 54, 0, 1, 10.0, 60)
    carry[HEADER.index("verb")], carry[HEADER.index("verb_class")] = "bring-into", "89"
    jar = validation_rows()[4]  # P18_01_0: noun text "mug" under noun class 3 (jar)
    jar[HEADER.index("noun")] = "mug"
    write_csv(ann / epic100.VALIDATION_CSV, HEADER, [*validation_rows()[:4], jar, carry])
    report = epic100.build_epic100(ann, "", tmp_path / "m", seed=0)
    meta, samples = read_all(tmp_path / "m")
    assert next(s for s in samples if s.sample_id == "P21_02_54").labels == {"verb": 89, "noun": 1}
    assert [(m.sample_id, m.head, m.text, m.class_id, m.class_name, m.where)
            for m in report.label_mismatches] == [
        ("P18_01_0", "noun", "mug", 3, "jar", "EPIC_100_validation.csv:6"),
        ("P21_02_54", "verb", "bring-into", 89, "carry", "EPIC_100_validation.csv:7")]
    listed = meta.notes["label_text_mismatches"]
    assert listed["count"] == 2 and listed["rows"][1] == {
        "where": "EPIC_100_validation.csv:7", "sample_id": "P21_02_54", "head": "verb",
        "text": "bring-into", "class_id": 89, "class_name": "carry"}


def test_clean_annotations_list_no_mismatch(ann, tmp_path):
    report = epic100.build_epic100(ann, "", tmp_path / "m", seed=0)
    assert report.label_mismatches == []
    assert read_all(tmp_path / "m")[0].notes["label_text_mismatches"] == {"count": 0, "rows": []}


def test_registered_under_its_name():
    assert datasets.get("epic100").build is epic100.build_epic100
