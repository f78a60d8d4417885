"""Is method A better than method B, beyond test-set and seed noise? A paired bootstrap.

Both methods are evaluated on the same test samples, each for every training seed it has. One
bootstrap replicate
  1. resamples the test samples with replacement (one draw, shared by A and B: paired by sample,
     so sample difficulty cancels out of the difference),
  2. resamples each method's training seeds with replacement (independently for A and B: a seed
     number names an initialisation, not a shared condition, so seeds are not paired),
  3. takes each method's accuracy on the resampled samples averaged over its resampled seeds,
     and records A − B.
The 95 % interval is the 2.5/97.5 percentiles of the replicates. With one seed per method, step
2 changes nothing and the interval covers test-set noise only; the report says how many seeds
entered. Separately, `wins` counts the seed numbers both methods share in which A's accuracy
on the full test set is above B's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmkd.errors import MmkdError


@dataclass(frozen=True)
class Difference:
    """A − B in accuracy points with its bootstrap interval, and the per-seed wins."""

    diff: float  # mean-over-seeds accuracy of A minus that of B (points)
    low: float
    high: float
    level: float
    wins: int  # shared seed numbers in which A > B
    shared: int  # seed numbers trained for both
    n_samples: int
    n_boot: int

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(correct_a: dict[int, np.ndarray], correct_b: dict[int, np.ndarray],
                     n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Difference:
    """`correct_x`: training seed -> (N,) bool, is test sample i right (same samples, same order
    for both methods). Returns A − B in points with a `level` percentile interval."""
    if not correct_a or not correct_b:
        raise MmkdError("a comparison needs at least one trained seed of each method")
    a = np.stack([np.asarray(v, dtype=np.float64) for v in correct_a.values()])  # (Sa, N)
    b = np.stack([np.asarray(v, dtype=np.float64) for v in correct_b.values()])  # (Sb, N)
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise MmkdError(f"the two methods were evaluated on {a.shape[1]} and {b.shape[1]} "
                        "samples; compare them on the same non-empty split")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # chunks keep the (replicates, N) weights small
        k = min(256, n_boot - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=k)  # resampled test samples
        acc_a, acc_b = counts @ a.T / n, counts @ b.T / n  # (k, Sa), (k, Sb)
        pick_a = rng.integers(0, a.shape[0], size=(k, a.shape[0]))  # resampled seeds
        pick_b = rng.integers(0, b.shape[0], size=(k, b.shape[0]))
        reps[start:start + k] = 100 * (np.take_along_axis(acc_a, pick_a, 1).mean(1)
                                       - np.take_along_axis(acc_b, pick_b, 1).mean(1))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(reps, [tail, 100 - tail])
    shared = sorted(set(correct_a) & set(correct_b))
    wins = sum(a_s.mean() > b_s.mean() for a_s, b_s in
               ((np.asarray(correct_a[s], float), np.asarray(correct_b[s], float))
                for s in shared))
    return Difference(diff=float(100 * (a.mean(1).mean() - b.mean(1).mean())),
                      low=float(low), high=float(high), level=level, wins=int(wins),
                      shared=len(shared), n_samples=n, n_boot=n_boot)
