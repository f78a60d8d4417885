"""Stage 1: media readers, one clip-sampling policy, frozen extractors, Θ-Average, and the
batched, sharded, resumable runner behind `mmkd extract`.

Heavy modules (torch models, decoders) load on first use: import from the submodules, e.g.
`from mmkd.extract.extractors import create_extractor`, `from mmkd.extract.theta import
theta_average`, `from mmkd.extract.runner import ExtractJob, run_extract`.
"""
