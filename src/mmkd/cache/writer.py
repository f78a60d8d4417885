"""Stage-1 writing: shard-aligned work units, buffered in RAM, published whole.

Why units are shards: zarr rewrites a whole shard file on any write into it, so two writers
sharing a shard silently lose each other's samples. A unit is exactly one shard (and exactly
one chunk of each per-sample array), so any number of processes on any number of hosts can
fill one store as long as each unit has one owner (`units(shard=(I, N))`).

Why a kill -9 loses at most the unit in progress: `finish_unit` writes the token shard and the
per-sample arrays first (each file is written to a temporary name and renamed into place) and
the `done` chunk last. A unit killed before its `done` chunk lands is simply pending again on restart and
is rewritten whole, so nothing is lost or written twice.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from mmkd.cache import schema as S
from mmkd.cache.shard_format import EMPTY, ShardLayout
from mmkd.errors import MmkdError
from mmkd.files import published


@dataclass(frozen=True)
class WorkUnit:
    """Samples [start, stop) of one shard; `id` is the shard number."""

    id: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass
class _UnitBuffer:
    tokens_SKD: np.ndarray
    n_tokens: np.ndarray
    present: np.ndarray
    failure: np.ndarray
    touched: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.touched = np.zeros(len(self.present), dtype=bool)


def parse_shard(spec: str) -> tuple[int, int]:
    """`--shard I/N` (0 <= I < N): worker I of N, e.g. `$SLURM_ARRAY_TASK_ID/8`."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise MmkdError(f"--shard {spec!r}: write it as I/N, e.g. 0/4 (worker 0 of 4)") from None
    if not 0 <= i < n:
        raise MmkdError(f"--shard {spec!r}: I must be in 0..N-1 (SLURM: --array=0-{n - 1})")
    return i, n


IOV_MAX = 1024
F16_EXPONENT = 0x7C00  # all exponent bits set: inf or nan


def _non_finite(x: np.ndarray) -> bool:
    """np.isfinite on float16 runs at <1 GB/s; the exponent-bit test on uint16 is ~10× faster."""
    if x.dtype == np.float16:
        return bool(np.any((x.view(np.uint16) & F16_EXPONENT) == F16_EXPONENT))
    return not bool(np.all(np.isfinite(x)))


def _write_all(fd: int, parts: list[Any]) -> None:
    """writev every buffer, in IOV_MAX batches, finishing any short write."""
    for start in range(0, len(parts), IOV_MAX):
        batch = [memoryview(p).cast("B") for p in parts[start:start + IOV_MAX]]
        want = sum(len(p) for p in batch)
        done = os.writev(fd, batch)
        if done < want:  # rare on regular files; finish byte-exactly
            rest = b"".join(bytes(p) for p in batch)[done:]
            while rest:
                rest = rest[os.write(fd, rest):]


def write_shard(path: Path, tokens_SKD: np.ndarray, lay: ShardLayout) -> None:
    """One shard file in the Zarr v3 `sharding_indexed` format, written directly.

    zarr-python encodes inner chunks one by one (~0.5 ms each, 10× slower than the disk); here
    the rows go out with one writev: each row's bytes and its crc32c, then the (offset, nbytes)
    index and the index's crc32c. Rows past the array's end stay empty in the index.
    """
    tokens_SKD = np.ascontiguousarray(tokens_SKD, dtype="<f2")
    index = np.full((lay.shard_size, 2), EMPTY, dtype="<u8")
    crcs = np.zeros(len(tokens_SKD), dtype="<u4")
    parts: list[Any] = []
    offset = 0 if lay.index_at_end else lay.index_nbytes
    for i, row in enumerate(tokens_SKD):
        parts.append(row)
        if lay.inner_crc:
            crcs[i] = google_crc32c.value(row)
            parts.append(crcs[i:i + 1])
        index[i] = (offset, lay.stored_nbytes)
        offset += lay.stored_nbytes
    index_bytes = index.tobytes()
    index_part = [index_bytes, google_crc32c.value(index_bytes).to_bytes(4, "little")]
    parts = parts + index_part if lay.index_at_end else index_part + parts
    path.parent.mkdir(parents=True, exist_ok=True)
    with published(path, path.parent / f"{path.name}.{uuid.uuid4().hex}.partial") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, parts)
        finally:
            os.close(fd)


class FeatureWriter:
    """Writes one (modality, extractor) feature group; see the module docstring."""

    def __init__(self, cache: S.FeatureGroups, modality: str, extractor: str, theta: int, dim: int,
                 provenance: dict[str, Any]):
        if theta < 1 or dim < 1:
            raise MmkdError(f"{modality}/{extractor}: theta={theta} and dim={dim} must be >= 1")
        self.cache, self.modality, self.extractor = cache, modality, extractor
        self.theta, self.dim = int(theta), int(dim)
        self.provenance = S.normalise({
            "extractor": extractor, **provenance, "modality": modality, "theta": self.theta,
            "dim": self.dim, "dtype": S.TOKENS_DTYPE, "schema_version": S.SCHEMA_VERSION,
            "manifest_hash": cache.manifest_hash})
        cache.ensure_feature_group(modality, extractor, self.provenance)
        S.check_provenance(
            f"{cache.group_path(modality, extractor)}", cache.feature_provenance(modality, extractor),
            self.provenance, fix="these features were extracted with other settings: extract "
            "into a new run directory, or delete this group to re-extract it")
        if cache.mode != "r+":
            raise MmkdError(f"{cache.path}: opened read-only; open with mode='r+' to write")
        self.shard_size = min(cache.shard_size, cache.n)
        self._arrays = {name: cache.array(modality, extractor, name, writable=True)
                        for name in S.FEATURE_ARRAYS}
        self._tokens_dir = cache.group_path(modality, extractor) / "tokens"
        self._layout = ShardLayout.from_metadata(self._tokens_dir / "zarr.json")
        self._buffers: dict[int, _UnitBuffer] = {}
        self._spare: np.ndarray | None = None

    # ------------------------------------------------------------------ units
    def units(self, shard: tuple[int, int] | None = None) -> list[WorkUnit]:
        """All units, or worker I of N's share (every N-th unit starting at I)."""
        n, s = self.cache.n, self.shard_size
        units = [WorkUnit(u, u * s, min(n, (u + 1) * s)) for u in range(-(-n // s))]
        if shard is None:
            return units
        i, count = shard
        if not 0 <= i < count:
            raise MmkdError(f"shard {i}/{count}: I must be in 0..N-1")
        return units[i::count]

    def unit_of(self, index: int) -> WorkUnit:
        if not 0 <= index < self.cache.n:
            raise MmkdError(f"sample index {index} is outside the cache (N={self.cache.n})")
        u = index // self.shard_size
        return WorkUnit(u, u * self.shard_size, min(self.cache.n, (u + 1) * self.shard_size))

    def pending(self, unit: WorkUnit, retry_failed: bool = False) -> np.ndarray:
        """Indices of the unit not yet done (in the store, not counting unfinished buffers);
        with `retry_failed`, also the done samples whose `failure` is set."""
        todo = ~np.asarray(self._arrays["done"][unit.start:unit.stop], dtype=bool)
        if retry_failed:
            failure = self._arrays["failure"][unit.start:unit.stop].tolist()
            todo |= np.array(failure, dtype=str) != ""
        return (unit.start + np.flatnonzero(todo)).astype(np.int64)

    # ------------------------------------------------------------------ buffering
    def _buffer(self, unit: WorkUnit) -> _UnitBuffer:
        buf = self._buffers.get(unit.id)
        if buf is None:
            k = len(unit)
            if self._spare is None:  # one shard-sized array, reused: no page faults per unit
                self._spare = np.empty((self.shard_size, self.theta, self.dim), np.float16)
            tokens_SKD, self._spare = self._spare[:k], None
            buf = _UnitBuffer(tokens_SKD,
                              np.zeros(k, dtype=np.int16), np.zeros(k, dtype=bool),
                              np.full(k, "", dtype=object))
            self._buffers[unit.id] = buf
        return buf

    def write(self, indices: np.ndarray, tokens_BKD: np.ndarray, n_tokens: np.ndarray,
              present: np.ndarray) -> None:
        """Buffer a batch; rows past n_tokens are stored as zeros. Nothing hits disk until
        `finish_unit`."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        tokens_BKD = np.ascontiguousarray(tokens_BKD)
        n_tokens = np.asarray(n_tokens, dtype=np.int64).reshape(-1)
        present = np.asarray(present, dtype=bool).reshape(-1)
        b = len(indices)
        want = (b, self.theta, self.dim)
        if tokens_BKD.shape != want or len(n_tokens) != b or len(present) != b:
            raise MmkdError(f"{self.modality}/{self.extractor}: write() got tokens "
                            f"{tokens_BKD.shape}, n_tokens {n_tokens.shape}, present "
                            f"{present.shape} for {b} indices; expected tokens {want}")
        if np.any((n_tokens < 0) | (n_tokens > self.theta)):
            raise MmkdError(f"{self.modality}/{self.extractor}: n_tokens must be in 0..{self.theta}"
                            f" (got {n_tokens.min()}..{n_tokens.max()})")
        for b_i, idx in enumerate(indices):
            unit = self.unit_of(int(idx))
            buf, row = self._buffer(unit), int(idx) - unit.start
            k = int(n_tokens[b_i]) if present[b_i] else 0
            src = tokens_BKD[b_i, :k]
            if _non_finite(src):
                raise MmkdError(f"{self.modality}/{self.extractor}: sample "
                                f"{self.cache.sample_ids[idx]!r} has non-finite tokens; check the "
                                "extractor's weights and input (or fail() the sample)")
            buf.tokens_SKD[row, :k] = src
            buf.tokens_SKD[row, k:] = 0
            buf.n_tokens[row], buf.present[row] = k, bool(present[b_i])
            buf.failure[row], buf.touched[row] = "", True

    def fail(self, index: int, reason: str) -> None:
        """Record a failed sample: present=False, a failures-table row with the reason."""
        unit = self.unit_of(int(index))
        buf, row = self._buffer(unit), int(index) - unit.start
        buf.tokens_SKD[row] = 0
        buf.n_tokens[row], buf.present[row] = 0, False
        buf.failure[row] = reason.strip() or "unknown error"
        buf.touched[row] = True

    # ------------------------------------------------------------------ publishing
    def finish_unit(self, unit: WorkUnit) -> int:
        """Write the unit's shard and per-sample chunks, then its done flags (last). Returns
        the number of samples newly marked done."""
        buf = self._buffers.pop(unit.id, None)
        if buf is None:
            return 0
        sl = slice(unit.start, unit.stop)
        a = self._arrays
        was_done = np.asarray(a["done"][sl], dtype=bool)
        keep = was_done & ~buf.touched
        if keep.any():  # samples finished by an earlier run: this unit's owner rewrites them
            rows = np.flatnonzero(keep)
            buf.n_tokens[rows] = np.asarray(a["n_tokens"][sl])[rows]
            buf.present[rows] = np.asarray(a["present"][sl])[rows]
            buf.failure[rows] = np.array(a["failure"][sl].tolist(), dtype=object)[rows]
            # only kept present samples' bytes are read (absent ones are zeros), so a unit whose
            # other chunks are corrupted or whose shard is lost can still be rewritten
            stored = rows[buf.present[rows]]
            buf.tokens_SKD[rows] = 0
            if stored.size:
                try:
                    buf.tokens_SKD[stored] = a["tokens"].oindex[unit.start + stored]
                except ValueError as exc:  # zarr's crc32c check: never carry bad bytes over
                    raise MmkdError(
                        f"{self._tokens_dir}/c/{unit.id}/0/0: a sample kept in this unit is "
                        f"corrupted ({exc}); run `mmkd cache verify --mark-failed`, then extract "
                        "again with --retry-failed") from None
        buf.tokens_SKD[~(buf.touched | keep)] = 0  # rows never written: zeros, not done
        write_shard(self._tokens_dir / "c" / str(unit.id) / "0" / "0", buf.tokens_SKD,
                    self._layout)
        if buf.tokens_SKD.base is not None and len(buf.tokens_SKD.base) == self.shard_size:
            self._spare = buf.tokens_SKD.base
        a["n_tokens"][sl] = buf.n_tokens
        a["present"][sl] = buf.present
        a["failure"][sl] = np.array(buf.failure.tolist(), dtype=str)
        a["done"][sl] = was_done | buf.touched
        self._remove_partials(unit)
        return int(np.count_nonzero(buf.touched & ~was_done))

    def _remove_partials(self, unit: WorkUnit) -> None:
        """Temp files a killed run left behind for this unit's files (ours alone to clean)."""
        group = self.cache.group_path(self.modality, self.extractor)
        for name in S.FEATURE_ARRAYS:
            chunk = group / name / "c" / str(unit.id)
            chunk = chunk / "0" / "0" if name == "tokens" else chunk
            for stale in chunk.parent.glob(f"{chunk.name}.*.partial"):
                stale.unlink(missing_ok=True)

    def unfinished(self) -> list[int]:
        """Ids of units with buffered samples that `finish_unit` has not published yet."""
        return sorted(self._buffers)
