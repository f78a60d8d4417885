"""Bring your own dataset: one CSV row per sample → a manifest (schema in data_manifests/README.md).

Columns (header names; order free):
- required: `sample_id` (unique), `video_id`, `split` (any name: train, val, test, ...), and one
  or more `label_<head>` columns (e.g. `label_verb`, `label_noun`; or just `label_action`).
- optional: `participant`, `unseen` (true/false), `start_s`, `stop_s` (seconds or HH:MM:SS.ss),
  `start_frame`, `stop_frame`, `fps` (RGB frame rate; frames are derived from seconds as EPIC
  does, floor(t × fps), when only seconds are given), `narration`.
- media, any subset, an empty cell meaning "missing for this sample": `video` (file), `rgb`
  (frame folder; `rgb_template`, default frame_%010d.jpg), `flow` (folder with u/ and v/;
  `flow_template`, `flow_stride`, default 1), `audio` (a sound file, or an .h5/.hdf5 file with one
  dataset per `audio_key`, default the video id, at `audio_sample_rate`, default 24000),
  `detection` (a Something-Else JSON file; `detection_key` default the video id,
  `detection_width`, `detection_height`, `detection_fps` default `fps`).
Relative media paths are relative to `media_root` (default: the CSV's folder).
Labels are integer class ids, or class names when a class list is given for that head (one
name per line, or an EPIC-style CSV with `id,key[,instances]`, or a JSON list). Without a class
list, names become classes in sorted order and integer ids imply `max id + 1` classes.
An optional `text_<head>` column holds the label as annotated (e.g. the narrated verb); where
the classes have names, a text that is neither the class name nor one of its `instances` is
listed as a label-text mismatch (mmkd.datasets.labels), and the label stays.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mmkd.config import epic100_preset
from mmkd.datasets import csvio
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
from mmkd.files import read_text

REQUIRED = ["sample_id", "video_id", "split"]
DEFAULT_TEMPLATE = "frame_%010d.jpg"
DEFAULT_AUDIO_RATE = 24000


def read_class_list(path: Path, head: str) -> ClassList:
    """Classes by id from a text file (one name per line), an id,key[,instances] CSV or a JSON
    list; a class covers its name and, from such a CSV, its instances."""
    if not path.is_file():
        raise MmkdError(f"{path}: class list not found; check --classes HEAD=FILE")
    if path.suffix.lower() == ".json":
        data = json.loads(read_text(path))
        if not isinstance(data, list):
            raise MmkdError(f"{path}: expected a JSON list of class names")
        return _named(head, [str(x) for x in data])
    if path.suffix.lower() == ".csv":
        header, rows = csvio.read_csv(path, ["id", "key"])
        classes = ClassList(head, [], [])
        for row in rows:
            csvio.parse_int(row.cell("id"), lo=len(classes.names), hi=len(classes.names),
                            what="class id", fix="ids must run 0, 1, 2, ... in order")
            words = ({str(w) for w in csvio.parse_list(row.cell("instances"))}
                     if "instances" in header else set())
            classes.names.append(row.get("key"))
            classes.instances.append(words | {row.get("key")})
        return classes
    return _named(head, [line.strip() for line in read_text(path).splitlines() if line.strip()])


def _named(head: str, names: list[str]) -> ClassList:
    return ClassList(head, names, [{n} for n in names])


def _media(row: csvio.Row, root: str, video_id: str, fps: float | None) -> dict[str, dict]:
    def loc(column: str) -> str:
        return media_path(row.get(column), root)

    def template(column: str) -> str:
        cell = row.cell(column)
        value = cell.value or DEFAULT_TEMPLATE
        try:
            value % 1
        except (TypeError, ValueError):
            raise cell.error(f"{value!r} is not a frame file template",
                             "write a printf pattern such as frame_%010d.jpg") from None
        return value

    media: dict[str, dict] = {}
    if row.get("video"):
        media["video"] = {"path": loc("video")}
    if row.get("rgb"):
        media["rgb"] = {"dir": loc("rgb"), "template": template("rgb_template")}
    if row.get("flow"):
        stride = (csvio.parse_int(row.cell("flow_stride"), lo=1, what="stride")
                  if row.get("flow_stride") else 1)
        media["flow"] = {"dir": loc("flow"), "template": template("flow_template"), "stride": stride}
    if row.get("audio"):
        path = loc("audio")
        if Path(path).suffix.lower() in (".h5", ".hdf5"):
            rate = (csvio.parse_int(row.cell("audio_sample_rate"), lo=1, what="sample rate")
                    if row.get("audio_sample_rate") else DEFAULT_AUDIO_RATE)
            media["audio"] = {"path": path, "key": row.get("audio_key") or video_id,
                              "sample_rate": rate}
        else:
            media["audio"] = {"path": path}
    if row.get("detection"):
        det: dict = {"path": loc("detection"), "key": row.get("detection_key") or video_id}
        for name in ("width", "height"):
            col = f"detection_{name}"
            det[name] = (csvio.parse_int(row.cell(col), lo=1, what=name) if row.get(col) else None)
        det["fps"] = (csvio.parse_float(row.cell("detection_fps"), "frame rate")
                      if row.get("detection_fps") else fps)
        media["detection"] = det
    return media


def _frames(row: csvio.Row, start_s: float | None, stop_s: float | None,
            fps: float | None) -> tuple[int | None, int | None]:
    start = (csvio.parse_int(row.cell("start_frame"), lo=0, what="frame")
             if row.get("start_frame") else None)
    stop = (csvio.parse_int(row.cell("stop_frame"), lo=start or 0, what="frame",
                            fix="stop_frame must be ≥ start_frame") if row.get("stop_frame") else None)
    if fps and start is None and start_s is not None:
        start = max(1, math.floor(start_s * fps))
    if fps and stop is None and stop_s is not None:
        stop = max(start or 1, math.floor(stop_s * fps))
    return start, stop


def build_custom(annotations: str | Path, media_root: str | Path = "",
                 out_dir: str | Path = "data_manifests/custom", *, name: str = "custom",
                 classes: dict[str, str | Path] | None = None, check_media: bool = False,
                 command: str = "", progress: Progress | None = None) -> BuildReport:
    """`annotations` is the CSV file described in this module's docstring."""
    path = Path(annotations)
    csvio.require_file(path, "custom dataset CSV", "pass --csv FILE (schema: data_manifests/README.md)")
    header, rows = csvio.read_csv(path, REQUIRED)
    heads = [h[len("label_"):] for h in header if h.startswith("label_") and len(h) > len("label_")]
    if not heads:
        raise MmkdError(f"{path}:1: no label column; add one or more columns named label_<head>, "
                        "e.g. label_action or label_verb,label_noun")
    for t in header:
        if t.startswith("text_") and t[len("text_"):] not in heads:
            raise MmkdError(f"{path}:1: column {t!r} has no label column label_{t[len('text_'):]}"
                            f" (heads: {', '.join(heads)}); rename it or add the label column")
    given = {h: read_class_list(Path(f), h) for h, f in (classes or {}).items()}
    for h in given:
        if h not in heads:
            raise MmkdError(f"--classes {h}=...: the CSV has no column label_{h} "
                            f"(heads: {', '.join(heads)}); fix the head name")
    # relative media paths are relative to the media root, by default the CSV's own folder
    root_s = str(Path(media_root).absolute() if str(media_root) else path.parent.absolute())
    seen: dict[str, int] = {}
    samples: list[Sample] = []
    raw_labels: list[tuple[csvio.Row, dict[str, str]]] = []
    for row in rows:
        sid = row.get("sample_id")
        for col in REQUIRED:
            if not row.get(col):
                raise row.cell(col).error("empty value", f"every row needs a {col}")
        if sid in seen:
            raise row.cell("sample_id").error(f"duplicated id {sid!r} (first at line {seen[sid]})",
                                              "make sample ids unique")
        seen[sid] = row.line
        start_s = csvio.parse_seconds(row.cell("start_s")) if row.get("start_s") else None
        stop_s = csvio.parse_seconds(row.cell("stop_s")) if row.get("stop_s") else None
        if start_s is not None and stop_s is not None and stop_s < start_s:
            raise row.cell("stop_s").error(f"stop {stop_s} s is before start {start_s} s",
                                           "swap or fix the times")
        fps = csvio.parse_float(row.cell("fps"), "frame rate") if row.get("fps") else None
        if fps is not None and fps <= 0:
            raise row.cell("fps").error(f"frame rate {fps} is not positive", "write e.g. 30")
        start_frame, stop_frame = _frames(row, start_s, stop_s, fps)
        for h in heads:
            if not row.get(f"label_{h}"):
                raise row.cell(f"label_{h}").error("empty label", "give every sample a label")
        raw_labels.append((row, {h: row.get(f"label_{h}") for h in heads}))
        samples.append(Sample(
            sample_id=sid, video_id=row.get("video_id"), split=row.get("split"), labels={},
            participant=row.get("participant") or None,
            unseen=csvio.parse_bool(row.cell("unseen")) if row.get("unseen") else None,
            start_s=start_s, stop_s=stop_s, start_frame=start_frame, stop_frame=stop_frame,
            fps=fps, narration=row.get("narration") or None,
            media=_media(row, root_s, row.get("video_id"), fps)))
        if progress is not None:
            progress(1)
    if not samples:
        raise MmkdError(f"{path}: no rows after the header; add one row per sample")
    class_names = {h: given[h].names if h in given else _implied_classes(h, raw_labels)
                   for h in heads}
    lookup = {h: {n: i for i, n in enumerate(names)} for h, names in class_names.items()}
    # texts are compared where classes have names: a class list, or names used as labels
    named = {h: given.get(h) or _named(h, class_names[h]) for h in heads
             if f"text_{h}" in header and (h in given or not raw_labels[0][1][h].isdigit())}
    mismatches: list[LabelTextMismatch] = []
    for s, (row, _) in zip(samples, raw_labels, strict=True):
        s.labels = {h: _label_id(row.cell(f"label_{h}"), lookup[h]) for h in heads}
        for h, cl in named.items():
            check_text(mismatches, cl, s.labels[h], row.get(f"text_{h}"),
                       f"{path.name}:{row.line}", s.sample_id)
    splits: dict[str, list[Sample]] = {}
    for s in samples:
        splits.setdefault(s.split, []).append(s)
    meta = ManifestMeta(dataset=name, heads={h: len(c) for h, c in class_names.items()},
                        media_root=root_s, command=command, classes=class_names,
                        notes={"source": str(path.absolute()),
                               "label_text_mismatches": mismatch_notes(mismatches)})
    out = write_manifest(out_dir, meta, splits)
    problems = None
    if check_media:
        from mmkd.datasets.media_check import check_media as run_check

        problems = run_check(meta, samples, out, progress)
    return BuildReport(out, meta, {k: len(v) for k, v in splits.items()}, media_problems=problems,
                       label_mismatches=mismatches)


def _implied_classes(head: str, raw: list[tuple[csvio.Row, dict[str, str]]]) -> list[str]:
    """Integer ids → `max + 1` classes named by their id; names → sorted unique names."""
    values = [labels[head] for _, labels in raw]
    if all(v.isdigit() for v in values):
        return [str(i) for i in range(max(int(v) for v in values) + 1)]
    if any(v.isdigit() for v in values):
        row, labels = next((r, la) for r, la in raw if la[head].isdigit())
        raise row.cell(f"label_{head}").error(
            f"class id {labels[head]} mixed with class names in one column",
            f"use names or ids throughout, or give --classes {head}=FILE")
    return sorted(set(values))


def _label_id(cell: csvio.Cell, ids: dict[str, int]) -> int:
    if cell.value in ids:
        return ids[cell.value]
    if cell.value.lstrip("-").isdigit():
        return csvio.parse_int(cell, lo=0, hi=len(ids) - 1, what="class id",
                               fix=f"use an id in 0..{len(ids) - 1} or a class name")
    raise cell.error(f"unknown label {cell.value!r}",
                     f"use one of the {len(ids)} classes of the class list, or fix the list")


# Nothing is known of a custom dataset's classes, so flips stay off; it starts from EPIC's recipes.
register_dataset(DatasetSpec("custom", build_custom, epic100_preset))
