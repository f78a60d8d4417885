"""`mmkd flow` end to end on generated media: manifest (EPIC layout), resumption, a broken video,
the process pool, Dask, RAFT's plumbing, and user errors."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from typer.testing import CliRunner

from mmkd.cli.app import app
from mmkd.datasets.manifest import ManifestMeta, Sample, read_all, resolve, write_manifest
from mmkd.errors import MmkdError
from mmkd.flow import io
from mmkd.flow.synthetic import translating_frames, write_video

runner = CliRunner()
STEP_PX = (2.0, 1.0)


def _manifest(tmp_path: Path, broken: bool) -> Path:
    media = tmp_path / "media"
    rgb = media / "P01" / "rgb_frames" / "P01_01"
    rgb.mkdir(parents=True)
    for i, f in enumerate(translating_frames(7, 64, 96, STEP_PX, seed=1), 1):
        cv2.imwrite(str(rgb / f"frame_{i:010d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (media / "P02").mkdir()
    write_video(media / "P02" / "P02_101.mp4", translating_frames(5, 64, 96, STEP_PX, seed=2))
    (media / "P03").mkdir()
    (media / "P03" / "P03_01.mp4").write_bytes(b"\x00not a video")

    def sample(vid, media_):
        return Sample(sample_id=f"{vid}_0", video_id=vid, split="val", labels={"verb": 0},
                        participant=vid[:3], media=media_)

    samples = [sample("P01_01", {"rgb": {"dir": "P01/rgb_frames/P01_01"}}),
               sample("P02_101", {"video": {"path": "P02/P02_101.mp4"}})]
    if broken:
        samples.append(sample("P03_01", {"video": {"path": "P03/P03_01.mp4"}}))
    meta = ManifestMeta(dataset="custom", heads={"verb": 1}, media_root=str(media))
    return write_manifest(tmp_path / "manifest", meta, {"val": samples})


def _count(d: Path) -> int:
    return len(list(d.glob("frame_*")))


def test_manifest_epic_layout_resume_and_broken_video(tmp_path):
    manifest = _manifest(tmp_path, broken=True)
    out = tmp_path / "flow"
    args = ["flow", "--manifest", str(manifest / "val.jsonl"), "--out", str(out), "--method", "dis",
            "--stride", "2", "--workers", "2", "--raw", "flo"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output  # one video failed; the others were written
    assert "2 done" in res.output and "1 failed" in res.output and "P03_01" in res.output
    p01 = out / "P01" / "flow_frames" / "P01_01"
    p02 = out / "P02" / "flow_frames" / "P02_101"
    assert _count(p01 / "u") == _count(p01 / "v") == _count(p01 / "raw") == (7 - 1) // 2
    assert _count(p02 / "u") == (5 - 1) // 2
    assert not (out / "P03" / "flow_frames" / "P03_01").exists()
    flow = io.read_flo(p01 / "raw" / "frame_0000000002.flo")[8:-8, 8:-8]  # frames 3 -> 5
    assert abs(np.median(flow[..., 0]) - 2 * STEP_PX[0]) < 0.3
    levels = io.read_flow_jpegs(p01, 2)
    assert abs(np.median(levels[..., 0].astype(float)) - (128 + 4.0 * 255 / 40)) <= 2

    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "2 skipped" in again.output and "0 done" in again.output


def test_dask_local_and_single_video(tmp_path):
    manifest = _manifest(tmp_path, broken=False)
    res = runner.invoke(app, ["flow", "--manifest", str(manifest), "--out", str(tmp_path / "d"),
                              "--method", "dis", "--dask", "local", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert _count(tmp_path / "d" / "P02" / "flow_frames" / "P02_101" / "u") == 4
    video = tmp_path / "media" / "P02" / "P02_101.mp4"
    res = runner.invoke(app, ["flow", "--video", str(video), "--out", str(tmp_path / "one"),
                              "--method", "tvl1", "--height", "32"])
    assert res.exit_code == 0, res.output
    assert _count(tmp_path / "one" / "u") == 4
    assert cv2.imread(str(tmp_path / "one" / "v" / "frame_0000000004.jpg"), 0).shape == (32, 48)


def test_raft_plumbing_writes_quantized_and_raw(tmp_path):
    video = tmp_path / "clip.mp4"
    write_video(video, translating_frames(6, 40, 56, STEP_PX))
    out = tmp_path / "raft"
    res = runner.invoke(app, ["flow", "--video", str(video), "--out", str(out), "--method", "raft",
                              "--raft-model", "small", "--random-init", "--batch-size", "2",
                              "--device", "cpu", "--raw", "npy"])
    assert res.exit_code == 0, res.output
    assert _count(out / "u") == _count(out / "v") == 5
    raw = np.load(out / "raw" / "frame_0000000005.npy")
    assert raw.shape == (40, 56, 2) and np.isfinite(raw).all()
    assert io.read_flow_jpegs(out, 5).shape == (40, 56, 2)


def test_user_errors(tmp_path):
    res = runner.invoke(app, ["flow", "--out", str(tmp_path / "x")])
    assert isinstance(res.exception, MmkdError) and "exactly one of" in str(res.exception)
    res = runner.invoke(app, ["flow", "--frames", str(tmp_path), "--out", str(tmp_path / "x"),
                              "--stride", "0"])
    assert isinstance(res.exception, MmkdError) and "--stride" in str(res.exception)
    res = runner.invoke(app, ["flow", "--video", str(tmp_path / "v.mp4"), "--out",
                              str(tmp_path / "y"), "--method", "raft"])
    assert isinstance(res.exception, MmkdError) and "needs local weights" in str(res.exception)
    proc = subprocess.run([str(Path(sys.executable).with_name("mmkd")), "flow", "--video",
                           str(tmp_path / "v.mp4"), "--out", str(tmp_path / "y"),
                           "--method", "raft", "--weights", str(tmp_path / "absent.pth")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "absent.pth: file not found" in " ".join(proc.stderr.split())


def test_manifest_gets_the_flow_written_back(tmp_path):
    """After `mmkd flow --manifest`, each sample of a video whose flow is complete points at it
    (the broken video's sample does not), so the media check and extraction find it."""
    from mmkd.datasets.media_check import check_media

    manifest = _manifest(tmp_path, broken=True)
    before = (manifest / "val.jsonl").read_text()
    args = ["flow", "--manifest", str(manifest), "--out", str(tmp_path / "flow"), "--method",
            "dis", "--stride", "2"]
    kept = runner.invoke(app, [*args, "--no-write-manifest"])
    assert kept.exit_code == 1 and (manifest / "val.jsonl").read_text() == before
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "media.flow set on 2 sample(s)" in " ".join(res.output.split())
    meta, samples = read_all(manifest)
    flow = {s.video_id: s.media.get("flow") for s in samples}
    assert flow["P03_01"] is None
    assert flow["P01_01"] == {"dir": str(tmp_path / "flow" / "P01" / "flow_frames" / "P01_01"),
                              "template": "frame_%010d.jpg", "stride": 2}
    assert resolve(meta, flow["P02_101"]["dir"], manifest) == \
        tmp_path / "flow" / "P02" / "flow_frames" / "P02_101"
    ok = [dataclasses.replace(s, media={"flow": s.media["flow"]}) for s in samples
          if s.video_id != "P03_01"]
    assert check_media(meta, ok, manifest) == []
    assert not list(manifest.glob(".*tmp*"))  # written aside, renamed onto place
