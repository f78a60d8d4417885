"""Frozen feature extractors, registered in `mmkd.registry.extractors` on import.

`create_extractor(name, weights=FILE | None, random_init=False)` builds one; `get_spec(name)` is
its config record (architecture, weights source, input contract).
"""

from mmkd.extract.extractors import ast, audio_swin, convnet, stlt, swin3d  # noqa: F401  (registration)
from mmkd.extract.extractors.base import Extractor, ExtractorSpec, create_extractor, get_spec

__all__ = ["Extractor", "ExtractorSpec", "create_extractor", "get_spec"]
