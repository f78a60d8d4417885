"""`mmkd manifest epic100|ssv2|custom` through the real CLI on tiny files the test writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from helpers.epic_csv import HEADER, pruning_epic, write_csv
from mmkd.cli.app import app
from mmkd.datasets.manifest import read_all


def test_epic100_through_the_cli(tmp_path):
    ann = pruning_epic(tmp_path / "annotations")
    rows = list(csv.reader(open(ann / "EPIC_100_validation.csv")))
    rows[1][HEADER.index("verb")] = "bring-into"  # a text outside its class: listed, kept
    write_csv(ann / "EPIC_100_validation.csv", rows[0], rows[1:])
    media = tmp_path / "media"
    (media / "P01" / "videos").mkdir(parents=True)
    (media / "P01" / "videos" / "P01_01.MP4").write_bytes(b"")
    out = tmp_path / "manifests" / "epic100"
    result = CliRunner().invoke(app, ["manifest", "epic100", "--annotations", str(ann),
                                      "--media-root", str(media), "--seed", "3",
                                      "--check-media", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "pruned test: dropped 3 samples" in text and "fork (3): 1, oven (4): 2" in text
    assert "missing media" in text and "frame folder missing" in text
    assert "label texts outside their class: 1" in text
    assert "P03_01_0 │ verb │ bring-into │ 0 open │ EPIC_100_validation.csv:2" in text
    meta, samples = read_all(out)
    assert [len([s for s in samples if s.split == k]) for k in meta.splits] == [18, 2, 3]
    assert meta.command == (f"mmkd manifest epic100 --annotations {ann} --media-root {media} "
                            f"--seed 3 --check-media --out {out}")
    assert all(s.unseen for s in samples if s.split == "test")
    problems = list(csv.DictReader(open(out / "media_problems.csv")))
    # 23 samples × (rgb, flow, audio) + the 3 test samples' video (P03_01.MP4 absent)
    # + the 20 P01 samples' video (P01_01.MP4 is empty)
    assert len(problems) == 23 * 3 + 3 + 20
    video = {p["sample_id"]: p["problem"] for p in problems if p["modality"] == "video"}
    assert {k for k, v in video.items() if v == "file missing"} == {
        "P03_01_0", "P03_01_2", "P03_01_5"}
    assert sum(v == "empty file (0 bytes)" for v in video.values()) == 20


def test_bad_input_is_one_red_line_and_exit_2(tmp_path):
    ann = pruning_epic(tmp_path / "annotations")
    rows = list(csv.reader(open(ann / "EPIC_100_train.csv")))
    rows[5][4] = "00:00:1.5"
    write_csv(ann / "EPIC_100_train.csv", rows[0], rows[1:])
    mmkd = Path(sys.executable).with_name("mmkd")
    proc = subprocess.run([str(mmkd), "manifest", "epic100", "--annotations", str(ann), "--out",
                           str(tmp_path / "m")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "1000"})  # rich wraps at the width
    assert proc.returncode == 2
    err = " ".join(proc.stderr.split())
    assert f"error: {ann / 'EPIC_100_train.csv'}:6: column 'start_timestamp': '00:00:1.5' is not" in err
    assert "write it like 00:01:02.35" in err
    assert not (tmp_path / "m").exists()


def test_ssv2_and_custom_through_the_cli(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Opening something": "0",
                                                      "Closing something": "1"}))
    for name, entries in (("train", [("1", "Opening [something]"), ("2", "Closing [something]")]),
                          ("validation", [("3", "Closing [something]")])):
        (tmp_path / f"something-something-v2-{name}.json").write_text(json.dumps(
            [{"id": i, "label": t, "template": t, "placeholders": ["box"]} for i, t in entries]))
    result = CliRunner().invoke(app, [
        "manifest", "ssv2", "--labels", str(tmp_path / "labels.json"), "--annotations",
        str(tmp_path / "something-something-v2-train.json"),
        str(tmp_path / "something-something-v2-validation.json"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    meta, samples = read_all(tmp_path / "s")
    assert meta.splits == ["train", "val"] and [s.labels["action"] for s in samples] == [0, 1, 1]

    write_csv(tmp_path / "mine.csv", ["sample_id", "video_id", "split", "video", "label_action"],
           [["x1", "v1", "train", "v1.mp4", "jump"], ["x2", "v2", "test", "v2.mp4", "sit"]])
    result = CliRunner().invoke(app, ["manifest", "custom", "--csv", str(tmp_path / "mine.csv"),
                                      "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    meta, _ = read_all(tmp_path / "c")
    assert meta.classes == {"action": ["jump", "sit"]} and meta.splits == ["train", "test"]
