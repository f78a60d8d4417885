"""Stand-in clips for the custom-dataset route: short clips whose every modality carries a known
signal, written in the custom CSV format (`mmkd manifest custom`).

Each clip (2 s, 8 fps, 96×96 px) shows a digit glyph (noun, 10 classes) moving (verb, 5 classes)
next to a hand, with the digit "spoken" on the audio track, and digit and hand boxes:
- video: the glyph's identity (font, size, stroke, colour and start position vary) and its motion;
- audio: a two-syllable word per digit, a harmonic voice whose formant pair per syllable names the
  digit (pitch, vocal-tract length, timing and noise vary per speaker and clip);
- detection: the digit and hand boxes, i.e. the motion only;
- flow (from `mmkd flow`): the motion.
Motions are mirror-symmetric (still, rise, fall, shake, grow), so horizontal flips keep labels.
Speakers split the data: the last two are unseen and make `test`; the others are cut 80/20 into
train and val. Everything derives from (seed, clip index), so the same arguments give the same
dataset.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from mmkd.demo.writer import video_codec, write_wav
from mmkd.errors import MmkdError

VERBS = ("still", "rise", "fall", "shake", "grow")
NOUNS = tuple(str(d) for d in range(10))
FPS, SECONDS, SIZE, SAMPLE_RATE = 8, 2.0, 96, 24000
N_SPEAKERS, N_UNSEEN = 10, 2
# (F1, F2) in Hz of six vowels; a digit is a pair of them (two syllables), all pairs distinct
_VOWELS = ((280, 2250), (400, 2000), (750, 1200), (450, 800), (310, 870), (660, 1700))
_WORDS = ((0, 3), (1, 4), (2, 0), (3, 5), (4, 2), (5, 1), (0, 5), (2, 4), (3, 1), (5, 0))
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
          cv2.FONT_HERSHEY_COMPLEX)


@dataclass(frozen=True)
class ClipPlan:
    index: int
    speaker: int
    split: str
    verb: int
    noun: int

    @property
    def video_id(self) -> str:
        return f"clip{self.index:05d}"


def plan_clips(n: int, seed: int) -> list[ClipPlan]:
    """Balanced labels, speakers in turn; unseen speakers are the test split."""
    if n < 10:
        raise MmkdError(f"--clips {n}: make at least 10 clips (one per digit)")
    rng = np.random.default_rng([seed, 0x636C6970])
    verbs, nouns = rng.permutation(np.arange(n) % len(VERBS)), rng.permutation(np.arange(n) % 10)
    plans = []
    for i in range(n):
        speaker = i % N_SPEAKERS
        if speaker >= N_SPEAKERS - N_UNSEEN:
            split = "test"
        else:
            split = "val" if (i // N_SPEAKERS + speaker) % 5 == 0 else "train"
        plans.append(ClipPlan(i, speaker, split, int(verbs[i]), int(nouns[i])))
    return plans


def _pose(verb: str, tau: float, x0: float, y0: float) -> tuple[float, float, float]:
    """Glyph centre (fractions of the frame) and scale factor at time tau in [0, 1]."""
    if verb == "rise":
        return x0, y0 + 0.18 - 0.36 * tau, 1.0
    if verb == "fall":
        return x0, y0 - 0.18 + 0.36 * tau, 1.0
    if verb == "shake":
        return x0 + 0.18 * np.sin(4 * np.pi * tau), y0, 1.0
    if verb == "grow":
        return x0, y0, 0.6 + 0.8 * tau
    return x0, y0, 1.0


def render_clip(plan: ClipPlan, seed: int) -> tuple[np.ndarray, list[dict]]:
    """(T, H, W, 3) uint8 RGB frames and the Something-Else frames of digit and hand boxes."""
    rng = np.random.default_rng([seed, plan.index, 1])
    n = int(FPS * SECONDS)
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    base_scale, thick = rng.uniform(1.3, 1.8), int(rng.integers(2, 5))
    fg = rng.integers(150, 256, 3)
    x0, y0 = rng.uniform(0.38, 0.62), rng.uniform(0.4, 0.6)
    tint = np.random.default_rng([seed, 0x73706B72, plan.speaker]).integers(20, 90, 3)
    background = np.clip(tint + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    skin = np.array([224, 172, 105]) * rng.uniform(0.7, 1.0)
    frames, det = [], []
    for k in range(n):
        cx, cy, s = _pose(VERBS[plan.verb], k / (n - 1), x0, y0)
        scale = base_scale * s
        img = background.copy()
        (tw, th), _ = cv2.getTextSize(NOUNS[plan.noun], font, scale, thick)
        ox, oy = int(cx * SIZE - tw / 2), int(cy * SIZE + th / 2)
        cv2.putText(img, NOUNS[plan.noun], (ox, oy), font, scale, tuple(int(c) for c in fg),
                    thick, cv2.LINE_AA)
        hx, hy = ox + tw + 6, oy - th // 3
        cv2.ellipse(img, (hx, hy), (7, 10), 20, 0, 360, tuple(int(c) for c in skin), -1,
                    cv2.LINE_AA)
        frames.append(img)
        clip = lambda v, lo, hi: float(np.clip(v, lo, hi))  # noqa: E731
        boxes = [("digit", ox, oy - th - thick, ox + tw, oy + thick),
                 ("hand", hx - 7, hy - 10, hx + 7, hy + 10)]
        det.append({"name": f"{plan.video_id}/{k + 1:04d}.jpg", "labels": [
            {"box2d": {"x1": clip(a, 0, SIZE - 1), "y1": clip(b, 0, SIZE - 1),
                       "x2": clip(c, 0, SIZE - 1), "y2": clip(d, 0, SIZE - 1)},
             "category": cat, "standard_category": "hand" if cat == "hand" else "0000"}
            for cat, a, b, c, d in boxes]})
    return np.stack(frames), det


def speak(plan: ClipPlan, seed: int) -> np.ndarray:
    """2 s of mono audio at SAMPLE_RATE: the digit's two-syllable word in noise."""
    rng = np.random.default_rng([seed, plan.index, 2])
    voice = np.random.default_rng([seed, 0x766F6963, plan.speaker])
    f0, tract = voice.uniform(100, 240), voice.uniform(0.88, 1.12)
    n = int(SAMPLE_RATE * SECONDS)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    onset = rng.uniform(0.1, 0.9)
    for vowel in _WORDS[plan.noun]:
        dur = rng.uniform(0.2, 0.3)
        i0, i1 = int(onset * SAMPLE_RATE), int((onset + dur) * SAMPLE_RATE)
        tt = t[i0:i1] - onset
        pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * tt)) * rng.uniform(0.95, 1.05)
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        formants = np.array(_VOWELS[vowel]) * tract
        wave = np.zeros_like(tt)
        for h in range(1, int(4000 / f0)):
            f = h * f0
            gain = sum(np.exp(-0.5 * ((f - fm) / 90) ** 2) for fm in formants) + 0.02
            wave += gain * np.sin(h * phase)
        env = np.sin(np.pi * np.linspace(0, 1, len(tt))) ** 0.5
        out[i0:i1] += env * wave / max(np.abs(wave).max(), 1e-6)
        onset += dur + rng.uniform(0.03, 0.1)
    out = 0.5 * out + rng.normal(0, 0.03, n)
    return out.astype(np.float32)


def write_mp4(path: Path, frames_THWC: np.ndarray) -> None:
    codec = video_codec()
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18"}
        for rgb in frames_THWC:
            yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
        container.mux(stream.encode())


CSV_HEADER = ("sample_id", "video_id", "split", "participant", "unseen", "label_verb",
              "label_noun", "fps", "video", "audio", "detection", "detection_width",
              "detection_height")


OWNED = ("clips.csv", "verbs.txt", "nouns.txt", "boxes.json", "media")


def generate(out: str | Path, clips: int, seed: int = 0, overwrite: bool = False,
             progress=None) -> Path:
    """Write OUT/clips.csv, OUT/verbs.txt, OUT/nouns.txt, OUT/boxes.json and OUT/media/; the
    CSV's path is returned (`mmkd manifest custom --csv OUT/clips.csv --classes verb=... `)."""
    out = Path(out)
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing and not overwrite:
        raise MmkdError(f"{out} is not empty; choose a new --out folder or pass --force to "
                        "replace generated clips there")
    foreign = [n for n in existing if n not in OWNED]
    if foreign:  # never delete what this generator did not write
        raise MmkdError(f"{out} holds files that are not generated clips ({', '.join(foreign[:3])})"
                        "; choose an empty --out folder")
    if "media" in existing:
        shutil.rmtree(out / "media")
    (out / "media").mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(1)
    rows, boxes = [], {}
    for plan in plan_clips(clips, seed):
        frames, det = render_clip(plan, seed)
        write_mp4(out / "media" / f"{plan.video_id}.mp4", frames)
        write_wav(out / "media" / f"{plan.video_id}.wav", speak(plan, seed))
        boxes[plan.video_id] = det
        unseen = plan.speaker >= N_SPEAKERS - N_UNSEEN
        rows.append((plan.video_id, plan.video_id, plan.split, f"S{plan.speaker:02d}",
                     str(unseen).lower(), VERBS[plan.verb], NOUNS[plan.noun], FPS,
                     f"media/{plan.video_id}.mp4", f"media/{plan.video_id}.wav", "boxes.json",
                     SIZE, SIZE))
        if progress is not None:
            progress(1)
    (out / "boxes.json").write_text(json.dumps(boxes))
    (out / "verbs.txt").write_text("\n".join(VERBS) + "\n")
    (out / "nouns.txt").write_text("\n".join(NOUNS) + "\n")
    with open(out / "clips.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(rows)
    return out / "clips.csv"
