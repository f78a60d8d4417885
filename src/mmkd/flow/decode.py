"""Frame sources for flow: a video file (decord, PyAV as fallback) or a folder of image files.

Only the frames flow needs are decoded: indices 0, S, 2S, ... for stride S, streamed in chunks so
an hour of 60 fps video never sits in memory. Frames come out as RGB uint8 (H, W, 3).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mmkd.errors import MmkdError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DECODE_CHUNK = 16  # frames per decord batch: bounds memory at 1080p (about 100 MB)


class FlowSourceError(MmkdError):
    """A video or frame folder that cannot be read; the runner reports it and goes on."""


def template_glob(template: str) -> str:
    """A printf frame template (EPIC: 'frame_%010d.jpg') as a glob ('frame_*.jpg')."""
    return re.sub(r"%0?\d*d", "*", template)


def _natural_key(path: Path) -> list:
    """Sort key comparing digit runs as numbers: img_2 before img_10, and zero-padded names
    (EPIC's) in plain name order."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path, pattern: str | None = None) -> list[Path]:
    """Image files of a frame folder (only those matching the glob `pattern`, when given, e.g.
    'img_*.jpg' in a folder that also holds flow JPEGs) in sorted name order."""
    if not folder.is_dir():
        raise FlowSourceError(f"{folder}: frame folder not found")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS
                    and (pattern is None or fnmatch.fnmatch(p.name, pattern))), key=_natural_key)
    if not files:
        raise FlowSourceError(f"{folder}: no image files matching {pattern or '*'} "
                              f"({', '.join(IMAGE_EXTS)})")
    return files


def count_frames(source: Path, kind: str, pattern: str | None = None) -> int | None:
    """Number of frames, or None when the container does not say (progress then has no total)."""
    if kind == "frames":
        return len(frame_files(source, pattern))
    if not source.is_file():
        raise FlowSourceError(f"{source}: video file not found")
    try:
        return len(_decord_reader(source))
    except Exception:  # decord cannot open it: ask PyAV, which iter_frames falls back to
        pass
    try:
        import av

        with av.open(str(source)) as container:
            return container.streams.video[0].frames or None
    except Exception as exc:
        raise FlowSourceError(f"{source}: cannot decode ({type(exc).__name__}: {exc})") from None


def iter_frames(source: Path, kind: str, stride: int = 1, height: int | None = None,
                pattern: str | None = None) -> Iterator[np.ndarray]:
    """RGB frames 0, stride, 2*stride, ... of a video or frame folder (files matching `pattern`),
    optionally resized to `height` rows (aspect kept), e.g. 256 for EPIC's 456x256 frames."""
    frames = (_iter_folder(source, stride, pattern) if kind == "frames"
              else _iter_video(source, stride))
    for frame in frames:
        yield frame if height is None else resize_to_height(frame, height)


def resize_to_height(frame: np.ndarray, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if h == height:
        return frame
    width = max(1, round(w * height / h))
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _iter_folder(folder: Path, stride: int, pattern: str | None) -> Iterator[np.ndarray]:
    for path in frame_files(folder, pattern)[::stride]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FlowSourceError(f"{path}: not a readable image")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _decord_reader(path: Path):
    import decord

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def _iter_video(path: Path, stride: int) -> Iterator[np.ndarray]:
    if not path.is_file():
        raise FlowSourceError(f"{path}: video file not found")
    try:
        reader = _decord_reader(path)
    except Exception:  # decord lacks some codecs/containers; PyAV (FFmpeg) reads almost all
        yield from _iter_pyav(path, stride)
        return
    indices = list(range(0, len(reader), stride))
    for start in range(0, len(indices), DECODE_CHUNK):
        try:
            batch_THW3 = reader.get_batch(indices[start:start + DECODE_CHUNK]).asnumpy()
        except Exception as exc:
            raise FlowSourceError(f"{path}: decoding failed near frame {indices[start]} "
                                  f"({type(exc).__name__}: {exc})") from None
        yield from batch_THW3


def _iter_pyav(path: Path, stride: int) -> Iterator[np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise FlowSourceError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
