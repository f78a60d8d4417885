"""`Cache`: one Zarr v3 store per run holding every stage-1 feature and stage-2 teacher logits.

Creation is race-free for many processes starting at once (SLURM array tasks): each builds the
new node in a private temporary directory and publishes it with one atomic `rename`; a loser of
the race simply opens what the winner published and checks its provenance.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec

from mmkd.cache import schema as S
from mmkd.cache.schema import ProvenanceError
from mmkd.errors import MmkdError

if TYPE_CHECKING:
    from mmkd.cache.shard_reader import FeatureReader
    from mmkd.cache.writer import FeatureWriter
    from mmkd.datasets.manifest import Sample

# teachers/<id>/<kind>/<name>: what each kind holds and the `mmkd train teacher` flag writing it
TEACHER_ARRAYS = {"logits": ("logits", ""), "features": ("pooled features", " --features"),
                  "kv": ("attention Kᵀ V products", " --kv")}


def _read_json(path: Path) -> dict[str, Any]:
    with open(path) as fh:
        return json.load(fh)


def _publish(tmp: Path, final: Path) -> bool:
    """Atomically move a freshly built node into place; False if another process won."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if not (final / "zarr.json").exists():
            raise MmkdError(f"{final} exists but is not a Zarr store; move it away or delete "
                            "it, then run the command again") from None
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def _tmp_dir(root: Path) -> Path:
    """Temporary nodes live next to the store (same file system, so rename is atomic)."""
    return root.parent / f".{root.name}.tmp-{uuid.uuid4().hex}"


class Cache:
    """A run's feature cache (`runs/<name>/cache.zarr`). See `mmkd.cache.schema` for the layout."""

    def __init__(self, path: Path, mode: str):
        self.path = Path(path)
        self.mode = mode
        self._root = zarr.open_group(str(self.path), mode="r+" if mode == "r+" else "r")
        attrs = dict(self._root.attrs)
        if attrs.get("schema_version") != S.SCHEMA_VERSION:
            raise ProvenanceError(
                f"{self.path}: schema_version is {attrs.get('schema_version')!r}, this mmkd "
                f"writes {S.SCHEMA_VERSION}; rebuild the cache (`mmkd extract ...`)")
        self.manifest_hash: str = attrs["manifest_hash"]
        self.n: int = int(attrs["n"])
        self.heads: dict[str, int] = {k: int(v) for k, v in attrs["heads"].items()}
        self.shard_size: int = int(attrs["shard_size"])
        self.sample_ids: list[str] = self._root["sample_ids"][:].tolist()
        self.splits: np.ndarray = np.array(self._root["splits"][:].tolist(), dtype=str)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path: str | Path, samples: list[Sample], heads: dict[str, int],
               manifest_hash: str, shard_size: int = 128) -> Cache:
        """A new store in manifest order; an existing one must have the same manifest hash."""
        path = Path(path)
        if not (S.MIN_SHARD <= shard_size <= S.MAX_SHARD):
            raise MmkdError(f"shard_size={shard_size}: use 64–256 samples per shard "
                            "(extract.shard_size in mmkd.yaml)")
        if not (path / "zarr.json").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp_dir(path)
            try:
                cls._build_root(tmp, samples, heads, manifest_hash, shard_size)
                _publish(tmp, path)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return cls.open(path, mode="r+", manifest_hash=manifest_hash)

    @staticmethod
    def _build_root(tmp: Path, samples: list[Sample], heads: dict[str, int],
                    manifest_hash: str, shard_size: int) -> None:
        ids = [s.sample_id for s in samples]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise MmkdError(f"sample_id {dup!r} occurs twice in the manifest; sample ids must "
                            "be unique (rebuild the manifest)")
        if not samples:
            raise MmkdError("the manifest has no samples; build it with `mmkd manifest ...`")
        n = len(samples)
        root = zarr.open_group(str(tmp), mode="w", attributes={
            "schema_version": S.SCHEMA_VERSION, "manifest_hash": manifest_hash, "n": n,
            "heads": dict(heads), "shard_size": shard_size})
        chunk = (min(n, 65536),)
        root.create_array("sample_ids", shape=(n,), dtype=str, chunks=chunk)[:] = np.array(ids)
        root.create_array("splits", shape=(n,), dtype=str,
                          chunks=chunk)[:] = np.array([s.split for s in samples])
        labels = root.create_group("labels")
        for head in heads:
            values = np.array([s.labels.get(head, -1) for s in samples], dtype=np.int64)
            labels.create_array(head, shape=(n,), dtype="int64", chunks=chunk)[:] = values

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", manifest_hash: str | None = None) -> Cache:
        """Open an existing store; with `manifest_hash`, refuse one built from another manifest."""
        path = Path(path)
        if mode not in ("r", "r+"):
            raise MmkdError(f"cache mode {mode!r}: use 'r' or 'r+'")
        if not (path / "zarr.json").exists():
            raise MmkdError(f"{path}: no feature cache here; fill it with `mmkd extract "
                            "--modality M` in the run directory (or pass --cache RUN_DIR)")
        cache = cls(path, mode)
        if manifest_hash is not None and manifest_hash != cache.manifest_hash:
            raise ProvenanceError(
                f"{path}: provenance differs in manifest_hash (store: {cache.manifest_hash[:12]}…, "
                f"expected: {manifest_hash[:12]}…); the manifest changed since the cache was "
                "built: use a new run directory or delete the cache to rebuild it")
        return cache

    # ------------------------------------------------------------------ root data
    def labels(self, head: str) -> np.ndarray:
        if head not in self.heads:
            raise MmkdError(f"{self.path}: no label head {head!r} (have: "
                            f"{', '.join(self.heads)})")
        return np.asarray(self._root[f"labels/{head}"][:], dtype=np.int64)

    def indices(self, split: str) -> np.ndarray:
        idx = np.flatnonzero(self.splits == split).astype(np.int64)
        if idx.size == 0:
            raise MmkdError(f"{self.path}: no samples in split {split!r} (have: "
                            f"{', '.join(sorted(set(self.splits.tolist())))})")
        return idx

    # ------------------------------------------------------------------ feature groups
    def features(self) -> list[tuple[str, str]]:
        """(modality, extractor) pairs that have a feature group, sorted."""
        out = []
        for mod in sorted(p for p in self.path.iterdir() if p.is_dir()):
            if mod.name in S.NON_FEATURE_GROUPS or mod.name in S.ROOT_ARRAYS:
                continue
            for ext in sorted(p for p in mod.iterdir() if p.is_dir()):
                meta = ext / "zarr.json"
                if meta.exists() and _read_json(meta).get("attributes", {}).get(
                        "kind") == S.FEATURE_KIND:
                    out.append((mod.name, ext.name))
        return out

    def group_path(self, modality: str, extractor: str) -> Path:
        return self.path / modality / extractor

    def feature_provenance(self, modality: str, extractor: str) -> dict[str, Any]:
        meta = self.group_path(modality, extractor) / "zarr.json"
        if not meta.exists():
            have = ", ".join(f"{m}/{e}" for m, e in self.features()) or "none"
            raise MmkdError(
                f"{self.path}: no features for modality {modality!r} with extractor "
                f"{extractor!r} (have: {have}); fill them with `mmkd extract --modality "
                f"{modality} --extractor {extractor}`")
        return _read_json(meta)["attributes"]["provenance"]

    def ensure_feature_group(self, modality: str, extractor: str, provenance: dict) -> None:
        """Create the (modality, extractor) group once, race-free; the writer calls it first.
        The writer and the reader see `Cache` only as a type, so the arrows run store → them."""
        S.check_name("modality", modality)
        S.check_name("extractor", extractor)
        final = self.group_path(modality, extractor)
        if (final / "zarr.json").exists():
            return
        if self.mode != "r+":
            raise MmkdError(f"{self.path}: opened read-only; open with mode='r+' to write")
        mod_meta = self.path / modality / "zarr.json"
        if not mod_meta.exists():  # identical content from every racer; LocalStore writes atomically
            try:
                zarr.open_group(str(self.path / modality), mode="a")
            except zarr.errors.ContainsGroupError:
                pass  # another writer created it between zarr's own check and its create
        tmp = _tmp_dir(self.path)
        try:
            self._build_feature_group(tmp, provenance)
            _publish(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _build_feature_group(self, tmp: Path, provenance: dict) -> None:
        n, shard = self.n, min(self.shard_size, self.n)
        theta, dim = provenance["theta"], provenance["dim"]
        g = zarr.open_group(str(tmp), mode="w",
                            attributes={"kind": S.FEATURE_KIND, "provenance": provenance})
        # crc32c per inner chunk: a checksum (not compression) so `verify` finds flipped bytes.
        g.create_array("tokens", shape=(n, theta, dim), dtype=S.TOKENS_DTYPE,
                       chunks=(1, theta, dim), shards=(shard, theta, dim), fill_value=0,
                       compressors=[Crc32cCodec()], config={"write_empty_chunks": True})
        for name, dtype, fill in (("n_tokens", S.NTOKENS_DTYPE, 0), ("present", "bool", False),
                                  ("done", "bool", False)):
            g.create_array(name, shape=(n,), dtype=dtype, chunks=(shard,), fill_value=fill,
                           compressors=None, config={"write_empty_chunks": True})
        g.create_array("failure", shape=(n,), dtype=str, chunks=(shard,),
                       config={"write_empty_chunks": True})

    def array(self, modality: str, extractor: str, name: str, writable: bool = False):
        self.feature_provenance(modality, extractor)  # a clear error when the group is missing
        arr = zarr.open_array(str(self.group_path(modality, extractor) / name),
                              mode="r+" if writable else "r")
        return arr.with_config({"write_empty_chunks": True}) if writable else arr

    def feature_writer(self, modality: str, extractor: str, theta: int, dim: int,
                       provenance: dict[str, Any]) -> FeatureWriter:
        from mmkd.cache.writer import FeatureWriter

        return FeatureWriter(self, modality, extractor, theta, dim, provenance)

    def feature_reader(self, modality: str, extractor: str, in_ram: bool = False,
                       expect: dict[str, Any] | None = None) -> FeatureReader:
        """Direct shard reader; `expect` (e.g. {"weights_sha256": ...}) must match provenance."""
        from mmkd.cache.shard_reader import FeatureReader

        return FeatureReader(self, modality, extractor, in_ram=in_ram, expect=expect)

    def failures(self) -> list[dict[str, str]]:
        """Rows (modality, extractor, sample_id, reason) of every failed sample."""
        rows = []
        for mod, ext in self.features():
            reasons = np.array(self.array(mod, ext, "failure")[:].tolist(), dtype=str)
            for i in np.flatnonzero(reasons != ""):
                rows.append({"modality": mod, "extractor": ext,
                             "sample_id": self.sample_ids[i], "reason": str(reasons[i])})
        return rows

    # ------------------------------------------------------------------ teacher outputs
    def write_teacher_logits(self, teacher_id: str, head: str, logits_NC: np.ndarray,
                             provenance: dict[str, Any]) -> None:
        """Store (N, C) logits of a trained teacher (overwrites an earlier run of the same id)."""
        S.check_name("teacher", teacher_id)
        if self.mode != "r+":
            raise MmkdError(f"{self.path}: opened read-only; open with mode='r+' to write")
        if head not in self.heads:
            raise MmkdError(f"head {head!r} is not a label head of this cache "
                            f"({', '.join(self.heads)})")
        logits_NC = np.asarray(logits_NC, dtype=np.float32)
        want = (self.n, self.heads[head])
        if logits_NC.shape != want:
            raise MmkdError(f"teacher logits for head {head!r} have shape {logits_NC.shape}, "
                            f"expected {want} (N samples × classes)")
        teacher = zarr.open_group(str(self.path), mode="r+").require_group(
            f"teachers/{teacher_id}")
        teacher.attrs.update({"kind": S.TEACHER_KIND, "manifest_hash": self.manifest_hash,
                              "provenance": S.normalise(provenance)})
        arr = teacher.require_group("logits").create_array(
            head, shape=want, dtype="float32", chunks=(min(self.n, 4096), want[1]),
            compressors=None, overwrite=True)
        arr[:] = logits_NC

    def teachers(self) -> list[str]:
        root = self.path / "teachers"
        return sorted(p.name for p in root.iterdir() if (p / "zarr.json").exists()) \
            if root.is_dir() else []

    def write_teacher_features(self, teacher_id: str, features: dict[str, np.ndarray],
                               kind: str = "features") -> None:
        """Replace one kind of the teacher's per-modality arrays, (N, ·) float16 each (an empty
        dict removes them, so a retrained teacher never leaves stale ones behind): `features`,
        its pooled output tokens (N, d); `kv`, its last block's normalised per-head Kᵀ V
        (N, H·dh·dh). Write the logits first: they create the teacher group and provenance."""
        if self.mode != "r+":
            raise MmkdError(f"{self.path}: opened read-only; open with mode='r+' to write")
        assert kind in TEACHER_ARRAYS and kind != "logits", kind
        self.teacher_provenance(teacher_id)
        shutil.rmtree(self.path / "teachers" / teacher_id / kind, ignore_errors=True)
        if not features:
            return
        group = zarr.open_group(str(self.path), mode="r+").require_group(
            f"teachers/{teacher_id}/{kind}")
        for modality, z_Nd in features.items():
            S.check_name("modality", modality)
            if z_Nd.ndim != 2 or z_Nd.shape[0] != self.n:
                raise MmkdError(f"teacher {kind} for {modality!r} have shape {z_Nd.shape}, "
                                f"expected ({self.n}, d)")
            arr = group.create_array(modality, shape=z_Nd.shape, dtype="float16",
                                     chunks=(min(self.n, 4096), z_Nd.shape[1]), compressors=None)
            arr[:] = np.asarray(z_Nd, dtype=np.float16)

    def _teacher_array(self, teacher_id: str, kind: str, name: str) -> Path:
        path = self.path / "teachers" / teacher_id / kind / name
        if not (path / "zarr.json").exists():
            what, flag = TEACHER_ARRAYS[kind]
            name_opt = "" if teacher_id == "teacher" else f" --name {teacher_id}"
            raise MmkdError(f"{self.path}: no {what} of teacher {teacher_id!r} for "
                            f"{'head' if kind == 'logits' else 'modality'} {name!r} (teachers: "
                            f"{', '.join(self.teachers()) or 'none'}); write them with "
                            f"`mmkd train teacher{name_opt}{flag}`")
        return path

    def require_teacher_output(self, teacher_id: str, kind: str, name: str) -> None:
        """Raise the error `teacher_logits`/`teacher_features` would, without reading data."""
        self._teacher_array(teacher_id, kind, name)

    def teacher_logits(self, teacher_id: str, head: str) -> np.ndarray:
        path = self._teacher_array(teacher_id, "logits", head)
        return np.asarray(zarr.open_array(str(path), mode="r")[:], dtype=np.float32)

    def teacher_feature_modalities(self, teacher_id: str, kind: str = "features") -> list[str]:
        root = self.path / "teachers" / teacher_id / kind
        return sorted(p.name for p in root.iterdir() if (p / "zarr.json").exists()) \
            if root.is_dir() else []

    def teacher_features(self, teacher_id: str, modality: str, kind: str = "features"
                         ) -> np.ndarray:
        """(N, ·) float16 of this modality: the pooled output token (`features`, (N, d)) or the
        normalised per-head Kᵀ V (`kv`, (N, H·dh·dh))."""
        path = self._teacher_array(teacher_id, kind, modality)
        return np.asarray(zarr.open_array(str(path), mode="r")[:], dtype=np.float16)

    def teacher_provenance(self, teacher_id: str) -> dict[str, Any]:
        meta = self.path / "teachers" / teacher_id / "zarr.json"
        if not meta.exists():
            raise MmkdError(f"{self.path}: no teacher {teacher_id!r}; run `mmkd train teacher`")
        return _read_json(meta)["attributes"].get("provenance", {})
