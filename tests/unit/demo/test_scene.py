"""The generated media decode with the real readers and agree with the annotations (tiny scale)."""

import csv
import json
import re
import wave

import av
import cv2
import decord
import h5py
import numpy as np
import pytest

from mmkd.datasets.flow_format import dequantize
from mmkd.demo.plan import make_plan
from mmkd.demo.scene import VideoScene, flow_between

FRAME_RE = re.compile(r"^(P\d+_\d+)/frame_(\d{10})\.jpg$")


@pytest.fixture(scope="module")
def info(demo_tiny):
    return json.loads((demo_tiny / "demo.json").read_text())


def _rows(root):
    out = []
    for split in ("train", "validation"):
        with open(root / "annotations" / f"EPIC_100_{split}.csv", newline="") as fh:
            out += list(csv.DictReader(fh))
    return out


def _video_path(root, v):
    return root / "media" / v["participant"] / "videos" / f"{v['video_id']}.MP4"


def test_mp4_decodes_with_decord_and_pyav(demo_tiny, info):
    for v in info["videos"]:
        vr = decord.VideoReader(str(_video_path(demo_tiny, v)), num_threads=1)
        assert len(vr) == v["n_frames"]
        assert vr.get_avg_fps() == pytest.approx(v["fps"])
        assert vr[0].shape == (96, 128, 3)
    v = next(v for v in info["videos"] if v["fps"] == 50)
    with av.open(str(_video_path(demo_tiny, v))) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name in ("h264", "mpeg4")
        assert (stream.width, stream.height) == (128, 96) and stream.average_rate == 50
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
    assert len(frames) == v["n_frames"]
    rgb_dir = demo_tiny / "media" / v["participant"] / "rgb_frames" / v["video_id"]
    for k in (1, len(frames) // 2, len(frames)):  # mp4 frame k-1 is RGB frame k
        jpg = cv2.cvtColor(cv2.imread(str(rgb_dir / f"frame_{k:010d}.jpg")), cv2.COLOR_BGR2RGB)
        assert np.abs(frames[k - 1].astype(int) - jpg).mean() < 6


def test_frame_counts_follow_epic_formulas(demo_tiny, info):
    video_info = {}
    with open(demo_tiny / "annotations" / "EPIC_100_video_info.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            video_info[r["video_id"]] = r
    for v in info["videos"]:
        media = demo_tiny / "media" / v["participant"]
        rgb = sorted(p.name for p in (media / "rgb_frames" / v["video_id"]).iterdir())
        n = v["n_frames"]
        assert rgb == [f"frame_{k:010d}.jpg" for k in range(1, n + 1)]
        stride = 1 if len(v["video_id"].split("_")[1]) == 3 else 2
        assert v["fps"] == (50 if stride == 1 else 60)
        for comp in ("u", "v"):
            flow = sorted(p.name for p in (media / "flow_frames" / v["video_id"] / comp).iterdir())
            assert flow == [f"frame_{j:010d}.jpg" for j in range(1, (n - 1) // stride + 1)]
        assert round(float(video_info[v["video_id"]]["duration"]) * v["fps"]) == n
    for r in _rows(demo_tiny):
        n = next(v["n_frames"] for v in info["videos"] if v["video_id"] == r["video_id"])
        assert 1 <= int(r["start_frame"]) < int(r["stop_frame"]) <= n


def test_flow_jpegs_hold_the_rendered_motion(demo_tiny):
    """Re-render the start of one video: the stored flow is the scene's motion field."""
    plan = make_plan("tiny", 0)
    video = next(v for v in plan.videos if v.video_id == "P01_02")
    scene = VideoScene(video, plan.styles()["P01"], 0)
    flow_dir = demo_tiny / "media" / "P01" / "flow_frames" / "P01_02"
    states, errors, moving = {}, [], 0
    for state in scene.frames():
        states[state.index] = state
        k = state.index
        if k > 2 and (k - 1) % 2 == 0:
            j = (k - 1) // 2
            exact = flow_between(states[k - 2], state, scene.flow_noise[j % 8])
            stored = np.stack(
                [
                    dequantize(
                        cv2.imread(str(flow_dir / c / f"frame_{j:010d}.jpg"), cv2.IMREAD_GRAYSCALE)
                    )
                    for c in "uv"
                ],
                -1,
            )
            errors.append(np.abs(stored - np.clip(exact, -20, 20)).mean())
            moving += np.abs(exact).max() > 1.0
        if k >= 400:
            break
    assert np.mean(errors) < 0.2  # quantization (0.08 px) + JPEG
    assert moving > 20  # the segment really moves things


def test_flow_direction_matches_the_verb(demo_tiny):
    """Inside the object's box, take moves up (v < 0) and put moves down (v > 0)."""
    dets = json.loads((demo_tiny / "media" / "detections.json").read_text())
    mean_v = {"0": [], "1": []}
    for r in _rows(demo_tiny):
        if r["verb_class"] not in mean_v or r["video_id"] != "P01_01":
            continue
        s, e = int(r["start_frame"]), int(r["stop_frame"])
        vs = []
        for entry in dets[r["video_id"]]:
            k = int(FRAME_RE.match(entry["name"]).group(2))
            if not s + 10 <= k <= e - 10:
                continue
            for lab in entry["labels"]:
                if lab["standard_category"] == "0000":
                    b = lab["box2d"]
                    j = (k - 1) // 2 + 1
                    img = cv2.imread(
                        str(
                            demo_tiny
                            / "media"
                            / "P01"
                            / "flow_frames"
                            / "P01_01"
                            / "v"
                            / f"frame_{j:010d}.jpg"
                        ),
                        cv2.IMREAD_GRAYSCALE,
                    )
                    box = img[
                        int(b["y1"]) + 2 : int(b["y2"]) - 2, int(b["x1"]) + 2 : int(b["x2"]) - 2
                    ]
                    vs.append(dequantize(box).mean() - dequantize(img).mean())
        if vs:
            mean_v[r["verb_class"]].append(np.mean(vs))
    assert len(mean_v["0"]) >= 3 and len(mean_v["1"]) >= 3
    assert np.mean(np.array(mean_v["0"]) < 0) >= 0.75
    assert np.mean(np.array(mean_v["1"]) > 0) >= 0.75


def test_wav_and_hdf5_agree(demo_tiny, info):
    with h5py.File(demo_tiny / "media" / "EPIC_audio.hdf5", "r") as f:
        assert sorted(f.keys()) == sorted(v["video_id"] for v in info["videos"])
        assert len(f.attrs) == 0
        for v in info["videos"]:
            ds = f[v["video_id"]]
            assert ds.dtype == np.float32 and ds.ndim == 1 and len(ds.attrs) == 0
            with wave.open(
                str(demo_tiny / "media" / v["participant"] / "audio" / f"{v['video_id']}.wav"), "rb"
            ) as w:
                assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            assert len(pcm) == round(v["n_frames"] / v["fps"] * 24000) == ds.shape[0]
            np.testing.assert_array_equal(ds[:], pcm.astype(np.float32) / 32768)
            assert 0.005 < np.abs(ds[:]).mean() < 0.5


def test_detections_are_something_else_boxes(demo_tiny, info):
    dets = json.loads((demo_tiny / "media" / "detections.json").read_text())
    assert sorted(dets) == sorted(v["video_id"] for v in info["videos"])
    segments = {}
    for r in _rows(demo_tiny):
        segments.setdefault(r["video_id"], []).append(
            (int(r["start_frame"]), int(r["stop_frame"]), r["noun"])
        )
    categories = set()
    for video_id, entries in dets.items():
        v = next(v for v in info["videos"] if v["video_id"] == video_id)
        assert len(entries) > v["n_frames"] // 5 // 3
        for e in entries:
            assert set(e) == {"name", "labels", "gt_placeholders", "nr_instances"}
            m = FRAME_RE.match(e["name"])
            k = int(m.group(2))
            assert m.group(1) == video_id and 1 <= k <= v["n_frames"] and (k - 1) % 5 == 0
            assert e["nr_instances"] == len(e["labels"]) > 0
            for lab in e["labels"]:
                b = lab["box2d"]
                assert 0 <= b["x1"] < b["x2"] <= 128 and 0 <= b["y1"] < b["y2"] <= 96
                std = lab["standard_category"]
                categories.add(std)
                if std == "hand":
                    assert lab["category"] == "hand" and lab["gt_annotation"] == "object hand"
                else:
                    assert re.fullmatch(r"\d{4}", std)
                    assert lab["gt_annotation"] == f"object {int(std)}"
                    assert lab["category"] == e["gt_placeholders"][int(std)]
                    inside = [n for s, t, n in segments[video_id] if s <= k <= t]
                    assert inside and inside[0] == e["gt_placeholders"][0]
    assert categories == {"0000", "0001", "hand"}


def test_demo_json_and_readme(demo_tiny, info):
    assert info["scale"] == "tiny" and info["seed"] == 0
    assert info["resolution"] == [128, 96] and info["boxes"]["frame_stride"] == 5
    assert set(info["participants"]["unseen"]) == {"P18"}
    readme = (demo_tiny / "README.md").read_text()
    assert "mmkd demo-data --out" in readme and "--scale tiny --seed 0" in readme
