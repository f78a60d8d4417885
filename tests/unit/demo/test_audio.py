"""The demo soundtrack's building blocks."""

import numpy as np

from mmkd.demo.audio import band_noise, fast_len, synth_audio
from mmkd.demo.plan import make_plan


def _smooth(m: int) -> bool:
    for p in (2, 3, 5):
        while m % p == 0:
            m //= p
    return m == 1


def test_fast_len_is_the_smallest_5_smooth_length():
    for n in [*range(1, 400), 48_001, 1_835_123]:
        f = fast_len(n)
        assert f >= n and _smooth(f)
        assert not any(_smooth(k) for k in range(n, f))


def test_band_noise_sits_in_its_band(rng):
    x = band_noise(rng, 24_001, 3000.0, 400.0)
    assert len(x) == 24_001 and abs(np.sqrt(np.mean(x**2)) - 1) < 1e-6
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 24_000)
    assert power[(f > 2600) & (f < 3400)].sum() > 0.95 * power.sum()


def test_soundtrack_length_range_and_actions_louder_than_gaps():
    plan = make_plan("tiny", 0)
    video = plan.videos[1]
    a = synth_audio(video, plan.styles()[video.participant], 0)
    assert a.dtype == np.float32 and len(a) == round(video.n_frames / video.fps * 24_000)
    assert np.abs(a).max() <= 1
    inside = np.concatenate([a[s.start_cs * 240 : s.stop_cs * 240] for s in video.segments])
    gaps = np.concatenate(
        [
            a[s.stop_cs * 240 : t.start_cs * 240]
            for s, t in zip(video.segments, video.segments[1:], strict=False)
        ]
    )
    assert np.sqrt(np.mean(inside**2)) > 1.3 * np.sqrt(np.mean(gaps**2))
