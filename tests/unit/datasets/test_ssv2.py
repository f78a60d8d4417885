"""SSv2 builder: the template rule, split names, Something-Else boxes, and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from mmkd.datasets import ssv2
from mmkd.datasets.box_store import read_boxes
from mmkd.datasets.manifest import read_all
from mmkd.errors import MmkdError
from mmkd.registry import datasets

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "samples" / "ssv2"
LABELS = {"Putting something into something": "0", "Something falling like a rock": "1",
          "Pushing something from left to right": "2"}


def _entry(vid: str, template: str) -> dict:
    return {"id": vid, "label": template.replace("[", "").replace("]", "").lower(),
            "template": template, "placeholders": ["cup"]}


def _write(tmp_path: Path, train=None, validation=None) -> tuple[Path, list[Path]]:
    (tmp_path / "labels.json").write_text(json.dumps(LABELS))
    train = train if train is not None else [
        _entry("11", "Putting [something] into [something]"),
        _entry("12", "[Something] falling like a rock"),
        _entry("13", "Pushing [something] from left to right")]
    validation = validation if validation is not None else [
        _entry("21", "[Something] falling like a rock")]
    files = [tmp_path / "something-something-v2-train.json",
             tmp_path / "something-something-v2-validation.json"]
    for f, data in zip(files, (train, validation), strict=True):
        f.write_text(json.dumps(data, indent=1))
    return tmp_path / "labels.json", files


def _boxes(path: Path, videos: dict[str, int]) -> Path:
    path.write_text(json.dumps({vid: [
        {"name": f"{vid}/{n:04d}.jpg", "nr_instances": 2, "gt_placeholders": ["cup"], "labels": [
            {"box2d": {"x1": 0.5, "y1": 27.6, "x2": 319.7, "y2": 239.8}, "category": "cup",
             "standard_category": "0000", "gt_annotation": "object 0"},
            {"box2d": {"x1": 0, "y1": 28.6, "x2": 189.5, "y2": 189.9}, "category": "hand",
             "standard_category": "hand", "gt_annotation": "object hand"}]}
        for n in range(1, count + 1)] for vid, count in videos.items()}))
    return path


def _webm(path: Path, width: int, height: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libvpx", rate=12)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode())


def test_template_rule_splits_and_boxes(tmp_path):
    labels, files = _write(tmp_path)
    media = tmp_path / "videos"
    media.mkdir()
    _webm(media / "11.webm", 64, 48)
    b1 = _boxes(media / "part1.json", {"11": 3})
    b2 = _boxes(tmp_path / "part2.json", {"21": 2, "99": 1})
    report = ssv2.build_ssv2(files, media, tmp_path / "m", labels=labels, boxes=[b1, b2])
    assert report.counts == {"train": 3, "val": 1}
    meta, samples = read_all(tmp_path / "m")
    assert meta.heads == {"action": 3} and meta.notes["eval_split"] == "val"
    assert meta.classes["action"][1] == "Something falling like a rock"
    by_id = {s.sample_id: s for s in samples}
    assert [by_id[k].labels["action"] for k in ("11", "12", "13", "21")] == [0, 1, 2, 1]
    assert by_id["11"].media["video"] == {"path": "11.webm", "fps": 12.0}
    assert by_id["11"].media["flow"] == {"dir": "flow_frames/11", "template": "frame_%010d.jpg",
                                         "stride": 1}
    store = tmp_path / "m" / "boxes.h5"  # both files indexed into one store next to the manifest
    assert by_id["11"].media["detection"] == {"path": str(store), "key": "11", "width": 64,
                                              "height": 48, "fps": 12.0, "frame_stride": 1,
                                              "n_frames": 3}
    det21 = by_id["21"].media["detection"]  # no video: no size
    assert det21["path"] == str(store) and (det21["width"], det21["height"]) == (None, None)
    assert read_boxes(store, "21") == read_boxes(b2, "21") and meta.notes["boxes"] == [str(store)]
    assert "detection" not in by_id["12"].media
    assert meta.notes["videos_with_boxes"] == 2


def test_boxes_map_categories_to_hand_and_object(tmp_path):
    frames = read_boxes(_boxes(tmp_path / "b.json", {"5": 2}), "5")
    assert [f.frame for f in frames] == [1, 2] and frames[0].name == "5/0001.jpg"
    obj, hand = frames[0].boxes
    assert (obj.category, obj.object_index, obj.x2) == ("object", 0, 319.7)
    assert (hand.category, hand.object_index) == ("hand", -1)


def test_annotation_folder_and_list_syntax(tmp_path):
    labels, files = _write(tmp_path)
    (tmp_path / labels.name).rename(tmp_path / ssv2.LABELS_JSON)
    report = ssv2.build_ssv2(tmp_path, "", tmp_path / "m")
    assert report.counts == {"train": 3, "val": 1}
    assert datasets.get("ssv2").build is ssv2.build_ssv2


@pytest.mark.parametrize("entry, problem", [
    (_entry("31", "Juggling [something]"), "field 'template': unknown label 'Juggling something'"),
    ({"id": "11"}, "field 'template' is missing"),
    ({"template": "x"}, "field 'id' is missing"),
])
def test_bad_entries(tmp_path, entry, problem):
    labels, files = _write(tmp_path, validation=[entry])
    # the entry starts on line 2 of the pretty-printed file (line 1 is "[")
    with pytest.raises(MmkdError, match="something-something-v2-validation.json:2: entry 0") as exc:
        ssv2.build_ssv2(files, "", tmp_path / "m", labels=labels)
    assert problem in str(exc.value)


def test_duplicated_id_and_bad_json(tmp_path):
    labels, files = _write(tmp_path, validation=[_entry("12", "Pushing [something] from left "
                                                               "to right")])
    with pytest.raises(MmkdError, match=r"validation.json:2: entry 0 \(id 12\): field 'id': "
                                        r"duplicated id \(first at something-something-v2-train"
                                        r".json:10\)"):  # 8 lines per entry
        ssv2.build_ssv2(files, "", tmp_path / "m", labels=labels)
    files[1].write_text('[\n {"id": "1",\n  "template": oops}\n]')
    with pytest.raises(MmkdError, match=r"validation.json:3: column 15: not valid JSON"):
        ssv2.build_ssv2(files, "", tmp_path / "m", labels=labels)
    with pytest.raises(MmkdError, match="cannot tell the split from the file name"):
        ssv2.split_name(tmp_path / "annotations.json")


def test_real_excerpts(tmp_path):
    """The fixture's shapes are the real ones: 174 labels, 200 validation entries, real boxes."""
    names = ssv2.read_labels(SAMPLES / "something-something-v2-labels.json")
    assert len(names) == 174
    real_val = json.loads((SAMPLES / "something-something-v2-validation_head200.json").read_text())
    _, files = _write(tmp_path)
    assert set(json.loads(files[1].read_text())[0]) == set(real_val[0])
    val = tmp_path / "real" / "something-something-v2-validation.json"
    val.parent.mkdir()
    val.write_text(json.dumps(real_val))
    boxes = SAMPLES / "something_else_annotations_sample.json"
    real_boxes = json.loads(boxes.read_text())
    first = next(iter(real_boxes.values()))[0]
    fixture = json.loads(_boxes(tmp_path / "b.json", {"1": 1}).read_text())["1"][0]
    assert set(fixture) <= set(first) and set(fixture["labels"][0]) == set(first["labels"][0])
    report = ssv2.build_ssv2([val], "", tmp_path / "m",
                             labels=SAMPLES / "something-something-v2-labels.json", boxes=[boxes])
    assert report.counts == {"val": 200} and report.meta.heads == {"action": 174}
    for key in real_boxes:
        frames = read_boxes(boxes, key)
        assert len(frames) == len(real_boxes[key]) and {b.category for f in frames
                                                         for b in f.boxes} == {"hand", "object"}
