"""Shared helpers for the cache tests: a tiny manifest and a deterministic unit filler.

`fill_unit` is what a real extractor's work function does (pending → write → finish_unit) with
tokens that depend only on the sample index, so stores filled in any order, by any number of
processes, must be byte-identical. Run as a script it fills a store unit by unit (optionally
slowly, so a test can kill it with SIGKILL mid-run).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from mmkd.cache import Cache, parse_shard
from mmkd.datasets.manifest import Sample, manifest_hash

THETA, DIM = 6, 8
HEADS = {"verb": 5, "noun": 7}
PROVENANCE = {"extractor": "test_ext", "weights_sha256": "ab" * 32,
              "preprocessing": {"fps": 30, "crop": 224}}


def samples(n: int = 23) -> list[Sample]:
    return [Sample(sample_id=f"s{i:03d}", video_id=f"v{i // 4}",
                   split="train" if i % 3 else "val",
                   labels={"verb": i % 5, "noun": i % 7}) for i in range(n)]


def make_cache(path: str | Path, n: int = 23, shard_size: int = 4) -> Cache:
    s = samples(n)
    return Cache.create(path, s, HEADS, manifest_hash(s), shard_size=shard_size)


def sample_tokens(index: int) -> tuple[np.ndarray, int, bool]:
    """Deterministic (Θ, D) tokens zero-padded past n_tokens; every 7th sample is missing."""
    rng = np.random.default_rng(index)
    n_tok = 1 + index % THETA
    tokens = np.zeros((THETA, DIM), dtype=np.float16)
    tokens[:n_tok] = rng.standard_normal((n_tok, DIM)).astype(np.float16)
    return tokens, n_tok, index % 7 != 3


def fill_unit(path: str, unit_id: int, modality: str = "video", delay: float = 0.0) -> int:
    """Extract one unit: the work function handed to `run_units` (picklable, top level)."""
    cache = Cache.open(path, mode="r+")
    w = cache.feature_writer(modality, "test_ext", THETA, DIM, PROVENANCE)
    unit = w.units()[unit_id]
    todo = w.pending(unit)
    for idx in todo.tolist():
        if idx % 11 == 5:
            w.fail(idx, f"cannot decode sample {idx}")
            continue
        tokens, n_tok, present = sample_tokens(idx)
        w.write(np.array([idx]), tokens[None], np.array([n_tok]), np.array([present]))
        time.sleep(delay)
    w.finish_unit(unit)
    return len(todo)


def fill_all(path: str | Path) -> None:
    w = Cache.open(path, "r+").feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    for u in w.units():
        fill_unit(str(path), u.id)


def store_bytes(path: Path) -> dict[str, bytes]:
    """Every data file of the feature group (not metadata): identical stores, identical bytes."""
    group = Path(path) / "video" / "test_ext"
    return {str(p.relative_to(group)): p.read_bytes() for p in sorted(group.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


if __name__ == "__main__":  # cache_fill.py STORE [DELAY [I/N]]: create-or-open, fill units
    store = sys.argv[1]
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    share = parse_shard(sys.argv[3]) if len(sys.argv) > 3 else None
    w = make_cache(store).feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    for u in w.units(shard=share):
        fill_unit(store, u.id, delay=delay)
        print(f"unit {u.id} done", flush=True)
