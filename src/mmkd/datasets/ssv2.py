"""Something-Something v2 manifests (+ Something-Else boxes) from the official JSON files.

- Labels: `something-something-v2-labels.json` maps a template to an id string; a video's class
  is found by removing `[` and `]` from its `template` (the official rule). Entries carry no
  class id of their own, so there is no text/id pair to disagree: an unknown template stops.
- Splits are named after the annotation files: `*train*` → `train`, `*validation*` → `val`.
  SSv2 has no labelled test set (its test file holds ids only and is refused); like the paper,
  results are reported on `val` (`meta.notes.eval_split`).
- Media: `<id>.webm` under the media root (12 fps); flow frames where `mmkd flow` writes them
  (`flow_frames/<id>/{u,v}/frame_%010d.jpg`, stride 1: SSv2 ships no flow); boxes from the
  Something-Else files (indexed once into a box store, `box_store.py`, which the manifest points
  at), attached to every video they cover. Box frame names (`<id>/0001.jpg`)
  count the video's frames at 12 fps; coordinates are pixels of the 240-row videos, so the frame
  size is read from the video header when the video is present (else null: read it at load).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from mmkd.config import ssv2_preset
from mmkd.datasets.box_store import STORE_NAME, open_store, prepare_store
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
from mmkd.files import read_text

SSV2_FPS = 12.0
FRAME_TEMPLATE = "frame_%010d.jpg"
LABELS_JSON = "something-something-v2-labels.json"
_SPLIT_WORDS = (("train", "train"), ("validation", "val"), ("val", "val"), ("test", "test"))


def read_labels(path: Path) -> list[str]:
    """Class templates by id; ids must be the strings "0".."C-1"."""
    data = _load_json(path, "the labels file (something-something-v2-labels.json)")
    if not isinstance(data, dict) or not data:
        raise MmkdError(f"{path}: expected a JSON object {{template: id}}; pass "
                        "something-something-v2-labels.json as --labels")
    names: dict[int, str] = {}
    for template, cid in data.items():
        if not str(cid).isdigit() or int(cid) >= len(data) or int(cid) in names:
            raise MmkdError(f"{path}: template {template!r}: id {cid!r} is not a unique id in "
                            f"0..{len(data) - 1}; fix the labels file")
        names[int(cid)] = template
    return [names[i] for i in range(len(data))]


def split_name(path: Path) -> str:
    """`something-something-v2-train.json` → train, `...-validation.json` → val."""
    stem = path.stem.lower()
    for word, split in _SPLIT_WORDS:
        if word in stem:
            return split
    raise MmkdError(f"{path}: cannot tell the split from the file name; name it like "
                    "something-something-v2-train.json or ...-validation.json")


def template_class(template: str) -> str:
    """The official rule: the class is the template without its brackets."""
    return template.replace("[", "").replace("]", "")


def read_annotations(path: Path, split: str, class_ids: dict[str, int], seen: dict[str, str],
                     progress: Progress | None = None) -> list[Sample]:
    out = []
    for i, (line, entry) in enumerate(_json_entries(path)):
        where = f"{path}:{line}: entry {i}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise MmkdError(f"{where}: field 'id' is missing; every entry needs an id")
        vid = str(entry["id"])
        where = f"{path}:{line}: entry {i} (id {vid})"
        if "template" not in entry:
            raise MmkdError(f"{where}: field 'template' is missing (a test file without labels?); "
                            "SSv2 has no labelled test set: pass only train and validation files")
        if vid in seen:
            raise MmkdError(f"{where}: field 'id': duplicated id (first at {seen[vid]}); keep one "
                            "entry per video")
        seen[vid] = f"{path.name}:{line}"
        cls = template_class(str(entry["template"]))
        if cls not in class_ids:
            raise MmkdError(f"{where}: field 'template': unknown label {cls!r}; use the labels "
                            "file that goes with this annotation file")
        out.append(Sample(sample_id=vid, video_id=vid, split=split, labels={"action": class_ids[cls]},
                          fps=SSV2_FPS, narration=str(entry.get("label", "")) or None))
        if progress is not None:
            progress(1)
    return out


def _json_entries(path: Path) -> Iterator[tuple[int, object]]:
    """The elements of a top-level JSON list with the line each starts on, for error messages."""
    if not path.is_file():
        raise MmkdError(f"{path}: annotation file not found; check the path")
    text = read_text(path)
    decoder = json.JSONDecoder()
    pos, line = _skip(text, 0), 1
    if not text.startswith("[", pos):
        raise MmkdError(f"{path}: expected a JSON list of {{id, template, ...}}; pass the "
                        "official train/validation JSON as --annotations")
    pos = _skip(text, pos + 1)
    counted = 0
    while not text.startswith("]", pos):
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise MmkdError(f"{path}:{exc.lineno}: column {exc.colno}: not valid JSON "
                            f"({exc.msg}); re-download the official file") from None
        yield line, entry
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif not text.startswith("]", pos):
            ln = text.count("\n", 0, pos) + 1
            raise MmkdError(f"{path}:{ln}: expected ',' or ']' after entry; re-download the "
                            "official file")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _load_json(path: Path, what: str):
    if not path.is_file():
        raise MmkdError(f"{path}: {what} not found; check the path")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise MmkdError(f"{path}:{exc.lineno}: column {exc.colno}: not valid JSON ({exc.msg}); "
                        "re-download the official file") from None


def _frame_size(video: Path) -> tuple[int | None, int | None]:
    """Width and height from the container header (about 2 ms a video), None when absent."""
    if not video.is_file():
        return None, None
    import av

    try:
        with av.open(str(video)) as c:
            ctx = c.streams.video[0].codec_context
            return ctx.width, ctx.height
    except (av.error.FFmpegError, IndexError):
        return None, None


def build_ssv2(annotations: str | Path | list, media_root: str | Path = "",
               out_dir: str | Path = "data_manifests/ssv2", *, labels: str | Path | None = None,
               boxes: list[str | Path] | None = None, boxes_store: str | Path | None = None,
               check_media: bool = False, command: str = "",
               progress: Progress | None = None) -> BuildReport:
    """`annotations`: the train/validation JSON files, or a folder holding them and the labels.

    `boxes`: the Something-Else JSON files, indexed into `boxes_store` (default
    `<out_dir>/boxes.h5`; skipped when up to date), or one store built before.
    """
    files = _annotation_files(annotations)
    if labels is None:
        labels = files[0].parent / LABELS_JSON
    names = read_labels(Path(labels))
    class_ids = {template_class(n): i for i, n in enumerate(names)}
    root = Path(media_root).absolute() if str(media_root) else None
    root_s = str(root) if root else ""
    seen: dict[str, str] = {}
    splits: dict[str, list[Sample]] = {}
    for f in files:
        split = split_name(f)
        splits.setdefault(split, []).extend(read_annotations(f, split, class_ids, seen, progress))
    box_rel, box_videos = "", {}
    if boxes:
        store = prepare_store(boxes, boxes_store or Path(out_dir) / STORE_NAME).path
        box_rel, box_videos = media_path(store, root_s), open_store(str(store)).summary()
    for samples in splits.values():
        for s in samples:
            s.media = {
                "video": {"path": f"{s.video_id}.webm", "fps": SSV2_FPS},
                "flow": {"dir": f"flow_frames/{s.video_id}", "template": FRAME_TEMPLATE,
                         "stride": 1},
            }
            if s.video_id in box_videos:
                n_frames, stride = box_videos[s.video_id]
                width, height = _frame_size(root / f"{s.video_id}.webm") if root else (None, None)
                s.media["detection"] = {"path": box_rel, "key": s.video_id, "width": width,
                                        "height": height, "fps": SSV2_FPS,
                                        "frame_stride": stride, "n_frames": n_frames}
    order = [s for s in ("train", "val", "test") if s in splits]
    splits = {s: splits[s] for s in order}
    meta = ManifestMeta(
        dataset="ssv2", heads={"action": len(names)}, media_root=root_s, command=command,
        classes={"action": [template_class(n) for n in names]},
        notes={"eval_split": "val",
               "protocol": "splits named after the official files; SSv2 has no labelled test set, "
                           "so results are reported on val (as the paper does)",
               "boxes": [box_rel] if box_rel else [],
               "videos_with_boxes": sum("detection" in s.media for v in splits.values() for s in v)},
    )
    out = write_manifest(out_dir, meta, splits)
    problems = None
    if check_media:
        from mmkd.datasets.media_check import check_media as run_check

        problems = run_check(meta, [s for v in splits.values() for s in v], out, progress)
    return BuildReport(out, meta, {k: len(v) for k, v in splits.items()}, media_problems=problems)


def _annotation_files(annotations: str | Path | list) -> list[Path]:
    if isinstance(annotations, (list, tuple)):
        files = [Path(a) for a in annotations]
    elif Path(annotations).is_dir():
        files = sorted(p for p in Path(annotations).glob("*.json")
                       if split_name_or_none(p) in ("train", "val"))
    else:
        files = [Path(annotations)]
    if not files:
        raise MmkdError(f"{annotations}: no train/validation JSON files; pass them with "
                        "--annotations something-something-v2-train.json ...")
    return files


def split_name_or_none(path: Path) -> str | None:
    try:
        return split_name(path)
    except MmkdError:
        return None


# "Pushing something from left to right": flips would change its labels.
register_dataset(DatasetSpec("ssv2", build_ssv2, ssv2_preset, paper="ssv2",
                             paper_heads={"action": 174}))
