"""`--check-media`: list every sample whose media is missing, instead of failing at the first.

Extraction marks such samples `present = False` (a missing modality, which KARMMA handles), so a
missing file is not an error here: it is a row in a report the user reads before spending hours
on extraction. The checks are cheap (stat calls, one open per HDF5/box file).
"""

from __future__ import annotations

from pathlib import Path

from mmkd.datasets.boxes import read_boxes
from mmkd.datasets.manifest import ManifestMeta, MediaProblem, Progress, Sample, resolve
from mmkd.errors import MmkdError


def check_media(meta: ManifestMeta, samples: list[Sample], manifest_dir: str | Path | None = None,
                progress: Progress | None = None) -> list[MediaProblem]:
    """One row per (sample, modality) whose media cannot be found."""
    h5_keys: dict[Path, set[str] | str] = {}
    problems: list[MediaProblem] = []
    for s in samples:
        for modality, media in s.media.items():
            path, problem = _check_one(meta, s, modality, media, manifest_dir, h5_keys)
            if problem:
                problems.append(MediaProblem(s.sample_id, s.split, modality, str(path), problem))
        if progress is not None:
            progress(1)
    return problems


def _check_one(meta: ManifestMeta, s: Sample, modality: str, media: dict, manifest_dir,
               h5_keys) -> tuple[Path, str]:
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
            if not d.is_dir():
                return d, "frame folder missing"
            for idx in sorted({first, last}):
                frame = d / (media["template"] % idx)
                if not frame.is_file():
                    return frame, f"frame {idx} missing"
        return root, ""
    path = loc(media["path"])
    if not path.is_file():
        return path, "file missing"
    key = media.get("key")
    if key is None:
        return path, ""
    if modality == "detection":  # a box store (*.h5) or a JSON file
        try:
            frames = read_boxes(path, key)
        except MmkdError as exc:
            return path, str(exc)
        return path, "" if frames else f"no boxes for {key!r}"
    if path.suffix.lower() in (".h5", ".hdf5"):
        keys = h5_keys.get(path)
        if keys is None:
            keys = h5_keys[path] = _hdf5_keys(path)
        if isinstance(keys, str):
            return path, keys
        return path, "" if key in keys else f"no dataset {key!r} in the HDF5 file"
    return path, ""


def _hdf5_keys(path: Path) -> set[str] | str:
    """Dataset names of an audio HDF5 file, or why it cannot be read."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return set(f.keys())
    except OSError as exc:
        return f"unreadable HDF5 file ({exc})"
