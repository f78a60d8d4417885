"""Stand-in clips for the custom route: balanced labels, unseen speakers in test, deterministic
media whose signals are where the docstring says."""

import csv

import numpy as np
import pytest

from mmkd.demo import signal_clips as sc
from mmkd.errors import MmkdError


def test_plan_is_balanced_and_test_speakers_are_unseen():
    plans = sc.plan_clips(100, 0)
    assert np.bincount([p.noun for p in plans]).tolist() == [10] * 10
    assert np.bincount([p.verb for p in plans]).tolist() == [20] * 5
    assert {p.speaker for p in plans if p.split == "test"} == {8, 9}
    seen = [p for p in plans if p.split != "test"]
    assert sum(p.split == "val" for p in seen) == 16 and {p.split for p in seen} == {"train", "val"}


def test_boxes_follow_the_motion_and_audio_names_the_digit():
    rise = next(p for p in sc.plan_clips(50, 0) if sc.VERBS[p.verb] == "rise")
    frames, det = sc.render_clip(rise, 0)
    assert frames.shape == (16, sc.SIZE, sc.SIZE, 3) and frames.dtype == np.uint8
    digit_y = [f["labels"][0]["box2d"]["y1"] for f in det]
    assert digit_y[-1] < digit_y[0] - 20  # rises by about a third of the frame
    # same digit, other speakers: spectra alike; another digit: unlike
    a, b = (sc.ClipPlan(i, i % 8, "train", 0, 3) for i in (0, 1))
    c = sc.ClipPlan(2, 2, "train", 0, 7)

    def spectrum(p):
        s = np.abs(np.fft.rfft(sc.speak(p, 0)))[:8000]
        return s.reshape(80, 100).sum(1) / s.sum()

    same, other = spectrum(a) @ spectrum(b), spectrum(a) @ spectrum(c)
    assert same > other


def test_generate_writes_the_custom_format_deterministically(tmp_path):
    first = sc.generate(tmp_path / "a", 10, seed=3)
    second = sc.generate(tmp_path / "b", 10, seed=3)
    assert first.read_text() == second.read_text()
    with open(first) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and set(sc.CSV_HEADER) <= set(rows[0])
    assert (tmp_path / "a" / rows[0]["video"]).is_file()
    assert (tmp_path / "a" / "media" / "clip00000.wav").read_bytes() == \
        (tmp_path / "b" / "media" / "clip00000.wav").read_bytes()
    with pytest.raises(MmkdError, match="--force"):
        sc.generate(tmp_path / "a", 10)
    sc.generate(tmp_path / "a", 12, overwrite=True)
    (tmp_path / "a" / "mine.txt").write_text("x")
    with pytest.raises(MmkdError, match="mine.txt"):
        sc.generate(tmp_path / "a", 10, overwrite=True)
