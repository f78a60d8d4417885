"""The built-in demo: a synthetic kitchen dataset in the EPIC-100 formats and the `mmkd demo` pipeline.

`spec` (what each modality reveals) → `plan` (videos, segments, styles) → `scene` / `audio`
(pixels, flow, sound) → `writer` (one video's files) and `annotations` (the CSVs) → `generate`
(the whole dataset); `pipeline` runs generation, manifest, pretraining, extraction and training.
"""
