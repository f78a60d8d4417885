"""Stage-3 train-time augmentation: shapes kept, seeded, and physically right (flow flips)."""

import numpy as np
import torch

from mmkd.extract.augment import jitter_boxes, random_resized_crop
from mmkd.train.augment import Augment, resolve_hflip, sample_rng, side_classes


def test_constant_flow_keeps_magnitude_and_flips_sign_of_u():
    frames = torch.zeros(3, 4, 16, 16)
    frames[0], frames[1] = 0.5, 0.2  # u, v; third channel 0
    aug = Augment("flow", "frames")
    signs = set()
    for i in range(20):
        out = aug({"frames": frames}, sample_rng(0, 0, i))["frames"]
        assert out.shape == frames.shape
        assert torch.allclose(out[0].abs(), torch.full_like(out[0], 0.5))
        assert torch.allclose(out[1], torch.full_like(out[1], 0.2))
        signs.add(float(out[0, 0, 0, 0].sign()))
    assert signs == {1.0, -1.0}
    no_flip = Augment("flow", "frames", flip=False)
    assert all(float(no_flip({"frames": frames}, sample_rng(0, 0, i))["frames"][0].min()) > 0
               for i in range(20))


def test_video_crop_is_one_box_for_all_frames_and_seeded():
    x = torch.arange(16.0).view(1, 1, 1, 16).expand(3, 5, 16, 16).contiguous()
    a = random_resized_crop(x, np.random.default_rng(3))
    b = random_resized_crop(x, np.random.default_rng(3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert torch.allclose(a[:, 0], a[:, 4])  # the same crop on every frame
    aug = Augment("video", "frames")
    one = aug({"frames": x}, sample_rng(1, 2, 7))["frames"]
    assert torch.equal(one, aug({"frames": x}, sample_rng(1, 2, 7))["frames"])
    assert not torch.equal(one, aug({"frames": x}, sample_rng(1, 3, 7))["frames"])  # next epoch


def test_fbank_masks_are_bounded_bands():
    fbank = torch.ones(100, 40)
    for i in range(10):
        out = Augment("audio", "fbank")({"fbank": fbank}, sample_rng(0, 0, i))["fbank"]
        zero_cols = (out == 0).all(0)  # masked mel bins (every frame)
        zero_rows = (out == 0).all(1)  # masked frames (every bin)
        assert int(zero_cols.sum()) <= 8 and int(zero_rows.sum()) <= 20
        masked = (out == 0) & ~zero_cols[None, :] & ~zero_rows[:, None]
        assert not masked.any()  # nothing else changed (a roll of ones is ones)


def test_mel_windows_get_the_same_masks_on_every_window():
    x = torch.ones(3, 4, 32, 32)
    out = Augment("audio", "mel_windows")({"frames": x}, sample_rng(0, 0, 5))["frames"]
    assert torch.equal(out[:, 0], out[:, 3]) and out.shape == x.shape


def test_box_jitter_moves_real_boxes_only_and_keeps_them_valid():
    cls, box, pad = [0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.4, 0.5], [0.0, 0.0, 0.0, 0.0]
    boxes = torch.tensor([[cls, box, pad]]).repeat(6, 1, 1)
    cats = torch.tensor([[3, 2, 0]]).repeat(6, 1)  # [CLS] slot, an object, padding
    out = jitter_boxes(boxes, cats, np.random.default_rng(0))
    assert torch.equal(out[:, 0], boxes[:, 0]) and torch.equal(out[:, 2], boxes[:, 2])
    assert not torch.equal(out[:, 1], boxes[:, 1])
    assert (out[:, 1, 0] <= out[:, 1, 2]).all() and (out[:, 1, 1] <= out[:, 1, 3]).all()
    assert out.min() >= 0 and out.max() <= 1 and (out - boxes).abs().max() < 0.15
    types = torch.tensor([2] * 5 + [4])
    res = Augment("detection", "layout")({"boxes": boxes, "categories": cats,
                                          "frame_types": types}, sample_rng(0, 0, 0))
    assert torch.equal(res["categories"], cats) and torch.equal(res["frame_types"], types)


def test_flips_are_off_unless_they_keep_the_labels_true():
    verbs = {"verb": ["take", "put", "open"], "noun": ["leftover", "knife", "upright"]}
    assert resolve_hflip(None, "epic100", verbs)  # "leftover", "upright" name no side
    for dataset in ("ssv2", "demo", "custom"):
        assert not resolve_hflip(None, dataset, verbs)
    for side in ("move_left", "Pushing something from right to left", "turn-right",
                 "roll leftwards"):
        with_side = {**verbs, "verb": [*verbs["verb"], side]}
        assert side_classes(with_side) == [side]
        assert not resolve_hflip(None, "epic100", with_side)
    assert resolve_hflip(True, "custom", {"verb": ["move_left"]})  # the setting wins
    assert not resolve_hflip(False, "epic100", verbs)
