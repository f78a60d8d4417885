"""Run one trained fusion model over a split under many `present` configurations at once.

Every protocol (Table 1's subsets, Fig. 4's missing rates × seeds) only switches `present`
flags off, so a single pass over the cache serves them all: each minibatch is read once and the
model runs once per configuration. Only the arg-max class per head is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from mmkd.errors import MmkdError


@dataclass
class Condition:
    """One inference configuration: which of the model's modalities each sample keeps.

    `keep_NM` is over the split's samples (cache order) and the model's modalities (its order);
    a kept modality still counts as missing where the cache marks its media missing.
    """

    key: str
    keep_NM: np.ndarray


def positions(split_indices: np.ndarray, index_B: np.ndarray) -> np.ndarray:
    """Row of each cache index within the split (the cache's split indices are ascending)."""
    pos_B = np.searchsorted(split_indices, index_B)
    if (pos_B >= len(split_indices)).any() or (split_indices[np.minimum(pos_B, len(split_indices) - 1)]
                                              != index_B).any():
        raise MmkdError("a minibatch holds samples outside the evaluated split; the cache loader "
                        "and the cache disagree (re-run `mmkd cache verify`)")
    return pos_B


def predict(model: torch.nn.Module, modalities: list[str], heads: list[str],
            batches: Iterable[dict], split_indices: np.ndarray, conditions: list[Condition],
            device: str | torch.device = "cpu",
            progress: Callable[[int], None] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Predicted class ids {condition key: {head: (N,) int64}} over the split.

    `batches` yields CacheBatches dicts (index, tokens, present) of the split in any order;
    `progress(n)` is called with the number of samples done after each minibatch.
    """
    from mmkd.train.loop import masked_logits

    n = len(split_indices)
    for c in conditions:
        if c.keep_NM.shape != (n, len(modalities)):
            raise ValueError(f"condition {c.key}: keep mask {c.keep_NM.shape}, expected "
                             f"{(n, len(modalities))}")
    out = {c.key: {h: np.full(n, -1, dtype=np.int64) for h in heads} for c in conditions}
    seen = np.zeros(n, dtype=bool)

    def masks(batch: dict) -> dict[str, dict[str, torch.Tensor]]:
        pos_B = positions(split_indices, batch["index"].cpu().numpy())
        return {c.key: {m: torch.from_numpy(c.keep_NM[pos_B, j]) for j, m in enumerate(modalities)}
                for c in conditions}

    only = ({"index": b["index"], "tokens": {m: b["tokens"][m] for m in modalities},
             "present": {m: b["present"][m] for m in modalities}} for b in batches)
    for batch, logits in masked_logits(model, only, masks, device, precision="fp32"):
        pos_B = positions(split_indices, batch["index"].cpu().numpy())
        for key, by_head in logits.items():
            for h in heads:
                out[key][h][pos_B] = by_head[h].argmax(dim=-1).cpu().numpy()
        seen[pos_B] = True
        if progress is not None:
            progress(len(pos_B))
    if not seen.all():
        raise MmkdError(f"{int((~seen).sum())} of {n} samples of the split were never read; the "
                        "cache loader skipped samples (re-run `mmkd cache verify`)")
    return out
