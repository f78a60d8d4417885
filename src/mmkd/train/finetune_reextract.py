"""Stage 3's re-extraction: the fine-tuned extractors' tokens written into the cache as new
entries by stage 1's runner, so later stages read them like any cached features.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmkd import config as C
from mmkd import rundir
from mmkd.errors import MmkdError
from mmkd.train.finetune_sources import FT_TAG, Source, ft_entry, register_entry


def reextract(run_dir: Path, cfg: C.RunConfig, manifest_dir: Path, s: Source, weights: Path,
              run_name: str, device: str, workers: int,
              on_start: Callable[[int], None] | None = None,
              progress: Callable[[int], None] | None = None) -> Any:
    """Write the fine-tuned extractor's tokens of every sample into the cache as a new entry,
    with stage 1's runner (same readers, sampling, Θ-Average, resumable units, failures table).
    Provenance: the entry's name and the fine-tuned weights' sha256 (everything else as the
    tokens it replaces)."""
    from mmkd.cache import Cache, ProvenanceError
    from mmkd.extract.runner import ExtractJob, run_extract

    base = s.entry.split(FT_TAG, 1)[0]
    entry = ft_entry(s.entry, run_name)
    register_entry(base, entry, weights)
    cache_path = rundir.cache_path(run_dir)
    job = ExtractJob(cache_path=str(cache_path), manifest_dir=str(manifest_dir),
                     modality=s.modality, extractor=entry, weights=str(weights), theta=s.theta,
                     batch_size=cfg.extract.batch_size, workers=workers, device=device,
                     shard_size=Cache.open(cache_path).shard_size, sampler=s.sampler)
    try:
        return run_extract(job, progress=progress, on_start=on_start)
    except ProvenanceError as exc:
        raise MmkdError(f"{exc} (the cache already holds {s.modality}/{entry} from another "
                        f"fine-tune of this name: delete {cache_path / s.modality / entry}, or "
                        "fine-tune under another --name)") from None
