"""Train-time augmentation for stage 3 and `mmkd pretrain`, applied to an extractor's inputs
after stage 1's readers.

The readers of `mmkd.extract` produce exactly the tensors stage 1 fed the frozen extractors
(centre crop, fixed clip); fine-tuning adds randomness on top of those tensors, so decoding and
the input contract stay in one place. Per input kind:
  frames (video, flow; C×T×H×W): random resized crop of the centre crop (area 50–100 %, aspect
      3/4–4/3, the same box for every frame), resized back to the crop size, and, where flips
      keep labels true (`resolve_hflip`), a horizontal flip with p = 0.5 (flow: the u channel
      changes sign, since motion to the right becomes motion to the left). Flow magnitudes are not rescaled with the crop (TSN convention).
  mel_windows (audio Swin; 3×T×M×W): SpecAugment-style masks, the same on every window.
  fbank (AST; T×M): a random circular time shift (AST's `torch.roll`), then one frequency mask
      of up to M/5 bins and one time mask of up to T/5 frames (SpecAugment), set to 0, the mean
      of the normalised fbank.
  layout (STLT boxes; T×O×4 in [0, 1]): every real box's corners jittered by N(0, 0.02) of the
      frame size, then re-ordered and clipped to the frame; padding and [CLS] boxes stay.
Randomness comes from a NumPy generator seeded by (seed, epoch, sample index), so a sample's
augmentation does not depend on which decode worker handles it, and a resumed run redoes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CROP_AREA = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
MASK_FRACTION = 0.2
SHIFT_FRACTION = 0.5
BOX_JITTER = 0.02


@dataclass(frozen=True)
class Augment:
    """The augmentation of one modality's inputs; `flip=False` for direction-sensitive labels
    (Something-Something's "left to right" classes)."""

    modality: str
    input_kind: str  # frames | mel_windows | fbank | layout (ExtractorSpec.input_kind)
    flip: bool = True

    def __call__(self, inputs: dict[str, torch.Tensor], rng: np.random.Generator
                 ) -> dict[str, torch.Tensor]:
        if self.input_kind == "frames":
            return {"frames": self._frames(inputs["frames"], rng)}
        if self.input_kind == "mel_windows":
            return {"frames": spec_masks(inputs["frames"], rng, freq_dim=-2, time_dim=-1)}
        if self.input_kind == "fbank":
            fbank_TM = time_shift(inputs["fbank"], rng)
            return {"fbank": spec_masks(fbank_TM, rng, freq_dim=-1, time_dim=-2)}
        if self.input_kind == "layout":
            return {**inputs, "boxes": jitter_boxes(inputs["boxes"], inputs["categories"], rng)}
        raise ValueError(f"no augmentation for input kind {self.input_kind!r}")

    def _frames(self, frames_CTHW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        out = random_resized_crop(frames_CTHW, rng)
        if self.flip and rng.random() < 0.5:
            out = out.flip(-1)
            if self.modality == "flow":
                out[0] = -out[0]  # u (horizontal motion) changes direction
        return out


FLIP_SAFE_DATASETS = ("epic100",)  # no class of theirs changes under a mirror image
_SIDE_WORD = re.compile(r"\b(left|right)(wards?)?\b", re.IGNORECASE)


def resolve_hflip(setting: bool | None, dataset: str, classes: dict[str, list[str]]) -> bool:
    """`augment.hflip`, or where it is None: flips only where they keep labels true. Not for
    SSv2 ("left to right"), the demo (open is counter-clockwise, close clockwise), a custom
    dataset (nothing is known of its classes), nor any dataset with a class naming a side."""
    if setting is not None:
        return setting
    return dataset in FLIP_SAFE_DATASETS and not side_classes(classes)


def side_classes(classes: dict[str, list[str]]) -> list[str]:
    """Class names that say left or right (`move_left`, "Pushing left to right")."""
    return [n for names in classes.values() for n in names
            if _SIDE_WORD.search(n.replace("_", " "))]


def random_resized_crop(frames_CTHW: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random box (area and aspect in CROP_AREA/CROP_RATIO) for all frames, resized back."""
    C, T, H, W = frames_CTHW.shape
    area = H * W * rng.uniform(*CROP_AREA)
    ratio = float(np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1]))))
    h = int(min(H, max(1, round(np.sqrt(area / ratio)))))
    w = int(min(W, max(1, round(np.sqrt(area * ratio)))))
    top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    box_TCHW = frames_CTHW[:, :, top:top + h, left:left + w].transpose(0, 1)
    out_TCHW = F.interpolate(box_TCHW, size=(H, W), mode="bilinear", align_corners=False)
    return out_TCHW.transpose(0, 1).contiguous()


def time_shift(fbank_TM: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    limit = max(1, int(fbank_TM.shape[0] * SHIFT_FRACTION))
    return torch.roll(fbank_TM, int(rng.integers(-limit, limit + 1)), dims=0)


def spec_masks(x: torch.Tensor, rng: np.random.Generator, freq_dim: int, time_dim: int
               ) -> torch.Tensor:
    """One frequency band and one time span (each up to MASK_FRACTION of its axis) set to 0."""
    out = x.clone()
    for dim in (freq_dim, time_dim):
        n = out.shape[dim]
        width = int(rng.integers(0, max(1, int(n * MASK_FRACTION)) + 1))
        start = int(rng.integers(0, n - width + 1))
        out.narrow(dim, start, width).zero_()
    return out


def jitter_boxes(boxes_TO4: torch.Tensor, cats_TO: torch.Tensor, rng: np.random.Generator
                 ) -> torch.Tensor:
    noise = torch.from_numpy(rng.normal(0.0, BOX_JITTER, boxes_TO4.shape).astype(np.float32))
    moved = (boxes_TO4 + noise).clamp(0.0, 1.0)
    x1, x2 = torch.minimum(moved[..., 0], moved[..., 2]), torch.maximum(moved[..., 0], moved[..., 2])
    y1, y2 = torch.minimum(moved[..., 1], moved[..., 3]), torch.maximum(moved[..., 1], moved[..., 3])
    real_TO1 = (cats_TO != 0).unsqueeze(-1)
    real_TO1[..., 0, :] = False  # slot 0 is the frame's [CLS] box (0, 0, 1, 1)
    return torch.where(real_TO1, torch.stack([x1, y1, x2, y2], -1), boxes_TO4)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The augmentation stream of one sample in one epoch (independent of worker and order)."""
    return np.random.default_rng([seed, 0x66742D61, epoch, index])
