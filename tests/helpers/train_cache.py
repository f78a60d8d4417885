"""A tiny, learnable feature cache for the training tests (real Zarr store, real writer).

Each sample's tokens are class prototypes (verb and noun) seen through a per-(modality,
extractor) random projection, plus noise; some samples miss some modalities. So a fusion model
can learn the labels from any modality, and better from several.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmkd.cache import Cache
from mmkd.datasets.manifest import Sample, manifest_hash

HEADS = {"verb": 3, "noun": 4}
TEACHER = {"video": "demo_swin3d_teacher", "flow": "demo_swin3d_teacher",
           "audio": "demo_swin3d_teacher_audio"}
STUDENT = {"video": "demo_swin3d_student", "flow": "demo_swin3d_student",
           "audio": "demo_ast_student"}


def samples(n: int) -> list[Sample]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        split = "train" if i % 5 < 3 else ("val" if i % 5 == 3 else "test")
        out.append(Sample(sample_id=f"s{i:04d}", video_id=f"v{i // 8}", split=split,
                          labels={"verb": int(rng.integers(3)), "noun": int(rng.integers(4))}))
    return out


def build_cache(path: str | Path, n: int = 60, theta: int = 4, dim: int = 12,
                features: dict[str, str] | None = None, missing_every: int = 7,
                noise: float = 0.5, shard_size: int = 16) -> Cache:
    """Create (or open) the store and fill every requested (modality, extractor) group."""
    s = samples(n)
    cache = Cache.create(path, s, HEADS, manifest_hash(s), shard_size=shard_size)
    feats = features if features is not None else {**{f"{m}": e for m, e in TEACHER.items()}}
    for j, (modality, extractor) in enumerate(sorted(feats.items())):
        fill(cache, modality, extractor, s, theta, dim, seed=10 + j,
             missing_every=missing_every, noise=noise)
    return cache


def fill(cache: Cache, modality: str, extractor: str, s: list[Sample], theta: int, dim: int,
         seed: int, missing_every: int = 7, noise: float = 0.5) -> None:
    rng = np.random.default_rng(seed)
    verb_proto = rng.normal(size=(HEADS["verb"], theta, dim))
    noun_proto = rng.normal(size=(HEADS["noun"], theta, dim))
    w = cache.feature_writer(modality, extractor, theta, dim,
                             {"weights_sha256": f"{seed:064x}", "preprocessing": {"test": 1}})
    n = len(s)
    tokens = np.zeros((n, theta, dim), np.float16)
    present = np.ones(n, bool)
    for i, smp in enumerate(s):
        tokens[i] = (verb_proto[smp.labels["verb"]] + noun_proto[smp.labels["noun"]]
                     + noise * rng.normal(size=(theta, dim)))
        if missing_every and (i + seed) % missing_every == 0:
            present[i] = False
            tokens[i] = 0
    for unit in w.units():
        idx = np.arange(unit.start, unit.stop)
        w.write(idx, tokens[idx], np.full(len(idx), theta), present[idx])
        w.finish_unit(unit)
