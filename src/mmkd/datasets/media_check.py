"""`--check-media`: list every sample whose media is missing or unreadable, instead of failing
at the first.

Extraction marks such samples `present = False` (a missing modality, which KARMMA handles), so a
bad file is not an error here: it is a row in a report the user reads before spending hours on
extraction. The checks are cheap and each file is opened once however many samples share it:
one listing per frame folder (every frame of the segment must be there), the JPEG/PNG signature
of the segment's first and last frame, a container probe (PyAV opens the header and looks for
the stream), the RIFF header of a wav (a data chunk with samples), HDF5 keys and lengths, boxes.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from mmkd.datasets.box_store import read_boxes
from mmkd.datasets.manifest import ManifestMeta, MediaProblem, Progress, Sample, resolve
from mmkd.errors import MmkdError

IMAGE_SIGNATURES = {".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".png": b"\x89PNG\r\n\x1a\n"}
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
LISTED_FOLDERS = 8  # samples come grouped by video: a few folder listings at a time suffice
FILE_MISSING, FOLDER_MISSING = "file missing", "frame folder missing"


def check_media(meta: ManifestMeta, samples: list[Sample], manifest_dir: str | Path | None = None,
                progress: Progress | None = None) -> list[MediaProblem]:
    """One row per (sample, modality) whose media cannot be found or opened."""
    files: dict[tuple[Path, str], str] = {}  # (file, modality) -> problem, each probed once
    h5_lengths: dict[Path, dict[str, int] | str] = {}
    problems: list[MediaProblem] = []
    for s in samples:
        for modality, media in s.media.items():
            path, problem = _check_one(meta, s, modality, media, manifest_dir, files, h5_lengths)
            if problem:
                problems.append(MediaProblem(s.sample_id, s.split, modality, str(path), problem))
        if progress is not None:
            progress(1)
    _listing.cache_clear()
    return problems


def nothing_found(problems: list[MediaProblem], samples: list[Sample]) -> bool:
    """Whether no listed medium of any sample exists: the media root is wrong, not the data."""
    pairs = sum(len(s.media) for s in samples)
    return pairs > 0 and len(problems) == pairs and all(
        p.problem in (FILE_MISSING, FOLDER_MISSING) for p in problems)


def _check_one(meta: ManifestMeta, s: Sample, modality: str, media: dict, manifest_dir, files,
               h5_lengths) -> tuple[Path, str]:
    def loc(rel: str) -> Path:
        return resolve(meta, rel, manifest_dir)

    if "dir" in media:  # rgb or flow frames
        root = loc(media["dir"])
        stride = int(media.get("stride", 0))
        subdirs = [root / "u", root / "v"] if stride else [root]
        first = s.start_frame if s.start_frame is not None else 1
        last = s.stop_frame if s.stop_frame is not None else first
        if stride:  # flow frame of RGB frame r: (r - 1) // stride + 1; the last RGB frame has none
            first, last = (first - 1) // stride + 1, (max(first, last - stride) - 1) // stride + 1
        for d in subdirs:
            path, problem = _frames(d, media["template"], first, last)
            if problem:
                return path, problem
        return root, ""
    path = loc(media["path"])
    if not path.is_file():
        return path, FILE_MISSING
    key = media.get("key")
    if key is None:
        if modality == "detection":
            return path, ""
        if (path, modality) not in files:
            files[path, modality] = _probe(path, modality)
        return path, files[path, modality]
    if modality == "detection":  # a box store (*.h5) or a JSON file
        try:
            frames = read_boxes(path, key)
        except MmkdError as exc:
            return path, str(exc)
        return path, "" if frames else f"no boxes for {key!r}"
    if path.suffix.lower() in HDF5_SUFFIXES:
        lengths = h5_lengths.get(path)
        if lengths is None:
            lengths = h5_lengths[path] = _hdf5_lengths(path)
        if isinstance(lengths, str):
            return path, lengths
        if key not in lengths:
            return path, f"no dataset {key!r} in the HDF5 file"
        return path, "" if lengths[key] > 0 else f"no audio samples in dataset {key!r}"
    return path, ""


@lru_cache(maxsize=LISTED_FOLDERS)
def _listing(folder: Path) -> frozenset[str] | None:
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return None


def _frames(folder: Path, template: str, first: int, last: int) -> tuple[Path, str]:
    """Every frame first..last listed in the folder; the first and last start like an image."""
    names = _listing(folder)
    if names is None:
        return folder, FOLDER_MISSING
    for idx in range(first, last + 1):
        if template % idx not in names:
            return folder / (template % idx), f"frame {idx} missing"
    for idx in sorted({first, last}):
        frame = folder / (template % idx)
        signature = IMAGE_SIGNATURES.get(frame.suffix.lower(), b"")
        try:
            with open(frame, "rb") as fh:
                head = fh.read(max(len(signature), 1))
        except OSError as exc:
            return frame, f"frame {idx} unreadable ({exc.strerror})"
        if not head:
            return frame, f"frame {idx} is empty (0 bytes)"
        if not head.startswith(signature):
            return frame, f"frame {idx} is not a {frame.suffix.lstrip('.').upper()} image"
    return folder, ""


def _probe(path: Path, modality: str) -> str:
    """Why a video/audio file cannot be read, from its header alone ("" when it looks fine)."""
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    if modality == "audio" and path.suffix.lower() == ".wav":
        return _wav_problem(path)
    import av

    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio if modality == "audio" else container.streams.video
            return "" if streams else f"no {'audio' if modality == 'audio' else 'video'} stream"
    except (av.FFmpegError, OSError, ValueError) as exc:
        return f"cannot open the container ({type(exc).__name__}: {exc})"


def _wav_problem(path: Path) -> str:
    """The RIFF/WAVE header walked to its data chunk, which must hold samples."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return "not a WAV file (no RIFF/WAVE header)"
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return "WAV file without a data chunk"
            nbytes = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                return "" if min(nbytes, size - fh.tell()) > 0 else "no audio samples"
            fh.seek(nbytes + (nbytes & 1), os.SEEK_CUR)


def _hdf5_lengths(path: Path) -> dict[str, int] | str:
    """Length of each dataset of an audio HDF5 file, or why it cannot be read."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: int(v.shape[0]) if v.shape else 0 for k, v in f.items()
                    if isinstance(v, h5py.Dataset)}
    except OSError as exc:
        return f"unreadable HDF5 file ({exc})"
