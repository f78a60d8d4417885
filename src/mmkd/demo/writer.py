"""Write one demo video's media in the EPIC layout: .MP4, RGB JPEGs, flow JPEGs, .wav, boxes.

One call per video, so a process pool can spread videos over cores; everything random is
derived from `(seed, video_id)`, so the output does not depend on which worker ran it.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from mmkd.datasets.flow_format import quantize
from mmkd.demo.audio import synth_audio
from mmkd.demo.plan import Style, VideoPlan, stream
from mmkd.demo.scene import FrameState, VideoScene, boxes, flow_between
from mmkd.demo.spec import (
    BOX_STRIDE,
    FLOW_JPEG_QUALITY,
    HEIGHT,
    RGB_JPEG_QUALITY,
    SAMPLE_RATE,
    WIDTH,
)

FRAME = "frame_{:010d}.jpg"


def video_codec() -> str:
    """libx264 (H.264) when this FFmpeg build has it, else MPEG-4 Part 2 (always built in)."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


@dataclass
class VideoResult:
    video_id: str
    n_frames: int
    n_flow_frames: int
    codec: str
    detections: list[dict]


def media_paths(root: Path, video: VideoPlan) -> dict[str, Path]:
    p, v = root / video.participant, video.video_id
    return {
        "video": p / "videos" / f"{v}.MP4",
        "rgb": p / "rgb_frames" / v,
        "flow": p / "flow_frames" / v,
        "wav": p / "audio" / f"{v}.wav",
    }


def write_video(root: Path, video: VideoPlan, style: Style, seed: int) -> VideoResult:
    """Render and write all media of `video` under the media root `root`."""
    cv2.setNumThreads(1)  # parallelism comes from the process pool, one video per process
    paths = media_paths(root, video)
    for key in ("rgb", "flow"):
        paths[key].mkdir(parents=True, exist_ok=True)
    for comp in ("u", "v"):
        (paths["flow"] / comp).mkdir(exist_ok=True)
    paths["video"].parent.mkdir(parents=True, exist_ok=True)
    paths["wav"].parent.mkdir(parents=True, exist_ok=True)

    rgb_dir, flow_dir = str(paths["rgb"]), str(paths["flow"])  # str joins: 2 files per frame
    scene = VideoScene(video, style, seed)
    box_rng = stream(seed, "boxes", video.video_id)
    stride = video.flow_stride
    recent: dict[int, FrameState] = {}
    detections: list[dict] = []
    n_flow = 0
    codec = video_codec()
    with av.open(str(paths["video"]), mode="w", format="mp4") as container:
        stream_ = container.add_stream(codec, rate=Fraction(video.fps))
        stream_.width, stream_.height, stream_.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream_.codec_context.thread_count = 1  # x264 is deterministic single-threaded
        if codec == "libx264":
            stream_.options = {"preset": "ultrafast", "crf": "20"}
        for state in scene.frames():
            k = state.index
            cv2.imwrite(
                f"{rgb_dir}/{FRAME.format(k)}",
                cv2.cvtColor(state.rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, RGB_JPEG_QUALITY],
            )
            yuv = cv2.cvtColor(state.rgb, cv2.COLOR_RGB2YUV_I420)  # faster than swscale here
            container.mux(stream_.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")))
            recent[k] = state
            recent.pop(k - stride - 1, None)
            if k > stride and (k - 1) % stride == 0:  # flow frame j: RGB k-stride -> k
                n_flow += 1
                flow = flow_between(recent[k - stride], state, scene.flow_noise[n_flow % 8])
                levels = quantize(flow)
                for c, comp in enumerate(("u", "v")):
                    cv2.imwrite(
                        f"{flow_dir}/{comp}/{FRAME.format(n_flow)}",
                        np.ascontiguousarray(levels[..., c]),
                        [cv2.IMWRITE_JPEG_QUALITY, FLOW_JPEG_QUALITY],
                    )
            if (k - 1) % BOX_STRIDE == 0:
                labels = boxes(state, box_rng)
                if labels:
                    detections.append(
                        {
                            "name": f"{video.video_id}/{FRAME.format(k)}",
                            "labels": labels,
                            "gt_placeholders": state.nouns,
                            "nr_instances": len(labels),
                        }
                    )
        container.mux(stream_.encode())
    assert n_flow == video.n_flow_frames, (n_flow, video.n_flow_frames)
    write_wav(paths["wav"], synth_audio(video, style, seed))
    return VideoResult(video.video_id, video.n_frames, n_flow, codec, detections)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """Mono 16-bit PCM at 24 kHz."""
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit mono wav as float32 in [-1, 1) (sample / 32768), the HDF5's values."""
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768
