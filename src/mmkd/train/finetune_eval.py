"""Stage 3's evaluation: accuracy per modality subset of a student whose extractors run inside
its forward, before (cached tokens) and after fine-tuning (re-extracted entries, else online).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from mmkd.models import FusionModel
from mmkd.subsets import modality_subsets, subset_label
from mmkd.train.finetune_data import FinetuneBatches
from mmkd.train.finetune_outputs import load_finetuned
from mmkd.train.finetune_sources import source_sampler
from mmkd.train.loop import correct_counts, masked_logits


def subset_accuracy(model: FusionModel, batches, modalities: list[str], device: torch.device,
                    precision: str = "auto") -> dict[str, dict[str, float]]:
    """Top-1 accuracy (per head, and `acc` = all heads right) for every non-empty modality
    subset (Table 1's protocol: the other modalities marked missing), in one pass: the
    extractors of an EndToEndStudent run once per batch, the fusion block once per subset."""
    model.to(device)
    subsets = {subset_label(s): s for s in modality_subsets(modalities)}
    sums: dict[str, Counter] = {label: Counter() for label in subsets}
    n = 0

    def masks(batch):
        return {label: {m: torch.full_like(p, m in s, dtype=torch.bool)
                        for m, p in batch["present"].items()} for label, s in subsets.items()}

    for batch, out in masked_logits(model, batches, masks, device, precision):
        for label, logits in out.items():
            sums[label].update({k: int(v) for k, v in
                                correct_counts(logits, batch["labels"]).items()})
        n += int(batch["index"].shape[0])
    return {label: {("acc" if k == "all" else f"acc_{k}"): v / max(n, 1) for k, v in c.items()}
            for label, c in sums.items()}


def evaluate_finetuned(out_dir: Path, cache, samples, mmeta, manifest_dir: Path, split: str,
                       device: torch.device, precision: str, workers: int
                       ) -> dict[str, dict[str, float]]:
    """After-accuracy: from the re-extracted cache entries when meta.json names them, else
    online (decode + fine-tuned extractors) for the fine-tuned modalities."""
    from mmkd.cache.loader import CacheBatches
    from mmkd.extract.inputs import InputBuilder

    model, meta = load_finetuned(out_dir, map_location=str(device))
    mods, features, ft = meta["modalities"], meta["features"], meta["finetune"]
    if all((m, features[m]) in set(cache.features()) for m in ft["modalities"]):
        batches = CacheBatches(cache, features, split, 64, shuffle=False, seed=0)
        return subset_accuracy(model, batches, mods, device, precision)
    builders = {m: InputBuilder(m, model.extractors[m].spec, source_sampler(ft["sources"][m]),
                                mmeta, str(manifest_dir)) for m in ft["modalities"]}
    batches = FinetuneBatches(cache, samples, builders,
                              {m: e for m, e in features.items() if m not in builders}, split,
                              batch_size=16, shuffle=False, seed=0, workers=workers)
    return subset_accuracy(model, batches, mods, device, precision)
