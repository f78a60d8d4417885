"""Builders the tests share: tiny caches (`cache_fill`, `train_cache`), tiny media and manifests
(`extract_media`), EPIC annotation folders (`epic_csv`) and restatements of official code
(`official_stlt`, `official_swin`).

`tests/` is on the import path (pytest's `pythonpath`), so every test imports them one way:
`from helpers import extract_media as em`.
"""
