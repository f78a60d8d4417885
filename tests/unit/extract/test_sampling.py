import numpy as np
import pytest

from mmkd.datasets.manifest import Sample
from mmkd.extract.sampling import ClipSampler, MediaError


def seg(start, stop, fps=60.0, **kw):
    return Sample(sample_id="s", video_id="P01_01", split="train", labels={}, start_frame=start,
                  stop_frame=stop, fps=fps, **kw)


def test_k400_centred_contiguous_at_stride():
    clip = ClipSampler(32, 2, "k400").clip(seg(1001, 1200))
    idx = clip.rgb_idx
    assert len(idx) == 32 and np.all(np.diff(idx) == 2)
    # centred: the span's middle is the segment's middle (to one frame)
    assert abs((idx[0] + idx[-1]) / 2 - (1001 + 1200) / 2) <= 1


def test_k400_short_segment_repeats_edge_frames():
    idx = ClipSampler(32, 2, "k400").indices(10, 20)
    assert idx.min() == 10 and idx.max() == 20 and len(idx) == 32
    assert np.all(np.diff(idx) >= 0)


def test_uniform_spreads_over_segment():
    idx = ClipSampler(4, 1, "uniform").indices(1, 100)
    assert idx.tolist() == [13, 38, 63, 88]


def test_flow_stride_mapping_epic():
    clip = ClipSampler(5, 2).clip(seg(101, 200))
    assert np.array_equal(clip.flow_idx(2), (clip.rgb_idx - 1) // 2 + 1)
    assert np.array_equal(clip.flow_idx(1), clip.rgb_idx)
    # a segment ending at the video's last RGB frame has one flow frame fewer: capped
    end = ClipSampler(3, 2).clip(seg(95, 101))
    assert end.rgb_idx.max() == 100 and end.flow_idx(2).max() == (101 - 1) // 2


def test_times_and_seconds_segment():
    s = Sample(sample_id="s", video_id="v", split="train", labels={}, start_s=2.0, stop_s=3.0,
               fps=50.0)
    clip = ClipSampler(8, 2).clip(s)
    assert clip.start == 101 and clip.stop == 150
    np.testing.assert_allclose(clip.times_s, (clip.rgb_idx - 1) / 50.0)
    assert 2.0 <= clip.times_s.min() and clip.times_s.max() <= 3.0


def test_whole_video_when_no_segment():
    s = Sample(sample_id="s", video_id="v", split="train", labels={})
    clip = ClipSampler(4, 1, "uniform").clip(s, fps=12.0, n_frames=40)
    assert clip.start == 1 and clip.stop == 40 and clip.fps == 12.0
    with pytest.raises(MediaError):
        ClipSampler(4, 1).clip(s)


def test_unknown_policy():
    with pytest.raises(ValueError):
        ClipSampler(4, 1, "random")
