"""Readers on real media written by the test: mp4 (decord + PyAV), JPEG folders, wav/HDF5, boxes."""

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import extract_media as em
from mmkd.extract.readers import audio, detection, flow, video
from mmkd.extract.sampling import ClipSampler, MediaError

FPS = 30
SAMPLER = ClipSampler(8, 2, "k400")


def seg(a, b, media=None):
    return em.sample("s", "v", a, b, FPS, media or {})


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> Path:
    return em.write_mp4(tmp_path_factory.mktemp("v") / "a.mp4", 90, FPS)


def test_video_decord_pyav_and_frames_agree(mp4, tmp_path):
    s = seg(0.2, 1.4)
    clip, frames = video.read_video_file(mp4, s, SAMPLER)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    _, via_av = video._read_pyav(mp4, s, SAMPLER)
    np.testing.assert_array_equal(frames, via_av)
    folder = em.write_rgb_frames(tmp_path / "rgb", 90)
    clip2, jpeg = video.read_rgb_folder(folder, em.TEMPLATE, s, SAMPLER)
    assert np.array_equal(clip.rgb_idx, clip2.rgb_idx)
    # same frames up to H.264 + JPEG compression (a wrong frame index is off by far more)
    assert np.abs(frames.astype(int) - jpeg.astype(int)).mean() < 10
    wrong = [em.frame_rgb(i + 6) for i in clip.rgb_idx]
    assert np.abs(frames.astype(int) - np.stack(wrong).astype(int)).mean() > 15


def test_truncated_mp4_is_a_media_error(mp4, tmp_path):
    data = mp4.read_bytes()
    bad = tmp_path / "trunc.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="trunc.mp4"):
        video.read_video_file(bad, seg(0.2, 1.4), SAMPLER)


def test_too_short_and_missing_video(mp4, tmp_path):
    with pytest.raises(MediaError, match="too short"):
        video.read_video_file(mp4, seg(2.5, 3.9), SAMPLER)
    with pytest.raises(MediaError, match="not found"):
        video.read_video_file(tmp_path / "nope.mp4", seg(0.2, 1.4), SAMPLER)


@pytest.mark.parametrize("ext", sorted(em.CONTAINERS))
def test_containers_give_the_clip_frames_and_its_audio(tmp_path, ext):
    path = em.write_av(tmp_path / f"a.{ext}", 36, fps=12)
    s = em.sample("s", "v", 0.5, 2.5, 12, {})
    clip, frames = video.read_video_file(path, s, SAMPLER)
    # frame_rgb(i) has green level 7·i: each decoded frame is the one shown at its clip time
    want = (np.rint(clip.times_s * 12).astype(int) * 7) % 256
    assert np.abs(frames[..., 1].mean(axis=(1, 2)) - want).max() < 3.5  # frames are 7 apart
    if ext == "webm":  # no duration in the header: decord refuses it, PyAV read the frames
        with pytest.raises(Exception, match="broken metadata"):
            video._read_decord(path, s, SAMPLER)
    clip, src = audio.open_clip(path, {}, s, SAMPLER)
    assert src.rate == 48000 and abs(src.duration_s - 3.0) < 0.05
    fb = audio.fbank_clip(clip, src, 16000, 64, 10.0, 100)
    assert fb.shape == (100, 64) and len(set(fb.argmax(dim=1).tolist())) == 1  # the 440 Hz tone


def test_flow_dequantized_uv0_and_missing_frame(tmp_path):
    folder = em.write_flow_frames(tmp_path / "flow", 44, u_px=4.0, v_px=-2.0)
    clip, x = flow.read_flow_folder(folder, em.TEMPLATE, 2, seg(0.2, 1.4), SAMPLER, 36, 32)
    assert x.shape == (8, 32, 32, 3)
    # pixels / 20 px: u = 4 px -> 0.2, v = -2 px -> -0.1 (to one grey level, 40/255 px)
    assert abs(x[..., 0].mean() - 0.2) < 0.01 and abs(x[..., 1].mean() + 0.1) < 0.01
    assert np.all(x[..., 2] == 0)
    missing = clip.flow_idx(2)[3]
    (folder / "v" / (em.TEMPLATE % missing)).unlink()
    with pytest.raises(MediaError, match="missing or unreadable frame"):
        flow.read_flow_folder(folder, em.TEMPLATE, 2, seg(0.2, 1.4), SAMPLER, 36, 32)


def test_wav_and_hdf5_give_the_same_spectrogram(tmp_path):
    noise = np.random.default_rng(0).normal(0, 0.05, 72000).astype(np.float32)
    wave = em.tone(3.0, 24000, 500) + noise  # energy in every mel bin: log-mel is stable
    wav = em.write_wav(tmp_path / "a.wav", wave, 24000)
    h5 = em.write_hdf5(tmp_path / "a.hdf5", {"P01_01": np.round(wave * 32767) / 32767})
    s = seg(0.5, 1.5)
    c1, src1 = audio.open_clip(wav, {}, s, SAMPLER)
    c2, src2 = audio.open_clip(h5, {"key": "P01_01", "sample_rate": 24000}, s, SAMPLER)
    assert src1.rate == src2.rate == 24000 and src1.n == src2.n == 72000
    a = audio.fbank_clip(c1, src1, 16000, 64, 10.0, 100)
    b = audio.fbank_clip(c2, src2, 16000, 64, 10.0, 100)
    assert a.shape == (100, 64)
    torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)
    # a 500 Hz tone: the loudest mel bin is the same in every frame
    assert len(set(a.argmax(dim=1).tolist())) == 1
    win = audio.mel_windows(c1, src1, 24000, 32, 10.0, 0.5, 24)
    assert win.shape == (8, 24, 24) and torch.isfinite(win).all()


def test_hdf5_slice_is_by_timestamp(tmp_path):
    rate = 24000
    x = np.zeros(rate * 4, np.float32)
    x[round(1.0 * rate):round(1.5 * rate)] = 1.0
    h5 = em.write_hdf5(tmp_path / "a.hdf5", {"P01_01": x})
    src = audio.AudioSource(h5, {"key": "P01_01", "sample_rate": rate})
    got = src.read(0.9, 1.6)
    assert got.shape == (round(0.7 * rate),)
    assert got[: round(0.1 * rate)].max() == 0 and got[round(0.1 * rate):round(0.6 * rate)].min() == 1
    assert np.all(src.read(3.9, 4.2)[round(0.1 * rate):] == 0)  # past the end: silence


def test_empty_wav_missing_key_and_too_short(tmp_path):
    empty = em.write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(MediaError, match="no audio samples"):
        audio.open_clip(empty, {}, seg(0.2, 1.4), SAMPLER)
    h5 = em.write_hdf5(tmp_path / "a.hdf5", {"P01_01": em.tone(1.0, 24000)})
    with pytest.raises(MediaError, match="no dataset"):
        audio.open_clip(h5, {"key": "P09_09"}, seg(0.2, 0.8), SAMPLER)
    with pytest.raises(MediaError, match="too short"):
        audio.open_clip(h5, {"key": "P01_01"}, seg(1.5, 2.5), SAMPLER)


def test_boxes_normalised_categories_and_padding(tmp_path):
    path = em.write_boxes(tmp_path / "boxes.json", {"P01_01": 90})
    media = {"key": "P01_01", "width": 64, "height": 48}
    vocab = detection.VOCABULARIES["something_else"]
    clip, x = detection.read_layout(path, media, seg(0.2, 1.4), SAMPLER, 3, vocab)
    boxes, cats = x["boxes"], x["categories"]
    assert boxes.shape == (9, 4, 4) and cats.shape == (9, 4) and "scores" not in x
    hand, obj, cls = (vocab.categories.index(c) for c in ("hand", "object", "cls"))
    assert np.all(cats[:, 0] == cls) and np.all(boxes[:, 0] == [0, 0, 1, 1])  # [CLS] slot
    assert np.all(cats[:8, 1] == hand) and np.all(cats[:8, 2] == obj)  # hands first
    assert np.all(cats[:, 3] == detection.PAD) and np.all(boxes[:, 3] == 0)
    assert np.all(cats[8, 1:] == detection.PAD)  # the extract frame holds only [CLS]
    assert x["frame_types"].tolist() == [vocab.frame_types["regular"]] * 8 + [
        vocab.frame_types["extract"]]
    assert boxes.min() >= 0 and boxes.max() <= 1
    # object box x1 = frame number (mod 44) px, normalised by the 64 px width
    expect = (np.floor(clip.times_s * FPS).astype(int) + 1) % 44 / 64
    np.testing.assert_allclose(boxes[:8, 2, 0], expect, atol=1e-6)
    with pytest.raises(MediaError, match="no boxes"):
        detection.read_layout(path, {**media, "key": "P02_01"}, seg(0.2, 1.4), SAMPLER, 3, vocab)


def test_boxes_from_the_store_equal_the_json(tmp_path):
    from mmkd.datasets.box_store import index_boxes

    vocab = detection.VOCABULARIES["something_else"]
    path = em.write_boxes(tmp_path / "boxes.json", {"P01_01": 90, "P01_02": 40})
    store = index_boxes([path], tmp_path / "boxes.h5").path
    media = {"key": "P01_01", "width": 64, "height": 48}
    for s in (seg(0.2, 1.4), seg(1.0, 2.9)):
        from_json = detection.read_layout(path, media, s, SAMPLER, max_objects=3, vocab=vocab)
        from_store = detection.read_layout(store, media, s, SAMPLER, max_objects=3, vocab=vocab)
        np.testing.assert_array_equal(from_store[0].times_s, from_json[0].times_s)
        assert from_store[1].keys() == from_json[1].keys()
        for k in from_json[1]:
            np.testing.assert_array_equal(from_store[1][k], from_json[1][k])
    with pytest.raises(MediaError, match="boxes.h5: no boxes for video 'P02_01'"):
        detection.read_layout(store, {**media, "key": "P02_01"}, seg(0.2, 1.4), SAMPLER, 3, vocab)


def test_fix_box_follows_the_official_rules():
    assert detection.fix_box((10.7, 5.2, 3.9, 30.0), 64, 48) == [3, 5, 10, 30]  # int, ordered
    assert detection.fix_box((-3, -2, 80.0, 60.0), 64, 48) == [0, 0, 63, 47]  # inside
    assert detection.fix_box((0.4, 0.0, 0.2, 0.9), 64, 48) == [0, 0, 1, 1]  # at least 1 px
    assert detection.fix_box((70, 20, 90, 20.5), 64, 48) == [62, 19, 63, 20]
