"""Evidence design sanity: cheap per-modality features beat chance but are far from perfect.

Nearest-centroid classifiers, fitted on the tiny training split and scored on its validation
split (pruned of the validation-only nouns, as the manifest does):
- verb from the camera-compensated mean flow vector (and how much it swings),
- noun from the mean colour inside the object's box,
- noun from the audio spectrum, which must be weaker evidence than the colour.
"""

import csv
import json
import re

import cv2
import h5py
import numpy as np
import pytest

from mmkd.datasets.flow_format import dequantize


def _rows(root, split):
    with open(root / "annotations" / f"EPIC_100_{split}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _seconds(ts):
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def flow_feature(root, r):
    stride = 1 if len(r["video_id"].split("_")[1]) == 3 else 2
    d = root / "media" / r["participant_id"] / "flow_frames" / r["video_id"]
    s, e = int(r["start_frame"]), int(r["stop_frame"])
    rows = []
    for j in range((s - 1) // stride + 1, (e - 1) // stride, 3):
        u, v = (
            dequantize(cv2.imread(str(d / c / f"frame_{j:010d}.jpg"), cv2.IMREAD_GRAYSCALE))
            for c in "uv"
        )
        u, v = u - np.median(u), v - np.median(v)  # remove the camera's motion
        rows.append([u.mean(), v.mean(), np.abs(u).mean(), np.abs(v).mean()])
    rows = np.array(rows)
    return np.concatenate([rows.mean(0), rows[:, :2].std(0)])


def colour_feature(root, r, boxes):
    s, e = int(r["start_frame"]), int(r["stop_frame"])
    d = root / "media" / r["participant_id"] / "rgb_frames" / r["video_id"]
    cols = []
    for k, b in boxes[r["video_id"]]:
        if s <= k <= e and len(cols) < 3:
            img = cv2.imread(str(d / f"frame_{k:010d}.jpg"))
            cols.append(
                img[int(b["y1"]) : int(b["y2"]) + 1, int(b["x1"]) : int(b["x2"]) + 1]
                .reshape(-1, 3)
                .mean(0)
            )
    return np.mean(cols, 0) if cols else np.zeros(3)


def audio_feature(audio, r):
    a = audio[r["video_id"]][
        round(_seconds(r["start_timestamp"]) * 24000) : round(_seconds(r["stop_timestamp"]) * 24000)
    ]
    spec, f = np.abs(np.fft.rfft(a)), np.fft.rfftfreq(len(a), 1 / 24000)
    edges = [0, 200, 400, 700, 1000, 1500, 2200, 3000, 4500, 6500, 12000]
    return np.array(
        [
            np.log(spec[(f >= lo) & (f < hi)].mean() + 1e-6)
            for lo, hi in zip(edges, edges[1:], strict=False)
        ]
    )


def nearest_centroid(x_tr, y_tr, x_te, y_te) -> float:
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    classes = sorted(set(y_tr))
    centroids = np.stack([x_tr[np.array(y_tr) == c].mean(0) for c in classes])
    pred = np.array(classes)[((x_te[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
    return float((pred == np.array(y_te)).mean())


@pytest.fixture(scope="module")
def data(demo_tiny):
    train = _rows(demo_tiny, "train")
    nouns = {r["noun_class"] for r in train}
    val = [r for r in _rows(demo_tiny, "validation") if r["noun_class"] in nouns]
    dets = json.loads((demo_tiny / "media" / "detections.json").read_text())
    boxes = {
        vid: [
            (int(re.search(r"(\d{10})", e["name"]).group(1)), lab["box2d"])
            for e in entries
            for lab in e["labels"]
            if lab["standard_category"] == "0000"
        ]
        for vid, entries in dets.items()
    }
    with h5py.File(demo_tiny / "media" / "EPIC_audio.hdf5", "r") as f:
        audio = {k: f[k][:] for k in f}
    feats = {}
    for split, rows in (("train", train), ("val", val)):
        feats[split] = {
            "flow": np.stack([flow_feature(demo_tiny, r) for r in rows]),
            "colour": np.stack([colour_feature(demo_tiny, r, boxes) for r in rows]),
            "audio": np.stack([audio_feature(audio, r) for r in rows]),
            "verb": [r["verb_class"] for r in rows],
            "noun": [r["noun_class"] for r in rows],
        }
    return feats


def _score(data, modality, head):
    tr, va = data["train"], data["val"]
    acc = nearest_centroid(tr[modality], tr[head], va[modality], va[head])
    majority = max(va[head].count(c) for c in set(va[head])) / len(va[head])
    return acc, majority


def test_flow_reveals_the_verb_but_not_perfectly(data):
    acc, majority = _score(data, "flow", "verb")
    assert majority + 0.1 < acc < 0.95


def test_object_colour_reveals_the_noun_but_not_perfectly(data):
    acc, majority = _score(data, "colour", "noun")
    assert majority + 0.2 < acc < 0.95


def test_audio_is_weaker_noun_evidence_than_the_picture(data):
    audio, _ = _score(data, "audio", "noun")
    colour, _ = _score(data, "colour", "noun")
    assert audio < colour
