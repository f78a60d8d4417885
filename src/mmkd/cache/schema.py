"""The cache's on-disk schema: names, array layouts and the provenance rules, in one place.

Layout of `cache.zarr` (Zarr v3):
  zarr.json                      attrs: schema_version, manifest_hash, n, heads, shard_size
  sample_ids (N,) str, splits (N,) str, labels/<head> (N,) int64      manifest order
  <modality>/<extractor>/        attrs: provenance (schema version, manifest hash, extractor,
                                 weights sha256, preprocessing, theta, dim, dtype, ...)
      tokens     (N, Θ, D) float16  one-sample inner chunks in shards of `shard_size` samples
      n_tokens   (N,) int16         valid tokens per sample (the rest is zero padding)
      present    (N,) bool          False = missing or failed media
      done       (N,) bool          written by the unit's owner after everything else
      failure    (N,) str           '' or the reason extraction failed (the failures table)
  teachers/<id>/logits/<head> (N, C) float32, attrs on teachers/<id>: provenance
The 1-D per-sample arrays are chunked exactly like the token shards, so a writer that owns a
shard also owns every file it touches: concurrent writers never share a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from mmkd.errors import MmkdError

SCHEMA_VERSION = 1
TOKENS_DTYPE = "float16"
NTOKENS_DTYPE = "int16"
ROOT_ARRAYS = ("sample_ids", "splits")
NON_FEATURE_GROUPS = ("labels", "teachers")
FEATURE_ARRAYS = ("tokens", "n_tokens", "present", "done", "failure")
FEATURE_KIND = "mmkd.features"
TEACHER_KIND = "mmkd.teacher"
MIN_SHARD, MAX_SHARD = 1, 4096


class ProvenanceError(MmkdError):
    """The store was built from other inputs (manifest, weights, preprocessing) than expected."""


def normalise(provenance: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip, so tuples/lists and numpy scalars compare like the stored attributes."""
    try:
        return json.loads(json.dumps(provenance, sort_keys=True, default=_json_default))
    except TypeError as exc:
        raise MmkdError(f"provenance must be JSON-able ({exc})") from None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalar
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


def check_provenance(where: str, stored: dict[str, Any], expected: dict[str, Any],
                     fix: str, keys: list[str] | None = None) -> None:
    """Raise ProvenanceError naming every field whose stored value differs from the expected one.

    `keys=None` compares the union of both dicts (a writer must match exactly); readers pass
    only the fields they care about.
    """
    stored, expected = normalise(stored), normalise(expected)
    names = sorted(set(stored) | set(expected)) if keys is None else keys
    diff = [f"{k} (store: {stored.get(k)!r}, expected: {expected.get(k)!r})"
            for k in names if stored.get(k) != expected.get(k)]
    if diff:
        raise ProvenanceError(f"{where}: provenance differs in {'; '.join(diff)}; {fix}")


def check_name(kind: str, name: str) -> str:
    """Group names become directory names; refuse anything that would escape or collide."""
    if not name or "/" in name or name.startswith(".") or name in (*ROOT_ARRAYS,
                                                                    *NON_FEATURE_GROUPS):
        raise MmkdError(f"{kind} name {name!r} cannot be a cache group; use a plain name such "
                        "as 'video' or 'swin3d_b'")
    return name


class FeatureGroups(Protocol):
    """What the shard writer and reader use of `store.Cache`: typed here, below all three, so
    the store imports them (its `feature_writer` / `feature_reader`) and not the reverse."""

    path: Path
    mode: str
    n: int
    shard_size: int
    manifest_hash: str
    sample_ids: list[str]

    def group_path(self, modality: str, extractor: str) -> Path: ...

    def feature_provenance(self, modality: str, extractor: str) -> dict[str, Any]: ...

    def ensure_feature_group(self, modality: str, extractor: str, provenance: dict) -> None: ...

    def array(self, modality: str, extractor: str, name: str, writable: bool = False) -> Any: ...
