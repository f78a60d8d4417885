"""The training-time reader: the Zarr v3 sharding format read directly, not through zarr-python.

Why: zarr-python spends 0.45–0.85 ms of CPU per chunk (PERFORMANCE.md) while copying one
sample's 600 KB takes ~0.05 ms, so its read API reaches 2–9% of the hardware. A shard file
(`sharding_indexed`, index at the end) is the inner chunks' bytes followed by an index of
(offset, nbytes) uint64 pairs and its crc32c; we read each shard's index once, then `preadv`
each sample's bytes straight into a page+64-byte aligned staging buffer (page-aligned buffers
hit 4K aliasing and halve copy speed) and convert float16 → float32 into the caller's
preallocated tensor. zarr-python stays the reference the tests compare against.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google_crc32c
import numpy as np
import torch

from mmkd.cache import schema as S
from mmkd.cache.shard_format import EMPTY, ShardLayout, aligned_empty
from mmkd.errors import MmkdError

if TYPE_CHECKING:
    from mmkd.cache.store import Cache

MAX_OPEN_FILES = 512


class ShardIndexError(MmkdError):
    """A shard file is missing, truncated or its index checksum does not match."""


class ShardFiles:
    """Open shard files and their decoded indices, each read once."""

    def __init__(self, tokens_dir: Path, layout: ShardLayout):
        self.dir, self.layout = tokens_dir, layout
        self._fds: dict[int, int] = {}
        self._offsets: dict[int, np.ndarray] = {}

    def path(self, shard: int) -> Path:
        return self.dir / "c" / str(shard) / "0" / "0"

    def fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            if len(self._fds) >= MAX_OPEN_FILES:
                self.close()
            try:
                fd = os.open(self.path(shard), os.O_RDONLY)
            except FileNotFoundError:
                raise ShardIndexError(f"{self.path(shard)}: shard file missing although its "
                                      "samples are marked done; run `mmkd cache verify`") from None
            self._fds[shard] = fd
        return fd

    def offsets(self, shard: int) -> np.ndarray:
        """Byte offset of each inner chunk in the shard file (-1 where the chunk is absent)."""
        off = self._offsets.get(shard)
        if off is None:
            off = self._read_index(shard)
            self._offsets[shard] = off
        return off

    def _read_index(self, shard: int) -> np.ndarray:
        lay, fd = self.layout, self.fd(shard)
        size = os.fstat(fd).st_size
        where = f"{self.path(shard)}"
        if size < lay.index_nbytes:
            raise ShardIndexError(f"{where}: {size} bytes, shorter than its index; the file is "
                                  "truncated: run `mmkd cache verify`, then re-extract")
        pos = size - lay.index_nbytes if lay.index_at_end else 0
        raw = os.pread(fd, lay.index_nbytes, pos)
        body, crc = raw[:-4], int.from_bytes(raw[-4:], "little")
        if google_crc32c.value(body) != crc:
            raise ShardIndexError(f"{where}: shard index checksum mismatch (truncated or "
                                  "corrupted file); run `mmkd cache verify`, then re-extract")
        pairs = np.frombuffer(body, dtype="<u8").reshape(lay.shard_size, 2)
        present = pairs[:, 0] != EMPTY
        bad = present & ((pairs[:, 1] != lay.stored_nbytes) | (pairs[:, 0] + pairs[:, 1] > size))
        if bad.any():
            raise ShardIndexError(f"{where}: inner chunk {int(np.argmax(bad))} has a wrong size "
                                  "or lies past the end of the file; run `mmkd cache verify`")
        return np.where(present, pairs[:, 0].astype(np.int64), -1)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


class FeatureReader:
    """Random-access reads of one (modality, extractor) group into preallocated tensors."""

    def __init__(self, cache: Cache, modality: str, extractor: str, in_ram: bool = False,
                 expect: dict[str, Any] | None = None):
        self.cache, self.modality, self.extractor = cache, modality, extractor
        self.provenance = cache.feature_provenance(modality, extractor)
        if expect:
            S.check_provenance(f"{cache.group_path(modality, extractor)}", self.provenance,
                               expect, keys=sorted(expect), fix="extract these features again "
                               f"(`mmkd extract --modality {modality} --extractor {extractor}`)"
                               " into a new run directory")
        group = cache.group_path(modality, extractor)
        self.layout = ShardLayout.from_metadata(group / "tokens" / "zarr.json")
        self.theta, self.dim = self.layout.theta, self.layout.dim
        self.done = np.asarray(cache.array(modality, extractor, "done")[:], dtype=bool)
        self.present = np.asarray(cache.array(modality, extractor, "present")[:], dtype=bool) \
            & self.done
        self.n_tokens = np.asarray(cache.array(modality, extractor, "n_tokens")[:], np.int64)
        self.files = ShardFiles(group / "tokens", self.layout)
        self._staging_BKD = aligned_empty((0, self.theta, self.dim), np.float16)
        self._ram_NKD: torch.Tensor | None = None
        if in_ram:
            self._load_ram()

    def check_done(self, indices: np.ndarray) -> None:
        if indices.size and (indices.min() < 0 or indices.max() >= self.cache.n):
            raise MmkdError(f"sample indices must be in 0..{self.cache.n - 1}")
        missing = indices[~self.done[indices]]
        if missing.size:
            raise MmkdError(
                f"{self.modality}/{self.extractor}: {missing.size} requested samples are not "
                f"extracted yet (first: {self.cache.sample_ids[missing[0]]!r}); finish them with "
                f"`mmkd extract --modality {self.modality} --extractor {self.extractor}`")

    def read_into(self, indices: np.ndarray, out_BKD: np.ndarray) -> None:
        """float16 bytes of present samples into a (B, Θ, D) float16 array; absent rows zeroed."""
        lay, S_ = self.layout, self.layout.shard_size
        for b, idx in enumerate(indices.tolist()):
            if not self.present[idx]:
                out_BKD[b] = 0
                continue
            shard, inner = divmod(idx, S_)
            off = int(self.files.offsets(shard)[inner])
            if off < 0:
                raise ShardIndexError(f"{self.files.path(shard)}: sample "
                                      f"{self.cache.sample_ids[idx]!r} is marked done but absent "
                                      "from its shard; run `mmkd cache verify`")
            got = os.preadv(self.files.fd(shard), [memoryview(out_BKD[b]).cast("B")], off)
            if got != lay.chunk_nbytes:
                raise ShardIndexError(f"{self.files.path(shard)}: short read of sample "
                                      f"{self.cache.sample_ids[idx]!r}; run `mmkd cache verify`")

    def read(self, indices: np.ndarray, out_BKD: torch.Tensor) -> np.ndarray:
        """Fill `out_BKD` (float32 or float16, (B, Θ, D), preallocated) with the samples' tokens;
        returns `present` (B,). Absent samples (missing media, failures) are zeros."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        b = len(indices)
        if tuple(out_BKD.shape) != (b, self.theta, self.dim) or not out_BKD.is_contiguous():
            raise MmkdError(f"read(): out tensor has shape {tuple(out_BKD.shape)}, expected a "
                            f"contiguous ({b}, {self.theta}, {self.dim})")
        self.check_done(indices)
        if self._ram_NKD is not None:
            if out_BKD.dtype == torch.float16:
                torch.index_select(self._ram_NKD, 0, torch.from_numpy(indices), out=out_BKD)
            else:  # one pass: gather and convert row by row
                for b, idx in enumerate(indices.tolist()):
                    out_BKD[b].copy_(self._ram_NKD[idx])
        elif out_BKD.dtype == torch.float16 and out_BKD.device.type == "cpu":
            self.read_into(indices, out_BKD.numpy())
        else:
            if self._staging_BKD.shape[0] < b:
                self._staging_BKD = aligned_empty((b, self.theta, self.dim), np.float16)
            staging = self._staging_BKD[:b]
            self.read_into(indices, staging)
            out_BKD.copy_(torch.from_numpy(staging))
        return self.present[indices].copy()

    def _load_ram(self) -> None:
        need = self.cache.n * self.layout.chunk_nbytes
        avail = _mem_available()
        if need > 0.8 * avail:
            raise MmkdError(f"{self.modality}/{self.extractor}: {need / 2**30:.1f} GiB of tokens "
                            f"do not fit in RAM ({avail / 2**30:.1f} GiB available); read from "
                            "disk instead (drop in_ram / --in-ram)")
        ram_NKD = aligned_empty((self.cache.n, self.theta, self.dim), np.float16)
        for idx in range(self.cache.n):  # not-done samples stay zero (reads of them are refused)
            if self.done[idx]:
                self.read_into(np.array([idx]), ram_NKD[idx:idx + 1])
            else:
                ram_NKD[idx] = 0
        self._ram_NKD = torch.from_numpy(ram_NKD)

    def close(self) -> None:
        self.files.close()

    def __del__(self) -> None:
        files = getattr(self, "files", None)
        if files is not None:
            files.close()
