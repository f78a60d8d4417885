"""`CacheBatches`: the stage-2 training loader, shuffled minibatches straight from the cache.

Why not a torch DataLoader with workers: on a few cores worker processes add a copy and fight
the training loop for CPU, so reads happen in the calling thread into tensors allocated once and
reused for every batch (a consumer that keeps a batch must clone it). `tokens_dtype=torch.float16`
skips the CPU conversion (half the bytes to copy to a GPU, which converts them for free). Samples
of a batch are read in index order (sequential within shards); the order of samples is shuffled
per epoch by `np.random.default_rng([seed, epoch])`, and DDP ranks take disjoint strided slices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmkd.cache.shard_format import aligned_empty
from mmkd.errors import MmkdError

if TYPE_CHECKING:
    from mmkd.cache.store import Cache


@dataclass(frozen=True)
class BatchNeeds:
    """What a batch must carry besides index, tokens, present and labels, read from
    `teachers/<id>/` of the cache: `batch["teachers"][id]["logits"][head]` (B, C) and
    `batch["teachers"][id]["features"][modality]` (B, d) and
    `batch["teachers"][id]["kv"][modality]` (B, H·dh·dh)."""

    logits: tuple[str, ...] = ()  # teacher ids
    features: tuple[tuple[str, str], ...] = ()  # (teacher id, modality)
    kv: tuple[tuple[str, str], ...] = ()  # (teacher id, modality)

    @property
    def teachers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.logits, *(t for t, _ in (*self.features, *self.kv))]))


class CacheBatches:
    """Iterable of batch dicts: index, tokens/present per modality, labels, and what `needs`
    (a method's `BatchNeeds`) asks of the cache's teachers: `teachers[id]["logits"][head]`,
    `teachers[id]["features"][modality]`, loaded into RAM once.

    With no features it still yields indices, labels and teacher outputs (stage 3 decodes every
    modality itself and uses this for order and targets)."""

    def __init__(self, cache: Cache, features: dict[str, str], split: str, batch_size: int,
                 shuffle: bool, seed: int, needs: BatchNeeds | None = None, in_ram: bool = False,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 tokens_dtype: torch.dtype = torch.float32):
        if batch_size < 1:
            raise MmkdError(f"batch_size={batch_size}: must be >= 1")
        if not 0 <= rank < world_size:
            raise MmkdError(f"rank {rank} is outside world_size {world_size}")
        self.cache, self.split, self.batch_size = cache, split, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.indices = cache.indices(split)
        self.readers = {m: cache.feature_reader(m, e, in_ram=in_ram) for m, e in features.items()}
        for r in self.readers.values():
            r.check_done(self.indices)  # fail now, not mid-epoch
        self.labels = {h: torch.from_numpy(cache.labels(h)) for h in cache.heads}
        self.teachers: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
        for t in needs.teachers if needs is not None else ():
            self.teachers[t] = {
                "logits": ({h: torch.from_numpy(cache.teacher_logits(t, h)) for h in cache.heads}
                           if t in needs.logits else {}),
                **{kind: {m: torch.from_numpy(cache.teacher_features(t, m, kind))
                          for tt, m in getattr(needs, kind) if tt == t}
                   for kind in ("features", "kv")}}
        if tokens_dtype not in (torch.float32, torch.float16):
            raise MmkdError(f"tokens_dtype {tokens_dtype}: use torch.float32 or torch.float16")
        np_dtype = np.float32 if tokens_dtype == torch.float32 else np.float16
        self._tokens = {m: torch.from_numpy(aligned_empty((batch_size, r.theta, r.dim), np_dtype))
                        for m, r in self.readers.items()}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_indices(self) -> np.ndarray:
        idx = self.indices
        if self.shuffle:
            idx = idx[np.random.default_rng([self.seed, self.epoch]).permutation(len(idx))]
        if self.world_size > 1:  # equal share per rank, like DistributedSampler
            per = len(idx) // self.world_size if self.drop_last else -(-len(idx) // self.world_size)
            total = per * self.world_size
            idx = np.resize(idx, total) if total > len(idx) else idx[:total]
            idx = idx[self.rank::self.world_size]
        return idx

    def __len__(self) -> int:
        n = len(self._rank_indices()) if self.world_size > 1 else len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self) -> list[np.ndarray]:
        """This epoch's batches for this rank, each a sorted array of sample indices."""
        idx = self._rank_indices()
        return [np.sort(idx[s:s + self.batch_size])
                for s in range(0, len(self) * self.batch_size, self.batch_size)]

    def read_batch(self, batch_idx: np.ndarray) -> dict[str, Any]:
        """The batch dict of these samples (tokens in the reused buffers)."""
        b = len(batch_idx)
        index = torch.from_numpy(batch_idx)
        tokens, present = {}, {}
        for m, r in self.readers.items():
            out = self._tokens[m][:b]
            present[m] = torch.from_numpy(r.read(batch_idx, out))
            tokens[m] = out
        batch: dict[str, Any] = {
            "index": index, "tokens": tokens, "present": present,
            "labels": {h: lab[index] for h, lab in self.labels.items()}}
        if self.teachers:
            batch["teachers"] = {t: {kind: {k: v[index] for k, v in arrays.items()}
                                     for kind, arrays in outputs.items()}
                                 for t, outputs in self.teachers.items()}
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch_idx in self.batch_indices():
            yield self.read_batch(batch_idx)
