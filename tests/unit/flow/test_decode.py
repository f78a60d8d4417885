"""Frame sources: sorted frame folders, decord video decoding, the PyAV fallback, bad input."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmkd.flow import decode
from mmkd.flow.decode import FlowSourceError, count_frames, iter_frames
from mmkd.flow.synthetic import translating_frames, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    frames = translating_frames(7, 48, 64, (1.0, 0.5), seed=2)
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    write_video(path, frames)
    return path, frames


def test_frame_folder_sorted_and_strided(tmp_path):
    frames = translating_frames(12, 16, 24, (1.0, 0.0))
    for i, f in enumerate(frames):  # unpadded numbers: img_10 must come after img_9
        cv2.imwrite(str(tmp_path / f"img_{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "x_1.png"), np.zeros((16, 24), np.uint8))  # a flow image
    (tmp_path / "notes.txt").write_text("not a frame")
    assert count_frames(tmp_path, "frames") == 13
    assert count_frames(tmp_path, "frames", pattern="img_*") == 12
    got = np.stack(list(iter_frames(tmp_path, "frames", stride=2, pattern="img_*")))
    np.testing.assert_array_equal(got, frames[::2])  # PNG is lossless; RGB order kept
    assert decode.template_glob("frame_%010d.jpg") == "frame_*.jpg"
    with pytest.raises(FlowSourceError, match="matching y_"):
        count_frames(tmp_path, "frames", pattern="y_*")


def test_video_decord_and_pyav_agree(clip, monkeypatch):
    path, frames = clip
    assert count_frames(path, "video") == 7
    by_decord = np.stack(list(iter_frames(path, "video", stride=3)))
    assert by_decord.shape == (3, 48, 64, 3)
    assert np.abs(by_decord.astype(int) - frames[::3]).mean() < 8  # lossy H.264, 4:2:0 colour

    def no_decord(_path):
        raise RuntimeError("decord cannot open this")

    monkeypatch.setattr(decode, "_decord_reader", no_decord)
    by_pyav = np.stack(list(iter_frames(path, "video", stride=3)))
    np.testing.assert_allclose(by_pyav.astype(int), by_decord.astype(int), atol=3)
    assert count_frames(path, "video") == 7


def test_resize_to_height(clip):
    path, _ = clip
    frame = next(iter_frames(path, "video", height=24))
    assert frame.shape == (24, 32, 3)


def test_bad_sources_raise_with_the_path(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(FlowSourceError, match="broken.mp4"):
        count_frames(broken, "video")
    with pytest.raises(FlowSourceError, match="broken.mp4"):
        list(iter_frames(broken, "video"))
    with pytest.raises(FlowSourceError, match="not found"):
        list(iter_frames(tmp_path / "absent.mp4", "video"))
    with pytest.raises(FlowSourceError, match="no image files"):
        count_frames(tmp_path, "frames")
