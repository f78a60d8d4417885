"""The feature cache: one Zarr v3 store per run (`runs/<name>/cache.zarr`).

Stage 1 writes Θ-averaged float16 tokens per (modality, extractor) in shard-aligned, resumable
work units (`Cache.feature_writer`); stage 2 reads random minibatches through a direct reader
of the shard format (`Cache.feature_reader`, `mmkd.cache.loader.CacheBatches`).
"""

from mmkd.cache.schema import SCHEMA_VERSION, ProvenanceError
from mmkd.cache.store import Cache
from mmkd.cache.writer import FeatureWriter, WorkUnit, parse_shard

__all__ = ["SCHEMA_VERSION", "Cache", "FeatureWriter", "ProvenanceError", "WorkUnit",
           "parse_shard"]
