"""Builders the tests share: tiny caches (`cache_fill`, `train_cache`), tiny media and manifests
(`extract_media`) and a restatement of the official STLT (`official_stlt`).

`tests/` is on the import path (pytest's `pythonpath`), so every test imports them one way:
`from helpers import extract_media as em`.
"""
