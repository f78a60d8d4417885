"""RGB frames of a clip from a video file (decord, PyAV fallback) or an EPIC RGB frame folder.

Containers: anything FFmpeg reads (mp4, mkv, mov, webm, ...). decord refuses a WebM without
duration metadata (muxed live, as browsers record); PyAV takes over and counts the packets when
the header has no frame count.

Clip frame i (1-based, at the manifest's fps) is the video frame shown at t = (i - 1) / fps, i.e.
video frame round(t × video_fps) (0-based): the identity when the video runs at the manifest's fps,
as EPIC's rgb_frames do. A clip reaching more than one frame past the end of the media is "too
short" (MediaError); within one frame the last frame is repeated.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mmkd.datasets.manifest import Sample
from mmkd.extract.sampling import Clip, ClipSampler, MediaError, has_segment


def _video_frame_numbers(clip: Clip, video_fps: float, n_frames: int, path: Path) -> np.ndarray:
    wanted = np.rint(clip.times_s * video_fps).astype(np.int64)
    if n_frames <= 0:
        raise MediaError(f"{path}: no video frames")
    if wanted.max() > n_frames:  # one frame of slack: frame-rate rounding at the very end
        raise MediaError(f"{path}: too short: clip needs frame {wanted.max()} at "
                         f"{video_fps:g} fps, the video has {n_frames}")
    return np.minimum(wanted, n_frames - 1)


def read_video_file(path: Path, sample: Sample, sampler: ClipSampler) -> tuple[Clip, np.ndarray]:
    """(clip, frames (T, H, W, 3) uint8 RGB) via decord; PyAV where decord cannot decode."""
    if not path.is_file():
        raise MediaError(f"{path}: video file not found")
    try:
        return _read_decord(path, sample, sampler)
    except MediaError:
        raise
    except Exception as exc:  # decord raises bare DECORDError/RuntimeError on broken streams
        decord_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        return _read_pyav(path, sample, sampler)
    except MediaError as exc:
        raise MediaError(f"{exc} (decord failed first: {decord_reason})") from None


class _OpenReaders:
    """decord readers kept open per process: the clips of one video follow each other in a
    manifest, so the next clip skips re-opening and usually decodes on from where it is.

    Readers inherited through fork (DataLoader workers) are never used nor destroyed in the
    child: decord's native state does not survive fork and closing it there can hang."""

    def __init__(self, size: int = 2):
        self.size, self.pid = size, os.getpid()
        self.readers: dict[tuple[str, int], object] = {}
        self.inherited: list[dict] = []

    def get(self, path: Path):
        import decord

        if os.getpid() != self.pid:
            self.inherited.append(self.readers)  # keep alive, untouched, until os._exit
            self.readers, self.pid = {}, os.getpid()
        key = (str(path), path.stat().st_mtime_ns)  # a rewritten file is opened anew
        vr = self.readers.pop(key, None)
        if vr is None:
            vr = decord.VideoReader(key[0], ctx=decord.cpu(0), num_threads=1)
        self.readers[key] = vr  # most recent last
        while len(self.readers) > self.size:
            self.readers.pop(next(iter(self.readers)))
        return vr


_READERS = _OpenReaders()


def _read_decord(path: Path, sample: Sample, sampler: ClipSampler) -> tuple[Clip, np.ndarray]:
    vr = _READERS.get(path)
    fps, n = float(vr.get_avg_fps()), len(vr)
    clip = sampler.clip(sample, fps=fps, n_frames=n)
    numbers = _video_frame_numbers(clip, fps, n, path)
    uniq, inverse = np.unique(numbers, return_inverse=True)
    frames = vr.get_batch(uniq.tolist()).asnumpy()
    return clip, frames[inverse]


def _read_pyav(path: Path, sample: Sample, sampler: ClipSampler) -> tuple[Clip, np.ndarray]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if not fps:
                raise MediaError(f"{path}: the video stream has no frame rate")
            n = stream.frames or (int(float(stream.duration * stream.time_base) * fps)
                                  if stream.duration else _count_packets(container, stream))
            clip = sampler.clip(sample, fps=fps, n_frames=n)
            wanted = np.rint(clip.times_s * fps).astype(np.int64)
            first, last = int(wanted.min()), int(wanted.max())
            container.seek(int(first / fps / stream.time_base), stream=stream, backward=True)
            got: dict[int, np.ndarray] = {}
            wanted_set = set(wanted.tolist())
            last_seen = -1
            for frame in container.decode(stream):
                idx = round(frame.time * fps) if frame.time is not None else last_seen + 1
                last_seen = idx
                if idx in wanted_set:
                    got[idx] = frame.to_ndarray(format="rgb24")
                if idx >= last:
                    break
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from None
    if not got:
        raise MediaError(f"{path}: no decodable frames for the clip (frames {first}..{last})")
    if last_seen < last - 1:
        raise MediaError(f"{path}: too short: clip needs frame {last}, decoding ended at {last_seen}")
    have = np.array(sorted(got))
    # frames the stream skipped (or the one-frame slack at the end): nearest decoded frame
    pick = have[np.abs(have[None, :] - wanted[:, None]).argmin(axis=1)]
    return clip, np.stack([got[int(i)] for i in pick])


def _count_packets(container, stream) -> int:
    """Frames of a stream whose header has no count or duration (a WebM muxed live, as browsers
    record): one packet per shown frame (VP9 packs hidden frames into the shown one's packet)."""
    n = sum(1 for pkt in container.demux(stream) if pkt.size)
    container.seek(0, stream=stream, backward=True)
    return n


def read_rgb_folder(folder: Path, template: str, sample: Sample,
                    sampler: ClipSampler) -> tuple[Clip, np.ndarray]:
    """EPIC rgb_frames: `<folder>/frame_%010d.jpg`, 1-based at the manifest's fps."""
    if not folder.is_dir():
        raise MediaError(f"{folder}: RGB frame folder not found")
    n = None if has_segment(sample) else sum(1 for _ in folder.iterdir())
    clip = sampler.clip(sample, n_frames=n)
    return clip, np.stack(_read_jpegs(folder, template, clip.rgb_idx, cv2.IMREAD_COLOR, rgb=True))


def _read_jpegs(folder: Path, template: str, idx: np.ndarray, flag: int, rgb: bool) -> list:
    cache: dict[int, np.ndarray] = {}
    out = []
    for i in idx.tolist():
        if i not in cache:
            path = folder / (template % i)
            img = cv2.imread(str(path), flag) if path.is_file() else None
            if img is None:
                raise MediaError(f"{path}: missing or unreadable frame")
            cache[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb else img
        out.append(cache[i])
    if len({f.shape for f in out}) != 1:
        raise MediaError(f"{folder}: frames of different sizes")
    return out
