"""The clips `mmkd pretrain` trains on: decoded once (in decode worker processes) and kept in RAM
as float16, or decoded again every epoch, and served as minibatches whose order is a function of
(seed, epoch). Samples whose media cannot be decoded are left out and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from mmkd.datasets.manifest import Sample
from mmkd.extract.inputs import InputBuilder
from mmkd.extract.runner import decode_loader_options
from mmkd.train.augment import Augment, sample_rng
from mmkd.train.finetune_data import RawClips, RawInputs, collate


class DecodedClips(torch.utils.data.Dataset):
    """Clips decoded once and held in RAM (float16, integer ids as they are); augmentation is
    applied on every read.

    Same item format as stage 3's `RawClips`: (index, {modality: inputs}, {modality: reason})."""

    def __init__(self, modality: str, tensors: dict[str, dict[str, torch.Tensor]],
                 augment: Augment | None, seed: int):
        self.modality, self.tensors, self.augment, self.seed = modality, tensors, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        x = {k: v.float() if v.is_floating_point() else v for k, v in self.tensors[i].items()}
        if self.augment is not None:
            x = self.augment(x, sample_rng(self.seed, self.epoch, i))
        return i, {self.modality: x}, {}


def decode_split(samples: list[Sample], indices: np.ndarray, build: InputBuilder, workers: int,
                 progress: Callable[[int], None] | None = None
                 ) -> tuple[dict[int, dict[str, torch.Tensor]], Counter]:
    """{sample index: inputs, floats as float16} for `indices`, decoded in worker processes; failed
    samples are left out and their reasons counted."""
    clips = RawClips(samples, {build.modality: build}, None, seed=0)
    loader = torch.utils.data.DataLoader(
        clips, batch_sampler=[indices[i:i + 16].tolist() for i in range(0, len(indices), 16)],
        collate_fn=_as_list, **decode_loader_options(workers, clips, prefetch=4))
    out: dict[int, dict[str, torch.Tensor]] = {}
    failures: Counter = Counter()
    for items in loader:
        for i, inputs, reasons in items:
            x = inputs[build.modality]
            if x is None:
                failures[reasons[build.modality]] += 1
            else:
                out[i] = {k: v.half() if v.is_floating_point() else v for k, v in x.items()}
        if progress is not None:
            progress(len(items))
    return out, failures


class ClipBatches:
    """Minibatches for `fit` from a manifest split: {index, tokens: {modality: RawInputs},
    present, labels}; the order is a function of (seed, epoch). The last partial batch of a
    shuffled (training) split is dropped, that of an unshuffled one kept; `CacheBatches` as the
    training loop builds it keeps both."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: np.ndarray,
                 labels: dict[str, np.ndarray], modality: str, batch_size: int, shuffle: bool,
                 seed: int, workers: int = 0):
        self.dataset, self.indices, self.labels = dataset, np.asarray(indices), labels
        self.modality, self.batch_size, self.shuffle, self.seed = modality, batch_size, shuffle, seed
        self.workers, self.epoch = workers, 0
        self.failures: Counter = Counter()  # media that failed to decode while streaming

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.shuffle else -(-n // self.batch_size)

    def batch_indices(self) -> list[np.ndarray]:
        idx = self.indices
        if self.shuffle:
            idx = np.random.default_rng([self.seed, 0x70726574, self.epoch]).permutation(idx)
        return [np.sort(idx[i * self.batch_size:(i + 1) * self.batch_size])
                for i in range(len(self))]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.dataset.epoch = self.epoch
        self.failures = Counter()  # this pass only: a broken clip counts once, not per epoch
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[b.tolist() for b in self.batch_indices()],
            collate_fn=collate, **decode_loader_options(self.workers, self.dataset))
        for idx, raw, present, reasons in loader:
            self.failures.update(reasons)
            keep = present[self.modality]
            if not keep.all():  # media that failed to decode while streaming: leave them out
                idx, rows = idx[keep.numpy()], keep.nonzero().squeeze(1)
                raw = {self.modality: RawInputs(raw[self.modality].select(rows))}
            if len(idx) == 0:
                continue
            index = torch.from_numpy(idx)
            yield {"index": index, "tokens": raw,
                   "present": {self.modality: torch.ones(len(idx), dtype=torch.bool)},
                   "labels": {h: torch.from_numpy(v[idx]) for h, v in self.labels.items()}}


def _as_list(items: list) -> list:
    return items
