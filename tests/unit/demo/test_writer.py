"""Same seed and scale, same dataset: media are identical whichever process renders them."""

import json

import av
import numpy as np

from mmkd.demo.plan import make_plan
from mmkd.demo.scene import VideoScene
from mmkd.demo.writer import media_paths, write_video


def _decoded(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def test_a_video_rendered_again_in_this_process_is_identical(demo_tiny, tmp_path):
    """The fixture rendered P01_02 in a worker process; re-render it inline and compare."""
    plan = make_plan("tiny", 0)
    video = next(v for v in plan.videos if v.video_id == "P01_02")
    result = write_video(tmp_path, video, plan.styles()["P01"], 0)
    ours, theirs = media_paths(tmp_path, video), media_paths(demo_tiny / "media", video)
    for key in ("rgb", "flow"):
        files = sorted(p.relative_to(ours[key]) for p in ours[key].rglob("*.jpg"))
        assert files == sorted(p.relative_to(theirs[key]) for p in theirs[key].rglob("*.jpg"))
        for rel in files[::37]:
            assert (ours[key] / rel).read_bytes() == (theirs[key] / rel).read_bytes()
    assert ours["wav"].read_bytes() == theirs["wav"].read_bytes()
    np.testing.assert_array_equal(_decoded(ours["video"]), _decoded(theirs["video"]))
    stored = json.loads((demo_tiny / "media" / "detections.json").read_text())["P01_02"]
    assert result.detections == stored


def test_another_seed_gives_other_pictures():
    frames = []
    for seed in (0, 1):
        plan = make_plan("tiny", seed)
        video = next(v for v in plan.videos if v.video_id == "P18_01")
        frames.append(next(VideoScene(video, plan.styles()["P18"], seed).frames()).rgb)
    assert np.abs(frames[0].astype(int) - frames[1]).mean() > 5
