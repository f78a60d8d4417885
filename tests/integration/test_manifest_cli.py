"""`mmkd manifest epic100|ssv2|custom` through the real CLI on tiny files the test writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import wave as wave_module
from pathlib import Path

import numpy as np
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


def _custom_csv(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "mine.csv", ["sample_id", "video_id", "split", "audio", "label_action"],
              [[f"x{i}", f"v{i}", "train", f"clips/v{i}.wav", "jump"] for i in range(n)])
    return folder / "mine.csv"


def test_check_media_with_every_file_missing_is_an_error_that_suggests_media_root(tmp_path):
    csv_file = _custom_csv(tmp_path / "ann", 3)
    result = CliRunner().invoke(app, ["manifest", "custom", "--csv", str(csv_file),
                                      "--check-media", "--out", str(tmp_path / "c")])
    assert result.exit_code != 0
    msg = str(result.exception)
    assert "none of the media of the 3 samples exist" in msg and "--media-root" in msg
    assert len(list(csv.DictReader(open(tmp_path / "c" / "media_problems.csv")))) == 3
    proc = subprocess.run([str(Path(sys.executable).with_name("mmkd")), "manifest", "check",
                           str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--media-root" in proc.stderr and "Traceback" not in proc.stderr

    media = tmp_path / "media" / "clips"  # one file found: a table of the others, exit 0
    media.mkdir(parents=True)
    wave = np.zeros(1600, np.int16)
    with wave_module.open(str(media / "v0.wav"), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(16000)
        fh.writeframes(wave)
    result = CliRunner().invoke(app, ["manifest", "custom", "--csv", str(csv_file),
                                      "--media-root", str(media.parent), "--check-media",
                                      "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(open(tmp_path / "c" / "media_problems.csv")))) == 2


def test_progress_counts_each_row_once(tmp_path, monkeypatch):
    """Reading counts rows (total unknown); the media check has its own bar over the samples."""
    from contextlib import contextmanager

    from mmkd.cli import ui

    bars = []

    @contextmanager
    def recording(description, total, unit="items"):
        bars.append([description, total, 0])
        yield lambda n=1: bars[-1].__setitem__(2, bars[-1][2] + n)

    monkeypatch.setattr(ui, "progress_bar", recording)
    csv_file = _custom_csv(tmp_path / "ann", 5)
    (tmp_path / "ann" / "clips").mkdir()
    (tmp_path / "ann" / "clips" / "v0.wav").write_bytes(b"RIFF")  # one found: no error
    result = CliRunner().invoke(app, ["manifest", "custom", "--csv", str(csv_file),
                                      "--check-media", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert bars == [["reading CSV", None, 5], ["checking media", 5, 5]]
