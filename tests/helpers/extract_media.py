"""Tiny real media (and model inputs) for the extraction tests: H.264 mp4 (PyAV), containers with
video + audio (mp4, mkv, webm, mov), EPIC JPEG folders (cv2), wav, EPIC-style HDF5 audio,
Something-Else boxes JSON, and a manifest pointing at them."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from mmkd.datasets.flow_format import quantize
from mmkd.datasets.manifest import ManifestMeta, Sample, write_manifest
from mmkd.extract.extractors import get_spec
from mmkd.extract.input_kinds import example_inputs

TEMPLATE = "frame_%010d.jpg"


def frame_rgb(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A deterministic frame whose content moves with i (a bright square on a gradient)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = (i * 7) % 256
    x = (i * 2) % (w - 8)
    img[h // 3:h // 3 + 8, x:x + 8] = 255
    return img


def write_mp4(path: Path, n_frames: int, fps: int = 30, h: int = 48, w: int = 64) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_rgb(i, h, w), format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


# container -> (video codec, audio codec, muxer options); the webm is muxed as a live stream (no
# duration, no cues), as browser recordings are: decord cannot measure it, PyAV must read it
CONTAINERS = {
    "mp4": ("libx264", "aac", {}),
    "mkv": ("libx264", "libopus", {}),
    "webm": ("libvpx-vp9", "libopus", {"live": "1"}),
    "mov": ("libx264", "aac", {}),
}


def write_av(path: Path, n_frames: int, fps: int = 12, rate: int = 48000, h: int = 48,
             w: int = 64, tone_hz: float = 440.0) -> Path:
    """A video file with `frame_rgb` frames and a mono tone, codecs chosen by the suffix."""
    import av

    vcodec, acodec, options = CONTAINERS[path.suffix[1:]]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options) as out:
        vs = out.add_stream(vcodec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream(acodec, rate=rate)
        aus.layout = "mono"
        for i in range(n_frames):
            for pkt in vs.encode(av.VideoFrame.from_ndarray(frame_rgb(i, h, w), format="rgb24")):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        wave = tone(n_frames / fps, rate, tone_hz)
        step = aus.codec_context.frame_size or 1024
        for i in range(0, len(wave), step):
            frame = av.AudioFrame.from_ndarray(wave[None, i:i + step], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for pkt in aus.encode(frame):
                out.mux(pkt)
        for pkt in aus.encode():
            out.mux(pkt)
    return path


def write_rgb_frames(folder: Path, n_frames: int, h: int = 48, w: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, n_frames + 1):
        cv2.imwrite(str(folder / (TEMPLATE % i)), cv2.cvtColor(frame_rgb(i, h, w), cv2.COLOR_RGB2BGR))
    return folder


def write_flow_frames(folder: Path, n_frames: int, h: int = 48, w: int = 64,
                      u_px: float = 4.0, v_px: float = -2.0) -> Path:
    """Constant flow (u_px, v_px) in every frame, quantized the EPIC way."""
    for comp, val in (("u", u_px), ("v", v_px)):
        (folder / comp).mkdir(parents=True, exist_ok=True)
        level = quantize(np.full((h, w), val, np.float32))
        for i in range(1, n_frames + 1):
            cv2.imwrite(str(folder / comp / (TEMPLATE % i)), level, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return folder


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def write_hdf5(path: Path, waves: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for key, x in waves.items():
            f.create_dataset(key, data=x.astype(np.float32))
    return path


def write_boxes(path: Path, videos: dict[str, int], h: int = 48, w: int = 64) -> Path:
    """Something-Else format: one hand + one object per frame, moving right."""
    out = {}
    for vid, n in videos.items():
        frames = []
        for i in range(1, n + 1):
            x = float(i % (w - 20))
            frames.append({"name": f"{vid}/frame_{i:010d}.jpg", "nr_instances": 2, "labels": [
                {"box2d": {"x1": x, "y1": 5.0, "x2": x + 10, "y2": 20.0}, "category": "cup",
                 "standard_category": "0000", "gt_annotation": "object 0"},
                {"box2d": {"x1": 1.0, "y1": 30.0, "x2": 12.0, "y2": h - 1.0}, "category": "hand",
                 "standard_category": "hand", "gt_annotation": "object hand"}]})
        out[vid] = frames
    path.write_text(json.dumps(out))
    return path


def sample(sid: str, vid: str, start_s: float, stop_s: float, fps: float, media: dict,
           split: str = "train", label: int = 0) -> Sample:
    return Sample(sample_id=sid, video_id=vid, split=split, labels={"verb": label},
                  start_s=start_s, stop_s=stop_s, start_frame=int(start_s * fps) + 1,
                  stop_frame=int(stop_s * fps), fps=fps, media=media)


def build_dataset(root: Path, n_videos: int = 2, seconds: float = 3.0, fps: int = 30,
                  rate: int = 16000) -> Path:
    """media/ + manifest/ with every modality for `n_videos` videos, two segments each."""
    media = root / "media"
    n = int(seconds * fps)
    waves = {}
    samples = []
    for v in range(n_videos):
        vid = f"P01_{v + 1:02d}"
        write_mp4(media / "P01" / "videos" / f"{vid}.mp4", n, fps)
        write_rgb_frames(media / "P01" / "rgb_frames" / vid, n)
        write_flow_frames(media / "P01" / "flow_frames" / vid, (n - 1) // 2)
        waves[vid] = tone(seconds, rate, 300 + 100 * v)
        write_wav(media / "P01" / "audio" / f"{vid}.wav", waves[vid], rate)
        for s, (a, b) in enumerate(((0.2, 1.4), (1.5, 2.8))):
            samples.append(sample(f"{vid}_{s}", vid, a, b, fps, {
                "video": {"path": f"P01/videos/{vid}.mp4"},
                "rgb": {"dir": f"P01/rgb_frames/{vid}", "template": TEMPLATE},
                "flow": {"dir": f"P01/flow_frames/{vid}", "template": TEMPLATE, "stride": 2},
                "audio": {"path": f"P01/audio/{vid}.wav"},
                "detection": {"path": "detections.json", "key": vid, "width": 64, "height": 48},
            }, split="train" if v == 0 else "val", label=s))
    write_hdf5(media / "EPIC_audio.hdf5", waves)
    write_boxes(media / "detections.json", {f"P01_{v + 1:02d}": n for v in range(n_videos)})
    meta = ManifestMeta(dataset="test", heads={"verb": 2}, media_root="../media")
    splits = {"train": [s for s in samples if s.split == "train"],
              "val": [s for s in samples if s.split == "val"]}
    return write_manifest(root / "manifest", meta, splits)


def dummy_inputs(name: str, batch: int = 2, frames: int = 8) -> dict[str, torch.Tensor]:
    return example_inputs(get_spec(name), frames, batch)
