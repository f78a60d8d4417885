"""Θ-Average: parameter-free token reduction applied to every extractor output.

If k > Θ, the k tokens are split in order into Θ groups of ⌊k/Θ⌋ consecutive tokens, the LAST
group also taking the k mod Θ remaining ones, and each group is averaged; if k ≤ Θ all k tokens
are kept. Θ = 0 means "no Θ-Average" (keep all). Vectorised: the first Θ−1 groups are equal-size
so they reduce with one reshape + mean; only the last group differs.
"""

from __future__ import annotations

import torch


def theta_groups(k: int, theta: int) -> list[int]:
    """Group sizes used for k tokens (a list of length min(k, Θ)); the reference for tests/docs."""
    if theta <= 0 or k <= theta:
        return [1] * k
    size = k // theta
    return [size] * (theta - 1) + [size + k % theta]


def n_out(k: int, theta: int) -> int:
    """Number of tokens Θ-Average leaves from k tokens."""
    return k if theta <= 0 or k <= theta else theta


def theta_average(tokens_BKD: torch.Tensor, theta: int) -> torch.Tensor:
    """(B, k, D) -> (B, min(k, Θ), D); half inputs are averaged in float32."""
    B, k, D = tokens_BKD.shape
    if theta <= 0 or k <= theta:
        return tokens_BKD
    size = k // theta
    head = (theta - 1) * size
    x = tokens_BKD if tokens_BKD.dtype in (torch.float32, torch.float64) else tokens_BKD.float()
    first_BGD = x[:, :head].reshape(B, theta - 1, size, D).mean(dim=2)
    last_B1D = x[:, head:].mean(dim=1, keepdim=True)
    return torch.cat([first_BGD, last_B1D], dim=1).to(tokens_BKD.dtype)
