"""Train-time augmentation for stage 3 and `mmkd pretrain`: one modality's `Augment` (the
input kind's augmentation from `mmkd.extract.augment`, with the run's flip policy) and the
per-sample random stream.

Randomness comes from a NumPy generator seeded by (seed, epoch, sample index), so a sample's
augmentation does not depend on which decode worker handles it, and a resumed run redoes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from mmkd.extract.input_kinds import get_input_kind
from mmkd.registry import datasets


@dataclass(frozen=True)
class Augment:
    """The augmentation of one modality's inputs; `flip=False` for direction-sensitive labels
    (Something-Something's "left to right" classes)."""

    modality: str
    input_kind: str  # frames | mel_windows | fbank | layout (ExtractorSpec.input_kind)
    flip: bool = True

    def __call__(self, inputs: dict[str, torch.Tensor], rng: np.random.Generator
                 ) -> dict[str, torch.Tensor]:
        return get_input_kind(self.input_kind).augment(inputs, rng, self.modality, self.flip)


_SIDE_WORD = re.compile(r"\b(left|right)(wards?)?\b", re.IGNORECASE)


def resolve_hflip(setting: bool | None, dataset: str, classes: dict[str, list[str]]) -> bool:
    """`augment.hflip`, or where it is None: flips only where they keep labels true. Not for
    SSv2 ("left to right"), the demo (open is counter-clockwise, close clockwise), a custom
    dataset (nothing is known of its classes), nor any dataset with a class naming a side: the
    dataset's record says whether mirror images keep its labels true."""
    if setting is not None:
        return setting
    return dataset in datasets and datasets.get(dataset).flip_safe and not side_classes(classes)


def side_classes(classes: dict[str, list[str]]) -> list[str]:
    """Class names that say left or right (`move_left`, "Pushing left to right")."""
    return [n for names in classes.values() for n in names
            if _SIDE_WORD.search(n.replace("_", " "))]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation stream of one sample in one epoch (independent of worker and order)."""
    return np.random.default_rng([seed, 0x66742D61, epoch, index])
