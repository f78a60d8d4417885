"""Stage-3 minibatches: raw media for the fine-tuned modalities, cached tokens for the others.

`FinetuneBatches` is a drop-in for `mmkd.cache.loader.CacheBatches` in the training loop (same
`len`, `set_epoch`, batch order as a function of (seed, epoch), DDP rank slices, batch dict). The
fine-tuned modalities are decoded by stage 1's `InputBuilder` (readers + clip sampling + input
contract) in DataLoader worker processes, overlapped with the training step; the main process
joins each decoded batch with the cached tokens, labels and teacher outputs of the same sample
indices. A fine-tuned modality's entry in `batch["tokens"]` is a `RawInputs` (the extractor's
input tensors), which `EndToEndStudent` turns into tokens inside the model's forward.
Media that cannot be decoded make that modality missing for the sample (present=False), as in
stage 1, with the reason counted in `failures`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmkd.cache.loader import BatchNeeds, CacheBatches
from mmkd.datasets.manifest import Sample
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.runner import decode_errors, decode_loader_options
from mmkd.train.augment import Augment, sample_rng

if TYPE_CHECKING:
    from mmkd.cache import Cache


class RawInputs(dict):
    """One modality's extractor inputs for a batch ({"frames": (B, C, T, H, W)}, ...).

    A dict with `.to()`, so the training loop's `to_device` moves it like a tensor."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> RawInputs:
        return RawInputs({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    def select(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.index_select(0, rows.to(v.device)) for k, v in self.items()}


class RawClips(torch.utils.data.Dataset):
    """cache index -> (index, {modality: inputs or None}, {modality: failure reason})."""

    def __init__(self, samples: list[Sample], builders: dict[str, InputBuilder],
                 augments: dict[str, Augment] | None, seed: int):
        self.samples, self.builders, self.augments, self.seed = samples, builders, augments, seed
        self.epoch = 0
        self.errors = decode_errors()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        inputs: dict[str, Any] = {}
        reasons: dict[str, str] = {}
        rng = sample_rng(self.seed, self.epoch, i) if self.augments else None
        for m, build in self.builders.items():
            try:
                x = build(self.samples[i])
            except self.errors as exc:
                inputs[m], reasons[m] = None, str(exc) or type(exc).__name__
                continue
            inputs[m] = self.augments[m](x, rng) if self.augments else x
        return i, inputs, reasons


def collate(items: list[tuple[int, dict[str, Any], dict[str, str]]]
            ) -> tuple[np.ndarray, dict[str, RawInputs], dict[str, torch.Tensor], list[str]]:
    """Stack per modality; a sample whose media failed gets zeros and present=False."""
    idx = np.array([i for i, _, _ in items], dtype=np.int64)
    raw, present = {}, {}
    for m in items[0][1]:
        ok = [x[m] for _, x, _ in items if x[m] is not None]
        present[m] = torch.tensor([x[m] is not None for _, x, _ in items])
        if not ok:
            raw[m] = RawInputs()
            continue
        raw[m] = RawInputs({k: torch.stack([x[m][k] if x[m] is not None else
                                            torch.zeros_like(ok[0][k]) for _, x, _ in items])
                            for k in ok[0]})
    reasons = [r for _, _, rs in items for r in rs.values()]
    return idx, raw, present, reasons


class FinetuneBatches:
    """Iterable of batch dicts like `CacheBatches`, with `RawInputs` for the decoded modalities."""

    def __init__(self, cache: Cache, samples: list[Sample], builders: dict[str, InputBuilder],
                 cached: dict[str, str],
                 split: str, batch_size: int, shuffle: bool, seed: int,
                 needs: BatchNeeds | None = None, augments: dict[str, Augment] | None = None,
                 workers: int = 2, pin_memory: bool = False, rank: int = 0, world_size: int = 1):
        # Order, cached tokens, labels and teacher outputs come from the stage-2 loader itself, so
        # both stages see the same batches for the same seed, epoch and rank.
        self.cached = CacheBatches(cache, cached, split, batch_size, shuffle, seed,
                                   needs=needs, rank=rank, world_size=world_size)
        self.clips = RawClips(samples, builders, augments, seed)
        self.workers, self.pin_memory = workers, pin_memory
        self.failures: Counter = Counter()  # decode failure reason -> count (this process)

    @property
    def epoch(self) -> int:
        return self.cached.epoch

    def set_epoch(self, epoch: int) -> None:
        self.cached.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.cached)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.clips.epoch = self.epoch  # workers start after this: they see this epoch's seed
        loader = torch.utils.data.DataLoader(
            self.clips, batch_sampler=[b.tolist() for b in self.cached.batch_indices()],
            collate_fn=collate, pin_memory=self.pin_memory,
            **decode_loader_options(self.workers, self.clips))
        for idx, raw, raw_present, reasons in loader:
            self.failures.update(reasons)
            batch = self.cached.read_batch(idx)
            batch["tokens"].update(raw)
            batch["present"].update(raw_present)
            yield batch
