"""The Zarr v3 `sharding_indexed` layout mmkd writes and reads directly (no torch needed).

A shard file holds the inner chunks' bytes (one sample each, little-endian float16, each
followed by its crc32c) and, at the end, an index of (offset, nbytes) uint64 pairs per inner
chunk plus the index's own crc32c; absent chunks have offset = nbytes = 2**64-1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkd.cache import schema as S
from mmkd.errors import MmkdError

EMPTY = np.uint64(2**64 - 1)


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 4096,
                  offset: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts `offset` bytes past a page boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align + offset, dtype=np.uint8)
    start = (-raw.ctypes.data) % align + offset
    return raw[start:start + nbytes].view(dtype).reshape(shape)


@dataclass(frozen=True)
class ShardLayout:
    """What the reader needs from `tokens/zarr.json`, validated against what it can read."""

    n: int
    theta: int
    dim: int
    shard_size: int
    chunk_nbytes: int  # payload bytes of one sample
    inner_crc: bool  # each inner chunk ends with a 4-byte crc32c
    index_at_end: bool

    @property
    def index_nbytes(self) -> int:
        return self.shard_size * 16 + 4

    @property
    def stored_nbytes(self) -> int:
        return self.chunk_nbytes + (4 if self.inner_crc else 0)

    @classmethod
    def from_metadata(cls, meta_path: Path) -> ShardLayout:
        meta = json.loads(meta_path.read_text())
        n, theta, dim = meta["shape"]
        shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
        codecs = meta["codecs"]
        problem = None
        if meta["data_type"] != S.TOKENS_DTYPE or len(codecs) != 1 or \
                codecs[0]["name"] != "sharding_indexed":
            problem = "not a float16 sharded array"
        else:
            cfg = codecs[0]["configuration"]
            inner = [c["name"] for c in cfg["codecs"]]
            index = [c["name"] for c in cfg["index_codecs"]]
            endian = cfg["codecs"][0].get("configuration", {}).get("endian", "little")
            if cfg["chunk_shape"] != [1, theta, dim] or shard[1:] != [theta, dim]:
                problem = f"chunks {cfg['chunk_shape']} in shards {shard} are not one sample each"
            elif inner not in (["bytes"], ["bytes", "crc32c"]) or endian != "little":
                problem = f"inner codecs {inner} are compressed or big-endian"
            elif index != ["bytes", "crc32c"]:
                problem = f"index codecs {index} are not bytes+crc32c"
        if problem:
            raise MmkdError(f"{meta_path}: {problem}; the direct reader needs mmkd's layout "
                            "(re-import it with `mmkd cache import-h5` or re-extract)")
        return cls(n=n, theta=theta, dim=dim, shard_size=shard[0],
                   chunk_nbytes=theta * dim * 2, inner_crc=inner == ["bytes", "crc32c"],
                   index_at_end=cfg.get("index_location", "end") == "end")
