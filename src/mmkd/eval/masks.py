"""Which modalities an evaluation keeps: Table 1's subsets and Fig. 4's random missing rates.

Both protocols only switch `present` flags off (the cached tokens stay as they are), so a model
sees exactly what it would see if that modality's media were missing. The subsets themselves
and their labels are in `mmkd.subsets` (training reports them too).
"""

from __future__ import annotations

import numpy as np


def subset_keep(modalities: list[str], subset: tuple[str, ...], n: int) -> np.ndarray:
    """keep (n, M) bool: the modalities in `subset` are kept for every sample."""
    row = np.array([m in subset for m in modalities], dtype=bool)
    return np.broadcast_to(row, (n, len(modalities))).copy()


def missing_rate_keep(n: int, n_modalities: int, rate: float, seed: int) -> np.ndarray:
    """keep (n, M) bool: each modality dropped independently with probability `rate`, at least one
    kept per sample.

    Rows that drop everything are redrawn until one survives (rejection sampling), so each row
    follows the independent-drop distribution conditioned on "not all dropped", as in the paper's
    modality dropout. The stream depends on (seed, rate) only: the same seed gives the same masks
    for every model, so methods are compared on identical missing patterns.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"missing rate {rate} must be in [0, 1)")
    rng = np.random.default_rng([int(seed), round(rate * 1_000_000)])
    keep = rng.random((n, n_modalities)) >= rate
    empty = ~keep.any(axis=1)
    while empty.any():
        keep[empty] = rng.random((int(empty.sum()), n_modalities)) >= rate
        empty = ~keep.any(axis=1)
    return keep
