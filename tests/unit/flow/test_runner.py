"""Jobs: EPIC's stride/index convention, resumption, failures, manifests, the process pool."""

import json
from pathlib import Path

import cv2
import numpy as np

from mmkd.datasets.flow_format import dequantize
from mmkd.datasets.manifest import ManifestMeta, Sample, write_manifest
from mmkd.flow import io
from mmkd.flow.methods import FlowSpec
from mmkd.flow.runner import (
    DONE_MARKER,
    FlowJob,
    FlowOptions,
    compute_job,
    count_pairs,
    plan_manifest,
    run_jobs,
    single_job,
)
from mmkd.flow.synthetic import translating_frames, write_video

DIS = FlowSpec("dis")
STEP_PX = (1.5, -1.0)  # motion per frame


def _frame_dir(path: Path, n: int, seed: int = 0) -> Path:
    path.mkdir(parents=True)
    for i, f in enumerate(translating_frames(n, 64, 96, STEP_PX, seed=seed), 1):
        cv2.imwrite(str(path / f"frame_{i:010d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 98])
    return path


def test_stride_follows_epic_convention(tmp_path):
    frames = _frame_dir(tmp_path / "rgb", 9)
    out = tmp_path / "flow"
    job = single_job(frames, "frames", out)
    reported = []
    result = compute_job(job, DIS, FlowOptions(stride=2), report=reported.append)
    assert result.status == "done" and result.pairs == 4 == (9 - 1) // 2  # EPIC's flow_n_frames
    assert count_pairs(job, 2) == 4 and sum(reported) == 4
    names = sorted(p.name for p in (out / "u").iterdir())
    assert names == [f"frame_{k:010d}.jpg" for k in range(1, 5)]  # 1-based, no gaps
    flow_HW2 = dequantize(io.read_flow_jpegs(out, 2))[8:-8, 8:-8]  # frame 3 -> frame 5
    assert abs(np.median(flow_HW2[..., 0]) - 2 * STEP_PX[0]) < 0.2
    assert abs(np.median(flow_HW2[..., 1]) - 2 * STEP_PX[1]) < 0.2
    marker = json.loads((out / DONE_MARKER).read_text())
    assert marker["stride"] == 2 and marker["flow_frames"] == 4 and marker["method"] == "dis"


def test_resume_skips_done_and_replaces_partial(tmp_path):
    frames = _frame_dir(tmp_path / "rgb", 4)
    out = tmp_path / "flow"
    partial = tmp_path / ".flow.partial"  # what a killed run leaves behind
    (partial / "u").mkdir(parents=True)
    (partial / "u" / "frame_0000000009.jpg").write_bytes(b"stale")
    out.mkdir()  # an empty --out folder is fine
    job = single_job(frames, "frames", out)
    assert compute_job(job, DIS, FlowOptions(raw="npy")).status == "done"
    assert not partial.exists() and len(list((out / "u").iterdir())) == 3
    assert len(list((out / "raw").glob("*.npy"))) == 3
    mtime = (out / "u" / "frame_0000000001.jpg").stat().st_mtime_ns
    assert compute_job(job, DIS, FlowOptions(raw="npy")).status == "skipped"
    assert (out / "u" / "frame_0000000001.jpg").stat().st_mtime_ns == mtime
    other = compute_job(job, DIS, FlowOptions(stride=2, raw="npy"))
    assert other.status == "failed" and "stride=1" in other.reason


def test_failures_are_reported_not_raised(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"garbage")
    res = compute_job(single_job(broken, "video", tmp_path / "a"), DIS, FlowOptions())
    assert res.status == "failed" and "broken.mp4" in res.reason
    assert not (tmp_path / "a").exists() and not (tmp_path / ".a.partial").exists()
    one = _frame_dir(tmp_path / "one", 1)
    res = compute_job(single_job(one, "frames", tmp_path / "b"), DIS, FlowOptions())
    assert res.status == "failed" and "at least two" in res.reason
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("user data")
    res = compute_job(single_job(one, "frames", busy), DIS, FlowOptions())
    assert res.status == "failed" and "not a finished" in res.reason


def _manifest(tmp_path: Path) -> Path:
    media = tmp_path / "media"
    _frame_dir(media / "P01" / "rgb_frames" / "P01_01", 5)
    (media / "P02" / "videos").mkdir(parents=True)
    write_video(media / "P02" / "videos" / "P02_03.mp4", translating_frames(6, 64, 96, STEP_PX))

    def sample(sid, vid, part, media_):
        return Sample(sample_id=sid, video_id=vid, split="train", labels={"verb": 0},
                        participant=part, media=media_)

    rgb = {"rgb": {"dir": "P01/rgb_frames/P01_01", "template": "frame_%010d.jpg"}}
    vid = {"video": {"path": "P02/videos/P02_03.mp4"}}
    samples = [sample("P01_01_0", "P01_01", "P01", rgb), sample("P02_03_0", "P02_03", "P02", vid),
               sample("P01_01_1", "P01_01", "P01", rgb), sample("x_0", "x", None, {})]
    meta = ManifestMeta(dataset="custom", heads={"verb": 1}, media_root="../media")
    return write_manifest(tmp_path / "manifest", meta, {"train": samples})


def test_plan_manifest_one_job_per_video(tmp_path):
    jobs, failures = plan_manifest(_manifest(tmp_path), tmp_path / "out")
    assert [j.name for j in jobs] == ["P01_01", "P02_03"]
    assert jobs[0].kind == "frames" and jobs[1].kind == "video"
    assert jobs[0].pattern == "frame_*.jpg" and jobs[1].pattern is None
    assert Path(jobs[0].out_dir) == tmp_path / "out" / "P01" / "flow_frames" / "P01_01"
    assert Path(jobs[1].source) == (tmp_path / "manifest" / ".." / "media" / "P02" / "videos"
                                    / "P02_03.mp4")
    assert [f.name for f in failures] == ["x"] and "media.video.path" in failures[0].reason


def test_process_pool_reports_every_pair(tmp_path):
    jobs = [single_job(_frame_dir(tmp_path / f"rgb{i}", 3 + i, seed=i), "frames",
                       tmp_path / f"out{i}") for i in range(2)]
    jobs.append(FlowJob("bad", str(tmp_path / "absent.mp4"), "video", str(tmp_path / "bad")))
    seen = []
    summary = run_jobs(jobs, DIS, FlowOptions(), workers=2, progress=seen.append)
    assert [r.status for r in summary.results] == ["done", "done", "failed"]
    assert sum(seen) == summary.pairs == 2 + 3
    assert "not found" in summary.results[2].reason
