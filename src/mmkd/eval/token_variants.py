"""The token-reduction variants of the ablation (Tab. 4): which a cache allows, and the
read-time transform (Θ-Average or random masking) that builds each from the cached tokens.

Kept apart from `ablations`, which trains and tabulates, so the transforms are testable and
reusable without the training runs.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmkd.errors import MmkdError


@dataclass
class TokenVariant:
    """One row of Tab. 4: a reduction applied at read time to the cached tokens."""

    kind: str  # "theta" | "random" | "none"
    target: int  # tokens per modality fed to the fusion block
    status: str  # "exact", "approximate: ...", or why it is impossible
    possible: bool

    @property
    def name(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}-{self.target}"


def plan_token_variants(thetas: list[str], held: int, k_raw: int) -> list[TokenVariant]:
    """Which Θ-Average / random-masking variants a cache holding `held` of `k_raw` tokens allows."""
    raw = held >= k_raw
    out: list[TokenVariant] = []
    for item in thetas:
        t = k_raw if item in ("none", "0") else int(item)
        if t <= 0:
            raise MmkdError(f"--thetas {item!r}: use 'none' or a positive token count")
        if item in ("none", "0") or t >= k_raw:
            out.append(TokenVariant("none", k_raw, "exact" if raw else
                                    f"impossible: the cache holds {held} Θ-averaged tokens, not all "
                                    f"{k_raw}; re-extract with --theta 0 in another run", raw))
            continue
        if raw or t == held:
            out.append(TokenVariant("theta", t, "exact", True))
        elif t < held:
            out.append(TokenVariant("theta", t, f"approximate: re-averaged from the {held} cached "
                                                f"tokens (Θ-Average of Θ-Average)", True))
        else:
            out.append(TokenVariant("theta", t, f"impossible: only {held} tokens are cached", False))
        if t < held:
            out.append(TokenVariant("random", t, "exact" if raw else
                                    f"from the {held} cached (already averaged) tokens", True))
        elif t == held and not raw:
            out.append(TokenVariant("random", t, f"impossible: random masking needs more than the "
                                                 f"{held} cached tokens", False))
    seen, unique = set(), []
    for v in out:
        if v.name not in seen:
            seen.add(v.name)
            unique.append(v)
    return unique


class TransformedBatches:
    """CacheBatches with a per-batch token transform; keeps `len` and `set_epoch` for `fit`."""

    def __init__(self, batches: Any, transform: Callable[[dict, int], dict]):
        self.batches, self.transform, self.epoch = batches, transform, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.batches:
            yield self.transform(batch, self.epoch)


def token_transform(variant: TokenVariant, seed: int, train: bool) -> Callable[[dict, int], dict]:
    """Θ-Average or random masking of every modality's tokens, (B, held, D) -> (B, T, D)."""
    import torch

    from mmkd.extract.theta import theta_average

    def apply(batch: dict, epoch: int) -> dict:
        tokens = {}
        for m, x_BKD in batch["tokens"].items():
            B, K, _ = x_BKD.shape
            if variant.kind == "none" or variant.target >= K:
                tokens[m] = x_BKD
            elif variant.kind == "theta":
                tokens[m] = theta_average(x_BKD, variant.target)
            else:
                # fresh draw per step when training; per-sample fixed draw at evaluation
                index = batch["index"].cpu().numpy()
                rows = [np.sort(np.random.default_rng(
                    [seed, int(i), epoch if train else 1 << 30, zlib.crc32(m.encode())]).choice(
                        K, variant.target, replace=False)) for i in index]
                idx_BT = torch.from_numpy(np.stack(rows)).to(x_BKD.device)
                tokens[m] = torch.gather(x_BKD, 1, idx_BT[..., None].expand(-1, -1, x_BKD.shape[2]))
        return {**batch, "tokens": tokens}

    return apply
