"""The manifest format: one JSON record per sample (action segment), one JSONL file per split.

A manifest folder holds `meta.json` (format version, dataset, label heads with class counts,
media root, how it was built) and `<split>.jsonl`. Every later stage reads samples only through
this module, so the official formats are parsed in exactly one place (the builders).

Media locations are stored relative to `meta.media_root` (absolute paths are kept as given), so a
manifest moves between machines by editing one field. The format is documented, with its version
history, in data_manifests/README.md; bump FORMAT_VERSION when a field changes meaning.

Builders (epic100, ssv2, custom; demo = epic100 on the generated data) are registered in `mmkd.registry.datasets` as functions
`build(annotations, media_root, out_dir, *, progress=None, **options) -> BuildReport`, so a run
directory's `data.dataset/annotations/media_root` is enough to (re)build its manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mmkd.datasets.labels import LabelTextMismatch
from mmkd.errors import MmkdError
from mmkd.files import read_text

Progress = Callable[[int], None]

FORMAT_VERSION = 1
META_FILE = "meta.json"


@dataclass
class Sample:
    """One action segment.

    `start_frame`/`stop_frame` index the RGB frames (1-based, EPIC convention) at `fps`.
    `media` maps a modality to where its data lives, e.g.
      video:     {"path": "P01/videos/P01_11.MP4"[, "fps": 59.94 (the container's rate)]}
      rgb:       {"dir": "P01/rgb_frames/P01_11", "template": "frame_%010d.jpg"}
      flow:      {"dir": "P01/flow_frames/P01_11", "template": "frame_%010d.jpg", "stride": 2}
                 (frames in dir/u and dir/v; flow frame of RGB frame r: (r - 1) // stride + 1)
      audio:     {"path": "EPIC_audio.hdf5", "key": "P01_11", "sample_rate": 24000}
                 or {"path": "P01/audio/P01_11.wav"}
      detection: {"path": "detections.json", "key": "P01_11", "width": 456, "height": 256,
                  "fps": 60, "frame_stride": 5, "n_frames": 18}: a Something-Else file or box store (read it
                 with mmkd.datasets.box_store.read_boxes); frame numbers in its names count at
                 `fps`; width/height (None: unknown, read from the video) scale the pixel boxes.
    A modality absent from `media` is missing for that sample.
    """

    sample_id: str
    video_id: str
    split: str
    labels: dict[str, int]
    participant: str | None = None
    unseen: bool | None = None
    start_s: float | None = None
    stop_s: float | None = None
    start_frame: int | None = None
    stop_frame: int | None = None
    fps: float | None = None
    narration: str | None = None
    media: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ManifestMeta:
    dataset: str
    heads: dict[str, int]  # head name -> number of classes
    media_root: str = ""
    splits: list[str] = field(default_factory=list)
    command: str = ""  # the exact command that built it
    seed: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    classes: dict[str, list[str]] = field(default_factory=dict)  # head -> class names by id


@dataclass
class MediaProblem:
    """One sample whose media is missing or unreadable (`--check-media` reports, never raises)."""

    sample_id: str
    split: str
    modality: str
    path: str
    problem: str


@dataclass
class BuildReport:
    """What a builder wrote, for the CLI summary."""

    out_dir: Path
    meta: ManifestMeta
    counts: dict[str, int]  # split -> samples
    pruned: dict[str, int] = field(default_factory=dict)  # dropped class name -> samples
    pruned_split: str = ""
    media_problems: list[MediaProblem] | None = None  # None: media not checked
    label_mismatches: list[LabelTextMismatch] = field(default_factory=list)  # kept, listed


def write_manifest(out_dir: str | Path, meta: ManifestMeta, splits: dict[str, list[Sample]]) -> Path:
    """Each file is written aside and renamed onto its path, so rewriting a manifest (`mmkd flow`
    adds its flow) never leaves a half-written file for a reader; meta.json goes last."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta.splits = list(splits)
    for name, samples in splits.items():
        with _replacing(out / f"{name}.jsonl") as fh:
            for s in samples:
                fh.write(json.dumps(_record(s), separators=(",", ":")) + "\n")
    with _replacing(out / META_FILE) as fh:
        fh.write(json.dumps(dataclasses.asdict(meta), indent=2) + "\n")
    return out


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[TextIO]:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_meta(manifest_dir: str | Path) -> ManifestMeta:
    path = Path(manifest_dir) / META_FILE
    if not path.exists():
        raise MmkdError(f"{path}: no manifest here; build one with `mmkd manifest ...`")
    data = json.loads(read_text(path))
    if data.get("format_version") != FORMAT_VERSION:
        raise MmkdError(f"{path}: manifest format {data.get('format_version')} is not "
                        f"{FORMAT_VERSION}; rebuild it with `mmkd manifest ...`")
    return ManifestMeta(**data)


def read_split(manifest_dir: str | Path, split: str) -> list[Sample]:
    path = Path(manifest_dir) / f"{split}.jsonl"
    if not path.exists():
        raise MmkdError(f"{path}: split {split!r} not in this manifest (have: "
                        f"{', '.join(read_meta(manifest_dir).splits)})")
    out = []
    for line_no, line in enumerate(io.StringIO(read_text(path)), 1):
        try:
            out.append(Sample(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as exc:
            raise MmkdError(f"{path}:{line_no}: not a manifest record ({exc}); "
                            "rebuild the manifest with `mmkd manifest ...`") from None
    return out


def read_all(manifest_dir: str | Path) -> tuple[ManifestMeta, list[Sample]]:
    """All splits concatenated in meta order: the cache's sample order."""
    meta = read_meta(manifest_dir)
    return meta, [s for split in meta.splits for s in read_split(manifest_dir, split)]


def media_path(path: str | Path, media_root: str | Path) -> str:
    """How a builder stores a location: relative to the media root when inside it, else absolute."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    if media_root:
        rel = os.path.relpath(p, Path(media_root).absolute())
        if not rel.startswith(".."):
            return Path(rel).as_posix()
    return p.as_posix()


def resolve(meta: ManifestMeta, rel: str, manifest_dir: str | Path | None = None) -> Path:
    """Absolute path of a media location (relative to media_root, itself relative to the manifest)."""
    p = Path(rel)
    if p.is_absolute():
        return p
    root = Path(meta.media_root)
    if not root.is_absolute() and manifest_dir is not None:
        root = Path(manifest_dir) / root
    return root / p


def manifest_hash(samples: list[Sample]) -> str:
    """sha256 over the records: the cache refuses tokens built from another manifest."""
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps(_record(s), sort_keys=True).encode())
    return h.hexdigest()


_SAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(Sample))


def _record(s: Sample) -> dict[str, Any]:
    """The JSON record of a sample: `dataclasses.asdict` without its deep copy (5x faster when
    hashing 74k EPIC-size records; the same JSON, so the same manifest hash)."""
    return {name: getattr(s, name) for name in _SAMPLE_FIELDS}
