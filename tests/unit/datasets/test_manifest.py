"""The manifest format itself: round trip, versioning, media locations, hashing."""

from __future__ import annotations

import json

import pytest

from mmkd.datasets.manifest import (
    FORMAT_VERSION,
    ManifestMeta,
    Sample,
    manifest_hash,
    media_path,
    read_all,
    read_meta,
    read_split,
    resolve,
    write_manifest,
)
from mmkd.errors import MmkdError


def _samples() -> dict[str, list[Sample]]:
    a = Sample("a", "v1", "train", {"verb": 1, "noun": 2}, participant="P01", unseen=False,
               start_s=1.5, stop_s=3.0, start_frame=90, stop_frame=180, fps=60.0,
               media={"rgb": {"dir": "P01/rgb_frames/v1", "template": "frame_%010d.jpg"}})
    b = Sample("b", "v2", "test", {"verb": 0, "noun": 0}, unseen=True)
    return {"train": [a], "test": [b]}


def test_round_trip_keeps_order_classes_and_hash(tmp_path):
    meta = ManifestMeta("x", {"verb": 2, "noun": 3}, classes={"verb": ["take", "put"]})
    splits = _samples()
    write_manifest(tmp_path, meta, splits)
    back, samples = read_all(tmp_path)
    assert back.splits == ["train", "test"] and back.classes == {"verb": ["take", "put"]}
    assert back.format_version == FORMAT_VERSION
    assert samples == splits["train"] + splits["test"]
    assert manifest_hash(samples) == manifest_hash(splits["train"] + splits["test"])
    samples[1].labels["noun"] = 1
    assert manifest_hash(samples) != manifest_hash(splits["train"] + splits["test"])


def test_meta_without_classes_still_reads(tmp_path):
    """Manifests written before `classes` existed (same format version) stay readable."""
    write_manifest(tmp_path, ManifestMeta("x", {"a": 2}), {"train": []})
    data = json.loads((tmp_path / "meta.json").read_text())
    del data["classes"]
    (tmp_path / "meta.json").write_text(json.dumps(data))
    assert read_meta(tmp_path).classes == {}


def test_wrong_version_and_bad_record_are_named(tmp_path):
    write_manifest(tmp_path, ManifestMeta("x", {"a": 2}), _samples())
    with open(tmp_path / "test.jsonl", "a") as fh:
        fh.write('{"sample_id": "c"}\n')
    with pytest.raises(MmkdError, match=r"test.jsonl:2: not a manifest record"):
        read_split(tmp_path, "test")
    with pytest.raises(MmkdError, match=r"split 'val' not in this manifest \(have: train, test\)"):
        read_split(tmp_path, "val")
    data = json.loads((tmp_path / "meta.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "meta.json").write_text(json.dumps(data))
    with pytest.raises(MmkdError, match="rebuild it with `mmkd manifest"):
        read_meta(tmp_path)


def test_media_locations_are_relative_to_the_root(tmp_path):
    root = tmp_path / "media"
    assert media_path(root / "P01" / "a.MP4", root) == "P01/a.MP4"
    assert media_path(tmp_path / "elsewhere.h5", root) == str(tmp_path / "elsewhere.h5")
    assert media_path("rel/x.wav", root) == "rel/x.wav"
    meta = ManifestMeta("x", {}, media_root=str(root))
    assert resolve(meta, "P01/a.MP4") == root / "P01" / "a.MP4"
    moved = ManifestMeta("x", {}, media_root="../media")  # relative roots follow the manifest
    assert resolve(moved, "a.MP4", tmp_path / "m") == tmp_path / "m" / ".." / "media" / "a.MP4"


def test_a_non_utf8_byte_in_a_split_names_file_and_line(tmp_path):
    write_manifest(tmp_path, ManifestMeta("x", {"verb": 2, "noun": 3}),
                   {"train": _samples()["train"] * 2})
    path = tmp_path / "train.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"v1"', b'"v\xff"')
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(MmkdError, match=r"train.jsonl:2: not UTF-8 \(byte 0xff"):
        read_split(tmp_path, "train")
