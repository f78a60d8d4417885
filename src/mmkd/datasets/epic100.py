"""EPIC-KITCHENS-100 manifests from the official annotation files (Epic-Kitchens* splits).

Splits written (the paper's Sec. 4):
- `train` / `val`: the official EPIC_100_train.csv split 90/10 *by action segment*. A segment
  goes to `val` when sha256(f"{seed}:{narration_id}") ranks in the lowest 10% of all training
  segments: reproducible from the seed alone, independent of row order, Python/NumPy versions
  and platform. (The paper does not publish its split; this is ours.)
- `test`: the official EPIC_100_validation.csv, *pruned*: segments whose noun class never occurs
  in the official training file are dropped (the paper found four such nouns). Pruning uses the
  whole official training file (train + val here), as the paper does, so `test` is identical
  for the paper's "Epic-Kitchens" (train on train+val) and "Epic-Kitchens*" protocols.

Media follow the EPIC layout under the media root: `<P>/videos/<video>.MP4`,
`<P>/rgb_frames/<video>/frame_%010d.jpg` (60 fps for `PXX_YY`, 50 fps for `PXX_1YY` videos),
`<P>/flow_frames/<video>/{u,v}/frame_%010d.jpg` (stride 2 / 1), audio from one HDF5 file (one
dataset per video) or `<P>/audio/<video>.wav`, boxes from an optional Something-Else-format file
whose frame names carry RGB frame numbers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from mmkd.config import demo_preset, epic100_preset
from mmkd.datasets import csvio
from mmkd.datasets.boxes import BoxFrame, frame_stride, load_box_file
from mmkd.datasets.labels import ClassList, LabelTextMismatch, check_text, mismatch_notes
from mmkd.datasets.manifest import (
    BuildReport,
    ManifestMeta,
    Progress,
    Sample,
    media_path,
    write_manifest,
)
from mmkd.datasets.spec import DatasetSpec, register_dataset
from mmkd.errors import MmkdError

TRAIN_CSV = "EPIC_100_train.csv"
VALIDATION_CSV = "EPIC_100_validation.csv"
VERB_CSV = "EPIC_100_verb_classes.csv"
NOUN_CSV = "EPIC_100_noun_classes.csv"
VIDEO_INFO_CSV = "EPIC_100_video_info.csv"
UNSEEN_CSV = "EPIC_100_unseen_participant_ids_validation.csv"
SEGMENT_COLUMNS = [
    "narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
    "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
    "noun_class", "all_nouns", "all_noun_classes",
]
FRAME_TEMPLATE = "frame_%010d.jpg"
AUDIO_HDF5 = "EPIC_audio.hdf5"
BOXES_JSON = "detections.json"
EPIC_AUDIO_RATE = 24000  # the common EPIC audio HDF5 packing: mono 24 kHz, no attributes
_VIDEO_ID = re.compile(r"^(P\d+)_(\d+)$")
_FIX_ANNOTATIONS = ("download the official files from "
                    "github.com/epic-kitchens/epic-kitchens-100-annotations")


@dataclass
class VideoInfo:
    duration: float
    fps: float
    width: int
    height: int


def read_classes(path: Path, head: str) -> ClassList:
    """EPIC_100_{verb,noun}_classes.csv: ids must be 0..C-1 in order."""
    _, rows = csvio.read_csv(path, ["id", "key", "instances"])
    names: list[str] = []
    instances: list[set[str]] = []
    for row in rows:
        cid = csvio.parse_int(row.cell("id"), what="class id",
                              fix=f"ids must run 0, 1, 2, ... in order; expected {len(names)}")
        if cid != len(names):
            raise row.cell("id").error(f"class id {cid} is out of order",
                                       f"ids must run 0, 1, 2, ... in order; expected {len(names)}")
        key = row.get("key")
        if not key:
            raise row.cell("key").error("empty class name", "write the class name")
        names.append(key)
        instances.append({str(w) for w in csvio.parse_list(row.cell("instances"))} | {key})
    if not names:
        raise MmkdError(f"{path}: no {head} classes; {_FIX_ANNOTATIONS}")
    return ClassList(head, names, instances)


def read_video_info(path: Path) -> dict[str, VideoInfo]:
    _, rows = csvio.read_csv(path, ["video_id", "duration", "fps", "resolution"])
    out: dict[str, VideoInfo] = {}
    for row in rows:
        res = row.cell("resolution")
        m = re.fullmatch(r"(\d+)x(\d+)", res.value)
        if not m:
            raise res.error(f"{res.value!r} is not a WIDTHxHEIGHT resolution", "write e.g. 1920x1080")
        out[row.get("video_id")] = VideoInfo(csvio.parse_float(row.cell("duration")),
                                              csvio.parse_float(row.cell("fps")),
                                              int(m.group(1)), int(m.group(2)))
    return out


def read_unseen(path: Path) -> set[str]:
    _, rows = csvio.read_csv(path, ["participant_id"])
    return {row.get("participant_id") for row in rows}


def rgb_rate(cell: csvio.Cell) -> tuple[float, int]:
    """RGB frame rate and flow stride of a video: (60, 2) for PXX_YY, (50, 1) for PXX_1YY."""
    m = _VIDEO_ID.match(cell.value)
    if not m or len(m.group(2)) not in (2, 3):
        raise cell.error(f"{cell.value!r} is not an EPIC video id",
                         "ids look like P01_11 (EPIC-55, 60 fps) or P01_101 (EPIC-100, 50 fps)")
    return (60.0, 2) if len(m.group(2)) == 2 else (50.0, 1)


@dataclass
class _Media:
    """Where this dataset's media are: resolved once, applied to every segment."""

    audio_hdf5: str
    audio_rate: int
    boxes_path: str
    boxes: dict[str, tuple[BoxFrame, ...]]

    def for_segment(self, s: Sample, participant: str, stride: int, info: VideoInfo) -> dict:
        v = s.video_id
        media: dict[str, dict] = {
            "video": {"path": f"{participant}/videos/{v}.MP4", "fps": info.fps},
            "rgb": {"dir": f"{participant}/rgb_frames/{v}", "template": FRAME_TEMPLATE},
            "flow": {"dir": f"{participant}/flow_frames/{v}", "template": FRAME_TEMPLATE,
                     "stride": stride},
            "audio": ({"path": self.audio_hdf5, "key": v, "sample_rate": self.audio_rate}
                      if self.audio_hdf5 else {"path": f"{participant}/audio/{v}.wav"}),
        }
        frames = self.boxes.get(v, ())
        inside = [f for f in frames if s.start_frame <= f.frame <= s.stop_frame]
        if inside:
            media["detection"] = {"path": self.boxes_path, "key": v, "width": info.width,
                                  "height": info.height, "fps": s.fps,
                                  "frame_stride": frame_stride(frames), "n_frames": len(inside)}
        return media


def read_segments(path: Path, split: str, verbs: ClassList, nouns: ClassList,
                  videos: dict[str, VideoInfo], unseen: set[str], media: _Media,
                  seen_ids: dict[str, str], mismatches: list[LabelTextMismatch],
                  progress: Progress | None = None) -> list[Sample]:
    """One Sample per row of EPIC_100_{train,validation}.csv, every field validated.

    The class id columns are the labels; a verb/noun text outside its class's instances is
    appended to `mismatches` (see mmkd.datasets.labels), not refused."""
    _, rows = csvio.read_csv(path, SEGMENT_COLUMNS)
    out = []
    for row in rows:
        sid = row.get("narration_id")
        if not sid:
            raise row.cell("narration_id").error("empty id", "every segment needs a narration_id")
        if sid in seen_ids:
            raise row.cell("narration_id").error(f"duplicated id {sid!r} (first at {seen_ids[sid]})",
                                                 "keep one row per narration_id")
        seen_ids[sid] = f"{path.name}:{row.line}"
        participant, video = row.get("participant_id"), row.get("video_id")
        fps, stride = rgb_rate(row.cell("video_id"))
        if not video.startswith(participant + "_"):
            raise row.cell("participant_id").error(
                f"{participant!r} does not match video {video!r}", "fix participant_id or video_id")
        if video not in videos:
            raise row.cell("video_id").error(f"video {video!r} is not in {VIDEO_INFO_CSV}",
                                             "fix the id or use the matching video_info file")
        start_s = csvio.parse_timestamp(row.cell("start_timestamp"))
        stop_s = csvio.parse_timestamp(row.cell("stop_timestamp"))
        if stop_s < start_s:
            raise row.cell("stop_timestamp").error(f"stop {stop_s:.2f} s is before start "
                                                   f"{start_s:.2f} s", "swap or fix the times")
        start_frame = csvio.parse_int(row.cell("start_frame"), lo=0, what="frame")
        stop_frame = csvio.parse_int(row.cell("stop_frame"), lo=start_frame, what="frame",
                                     fix=f"stop_frame must be ≥ start_frame ({start_frame})")
        labels = {h.head: _class_id(row, h, sid, mismatches) for h in (verbs, nouns)}
        for cid in csvio.parse_list(row.cell("all_noun_classes")):
            if not isinstance(cid, int) or not 0 <= cid < len(nouns.names):
                raise row.cell("all_noun_classes").error(
                    f"class id {cid!r} is not a noun class (0..{len(nouns.names) - 1})",
                    f"use ids from {NOUN_CSV}")
        s = Sample(sample_id=sid, video_id=video, split=split, labels=labels,
                   participant=participant, unseen=participant in unseen, start_s=start_s,
                   stop_s=stop_s, start_frame=start_frame, stop_frame=stop_frame, fps=fps,
                   narration=row.get("narration"))
        s.media = media.for_segment(s, participant, stride, videos[video])
        out.append(s)
        if progress is not None:
            progress(1)
    return out


def _class_id(row: csvio.Row, classes: ClassList, sid: str,
              mismatches: list[LabelTextMismatch]) -> int:
    head = classes.head
    file = VERB_CSV if head == "verb" else NOUN_CSV
    cid = csvio.parse_int(row.cell(f"{head}_class"), lo=0, hi=len(classes.names) - 1,
                          what="class id", fix=f"use an id from {file}")
    check_text(mismatches, classes, cid, row.get(head), f"{row.path.name}:{row.line}", sid)
    return cid


def holdout(samples: list[Sample], seed: int, fraction: float) -> tuple[list[Sample], list[Sample]]:
    """Seeded split by segment: the `fraction` of ids with the lowest sha256(seed:id) leave train."""
    rank = sorted(samples, key=lambda s: hashlib.sha256(f"{seed}:{s.sample_id}".encode()).digest())
    held = {s.sample_id for s in rank[: round(fraction * len(samples))]}
    return [s for s in samples if s.sample_id not in held], [s for s in samples if s.sample_id in held]


def prune(samples: list[Sample], train: list[Sample], head: str,
          names: list[str]) -> tuple[list[Sample], dict[str, int]]:
    """Drop samples whose `head` class never occurs in `train`; return kept and {class: count}."""
    known = {s.labels[head] for s in train}
    dropped: dict[str, int] = {}
    for s in samples:
        if s.labels[head] not in known:
            key = f"{names[s.labels[head]]} ({s.labels[head]})"
            dropped[key] = dropped.get(key, 0) + 1
    return [s for s in samples if s.labels[head] in known], dict(sorted(dropped.items()))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _audio_rate(path: Path, given: int | None) -> int:
    """EPIC's packed HDF5 has no attributes (24 kHz); a `sample_rate` attribute wins if present."""
    if given:
        return given
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs.get("sample_rate", EPIC_AUDIO_RATE))
    except OSError as exc:
        raise MmkdError(f"{path}: not a readable HDF5 file ({exc}); pass the audio HDF5 "
                        "(--audio-hdf5) or remove it to use <P>/audio/<video>.wav") from None


def build_epic100(annotations: str | Path, media_root: str | Path = "",
                  out_dir: str | Path = "data_manifests/epic100", *,
                  audio_hdf5: str | Path | None = None, audio_sample_rate: int | None = None,
                  boxes: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1,
                  check_media: bool = False, command: str = "",
                  progress: Progress | None = None) -> BuildReport:
    """Read the official files in `annotations`, write train/val/test manifests into `out_dir`."""
    ann = Path(annotations)
    if not ann.is_dir():
        raise MmkdError(f"{ann}: not a folder; pass --annotations the folder holding "
                        f"{TRAIN_CSV}, {VALIDATION_CSV} and the class CSVs")
    files = {name: csvio.require_file(ann / name, "annotation file", _FIX_ANNOTATIONS)
             for name in (TRAIN_CSV, VALIDATION_CSV, VERB_CSV, NOUN_CSV, VIDEO_INFO_CSV,
                          UNSEEN_CSV)}
    if not 0.0 <= val_fraction < 1.0:
        raise MmkdError(f"val fraction {val_fraction} is outside [0, 1); use e.g. 0.1")
    root = Path(media_root).absolute() if str(media_root) else None
    if audio_hdf5 is None and root is not None and (root / AUDIO_HDF5).is_file():
        audio_hdf5 = root / AUDIO_HDF5
    if boxes is None and root is not None and (root / BOXES_JSON).is_file():
        boxes = root / BOXES_JSON
    root_s = str(root) if root else ""
    media = _Media(
        audio_hdf5=media_path(Path(audio_hdf5).absolute(), root_s) if audio_hdf5 else "",
        audio_rate=_audio_rate(Path(audio_hdf5), audio_sample_rate) if audio_hdf5 else 0,
        boxes_path=media_path(Path(boxes).absolute(), root_s) if boxes else "",
        boxes=load_box_file(str(Path(boxes).absolute())) if boxes else {},
    )
    verbs = read_classes(files[VERB_CSV], "verb")
    nouns = read_classes(files[NOUN_CSV], "noun")
    videos = read_video_info(files[VIDEO_INFO_CSV])
    unseen = read_unseen(files[UNSEEN_CSV])
    seen_ids: dict[str, str] = {}
    mismatches: list[LabelTextMismatch] = []
    official_train = read_segments(files[TRAIN_CSV], "train", verbs, nouns, videos, unseen, media,
                                   seen_ids, mismatches, progress)
    validation = read_segments(files[VALIDATION_CSV], "test", verbs, nouns, videos, unseen, media,
                               seen_ids, mismatches, progress)
    train, val = holdout(official_train, seed, val_fraction)
    for s in val:
        s.split = "val"
    test, dropped = prune(validation, official_train, "noun", nouns.names)
    meta = ManifestMeta(
        dataset="epic100", heads={"verb": len(verbs.names), "noun": len(nouns.names)},
        media_root=root_s, command=command, seed=seed,
        classes={"verb": verbs.names, "noun": nouns.names},
        notes={
            "protocol": "Epic-Kitchens*: train/val = official train split 90/10 by segment "
                        "(val = ids with the lowest sha256(f'{seed}:{narration_id}')); test = "
                        "official validation pruned of noun classes absent from official train",
            "val_fraction": val_fraction,
            "eval_split": "test",
            "pruned_noun_classes": dropped,
            "pruned_samples": sum(dropped.values()),
            "label_text_mismatches": mismatch_notes(mismatches),
            "audio": "hdf5" if audio_hdf5 else "wav",
            "boxes": media.boxes_path,
            "sources": {name: _sha256(p) for name, p in files.items()},
        },
    )
    splits = {"train": train, "val": val, "test": test}
    out = write_manifest(out_dir, meta, splits)
    problems = None
    if check_media:
        from mmkd.datasets.media_check import check_media as run_check

        problems = run_check(meta, train + val + test, out, progress)
    return BuildReport(out, meta, {k: len(v) for k, v in splits.items()}, dropped, "test", problems,
                       mismatches)


# No class of EPIC-100's changes under a mirror image.
register_dataset(DatasetSpec("epic100", build_epic100, epic100_preset, flip_safe=True,
                             paper_heads={"verb": 97, "noun": 300}))
# The built-in demo dataset is written in EPIC-100's official formats, so its manifests are built
# by the same code as the real dataset's (`mmkd demo-data` generates it). No flips: open is
# counter-clockwise, close clockwise.
register_dataset(DatasetSpec("demo", build_epic100, demo_preset))
