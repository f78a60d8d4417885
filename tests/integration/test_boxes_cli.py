"""Something-Else boxes through the real CLI: `mmkd boxes index`, `mmkd manifest ssv2 --boxes`
(store next to the manifest, skipped on a re-run), `mmkd manifest check` reading the store, and
a truncated file as one red line with exit code 2."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mmkd.cli.app import app
from mmkd.datasets.box_store import BoxStore
from mmkd.datasets.manifest import read_all


def _ssv2(tmp_path: Path) -> list[str]:
    (tmp_path / "labels.json").write_text(json.dumps({"Opening something": "0",
                                                      "Closing something": "1"}))
    args = ["--labels", str(tmp_path / "labels.json")]
    for name, entries in (("train", [("1", "Opening [something]"), ("2", "Closing [something]")]),
                          ("validation", [("3", "Closing [something]")])):
        path = tmp_path / f"something-something-v2-{name}.json"
        path.write_text(json.dumps([{"id": i, "label": t, "template": t, "placeholders": ["box"]}
                                    for i, t in entries]))
        args += ["--annotations", str(path)]
    return args


def _part(path: Path, videos: dict[str, int]) -> Path:
    path.write_text(json.dumps({vid: [
        {"name": f"{vid}/{n:04d}.jpg", "labels": [
            {"box2d": {"x1": 1.5, "y1": 2, "x2": 30.25, "y2": 40}, "category": "box",
             "standard_category": "0000", "gt_annotation": "object 0"}]}
        for n in range(1, count + 1, 2)] for vid, count in videos.items()}))
    return path


def test_index_manifest_and_check_through_the_cli(tmp_path):
    parts = [_part(tmp_path / "part1.json", {"1": 9, "3": 4}), _part(tmp_path / "part2.json",
                                                                     {"77": 2})]
    boxes = [a for p in parts for a in ("--boxes", str(p))]
    runner = CliRunner()
    result = runner.invoke(app, ["manifest", "ssv2", *_ssv2(tmp_path), *boxes,
                                 "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "boxes: 3 videos in" in result.output and "indexed" in result.output
    store = tmp_path / "m" / "boxes.h5"
    meta, samples = read_all(tmp_path / "m")
    det = {s.sample_id: s.media.get("detection") for s in samples}
    assert det["1"]["path"] == str(store) and (det["1"]["n_frames"], det["1"]["frame_stride"]) \
        == (5, 2)
    assert det["2"] is None and det["3"]["n_frames"] == 2
    assert meta.command.endswith(f"--boxes {parts[0]} --boxes {parts[1]} --out {tmp_path / 'm'}")

    again = runner.invoke(app, ["manifest", "ssv2", *_ssv2(tmp_path), *boxes,
                                "--out", str(tmp_path / "m")])
    assert again.exit_code == 0 and "up to date, not rebuilt" in again.output, again.output

    check = runner.invoke(app, ["manifest", "check", str(tmp_path / "m")])
    assert check.exit_code == 0, check.output
    rows = list(csv.DictReader(open(tmp_path / "m" / "media_problems.csv")))
    assert rows and {r["modality"] for r in rows} == {"video", "flow"}  # boxes all found

    own = tmp_path / "shared" / "se.h5"
    result = runner.invoke(app, ["boxes", "index", *map(str, parts), "--out", str(own)])
    assert result.exit_code == 0 and "boxes: 3 videos in" in result.output, result.output
    result = runner.invoke(app, ["manifest", "ssv2", *_ssv2(tmp_path), "--boxes", str(own),
                                 "--out", str(tmp_path / "m2")])
    assert result.exit_code == 0, result.output
    _, samples = read_all(tmp_path / "m2")
    assert samples[0].media["detection"]["path"] == str(own)
    assert not (tmp_path / "m2" / "boxes.h5").exists()
    assert BoxStore(own).raw("77") == json.loads(parts[1].read_text())["77"]


def test_truncated_box_file_is_one_red_line_and_exit_2(tmp_path):
    part = _part(tmp_path / "part1.json", {"1": 9, "3": 4})
    part.write_text(part.read_text()[:-40])
    mmkd = Path(sys.executable).with_name("mmkd")
    proc = subprocess.run([str(mmkd), "manifest", "ssv2", *_ssv2(tmp_path), "--boxes", str(part),
                           "--out", str(tmp_path / "m")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "1000"})
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert err[0].startswith(f"error: {part}: not valid JSON near byte ")
    assert err[0].endswith("the file is truncated or damaged: re-download it")
    assert not (tmp_path / "m" / "boxes.h5").exists()
