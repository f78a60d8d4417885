"""`--check-media`: one row per missing or unreadable (sample, modality), never an exception."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import extract_media as em
from helpers.epic_csv import write_epic
from mmkd.datasets import epic100
from mmkd.datasets.manifest import ManifestMeta, Sample, media_path, read_all
from mmkd.datasets.media_check import check_media

JPEG = b"\xff\xd8\xff\xe0"  # what the check reads of a frame: the JPEG signature


def _touch(path, data: bytes = JPEG):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)




def test_epic_media_rows(tmp_path):
    ann = write_epic(tmp_path / "ann")
    root = tmp_path / "media"
    root.mkdir()
    with h5py.File(root / "EPIC_audio.hdf5", "w") as f:
        f.create_dataset("P01_01", data=np.zeros(4, np.float32))
    report = epic100.build_epic100(ann, root, tmp_path / "m", check_media=True)
    assert len(report.media_problems) == 45 * 4 - 20  # nothing on disk but P01_01 audio
    assert {p.modality for p in report.media_problems} == {"video", "rgb", "flow", "audio"}
    audio = {p.sample_id: p.problem for p in report.media_problems if p.modality == "audio"}
    assert "P01_01_0" not in audio and audio["P01_101_0"] == "no dataset 'P01_101' in the HDF5 file"

    meta, samples = read_all(tmp_path / "m")
    s = next(s for s in samples if s.sample_id == "P01_01_3")  # 6.0–7.5 s: RGB 360..450
    em.write_mp4(root / "P01/videos/P01_01.MP4", 2)
    for idx in range(360, 451):
        _touch(root / f"P01/rgb_frames/P01_01/frame_{idx:010d}.jpg")
    for d in "uv":  # flow frame of RGB r = (r - 1) // 2 + 1; last checked RGB frame 448
        for idx in range(180, 225):
            _touch(root / f"P01/flow_frames/P01_01/{d}/frame_{idx:010d}.jpg")
    assert check_media(meta, [s], tmp_path / "m") == []
    (root / "P01/flow_frames/P01_01/v/frame_0000000224.jpg").unlink()
    (root / "P01/rgb_frames/P01_01/frame_0000000450.jpg").unlink()
    rows = check_media(meta, [s], tmp_path / "m")
    assert [(r.modality, r.problem) for r in rows] == [("rgb", "frame 450 missing"),
                                                       ("flow", "frame 224 missing")]
    assert rows[1].path == str(root / "P01/flow_frames/P01_01/v/frame_0000000224.jpg")


def test_detection_and_progress(tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"7": [{"name": "7/0001.jpg", "labels": []}]}))
    meta = ManifestMeta("x", {"action": 2}, media_root=str(tmp_path))
    rel = media_path(boxes, tmp_path)
    samples = [Sample(k, k, "val", {"action": 0}, media={"detection": {"path": rel, "key": k}})
               for k in ("7", "8")]
    seen = []
    rows = check_media(meta, samples, progress=seen.append)
    assert [(r.sample_id, r.problem) for r in rows] == [("8", "no boxes for '8'")]
    assert seen == [1, 1]


@pytest.fixture(scope="module")
def real_media(tmp_path_factory) -> Path:
    return em.build_dataset(tmp_path_factory.mktemp("data"), n_videos=2)


def test_unreadable_media_is_reported_before_extraction(real_media, tmp_path):
    """The faults extraction fails on (tests/unit/extract/test_runner.py), found by opening
    each file's header: nothing is reported on intact media."""
    shutil.copytree(real_media.parent, tmp_path / "d")
    manifest = tmp_path / "d" / "manifest"
    meta, samples = read_all(manifest)
    assert check_media(meta, samples, manifest) == []
    media = tmp_path / "d" / "media" / "P01"
    (media / "audio" / "P01_02.wav").write_bytes(b"")  # zero-byte wav
    (media / "flow_frames" / "P01_02" / "u" / (em.TEMPLATE % 9)).unlink()  # inside 4..20
    mp4 = media / "videos" / "P01_01.mp4"
    mp4.write_bytes(mp4.read_bytes()[:2000])  # truncated container
    (media / "rgb_frames" / "P01_01" / (em.TEMPLATE % 46)).write_bytes(b"")  # P01_01_1's first
    em.write_wav(media / "audio" / "P01_01.wav", np.zeros(0, np.float32), 16000)  # no samples
    rows = {(r.sample_id, r.modality): r.problem for r in check_media(meta, samples, manifest)}
    video = [rows.pop((sid, "video"), "") for sid in ("P01_01_0", "P01_01_1")]
    assert all(v.startswith("cannot open the container") for v in video)
    assert rows == {
        ("P01_01_1", "rgb"): "frame 46 is empty (0 bytes)",
        ("P01_01_0", "audio"): "no audio samples", ("P01_01_1", "audio"): "no audio samples",
        ("P01_02_0", "audio"): "empty file (0 bytes)",
        ("P01_02_1", "audio"): "empty file (0 bytes)",
        ("P01_02_0", "flow"): "frame 9 missing"}
