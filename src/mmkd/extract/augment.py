"""Train-time augmentation of an extractor's input tensors, per input kind.

The readers produce exactly the tensors stage 1 fed the frozen extractors (centre crop, fixed
clip); fine-tuning and `mmkd pretrain` add randomness on top of those tensors, so decoding and the
input contract stay in one place. Per input kind (`input_kinds.INPUT_KINDS` pairs each with its
function here):
  frames (video, flow; C×T×H×W): random resized crop of the centre crop (area 50–100 %, aspect
      3/4–4/3, the same box for every frame), resized back to the crop size, and, where flips
      keep labels true, a horizontal flip with p = 0.5 (flow: the u channel changes sign, since
      motion to the right becomes motion to the left). Flow magnitudes are not rescaled with the
      crop (TSN convention).
  mel_windows (audio Swin; 3×T×M×W): SpecAugment-style masks, the same on every window.
  fbank (AST; T×M): a random circular time shift (AST's `torch.roll`), then one frequency mask
      of up to M/5 bins and one time mask of up to T/5 frames (SpecAugment), set to 0, the mean
      of the normalised fbank.
  layout (STLT boxes; T×O×4 in [0, 1]): every real box's corners jittered by N(0, 0.02) of the
      frame size, then re-ordered and clipped to the frame; padding and [CLS] boxes stay.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CROP_AREA = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
MASK_FRACTION = 0.2
SHIFT_FRACTION = 0.5
BOX_JITTER = 0.02


def augment_frames(inputs: dict[str, torch.Tensor], rng: np.random.Generator, modality: str,
                   flip: bool) -> dict[str, torch.Tensor]:
    out = random_resized_crop(inputs["frames"], rng)
    if flip and rng.random() < 0.5:
        out = out.flip(-1)
        if modality == "flow":
            out[0] = -out[0]  # u (horizontal motion) changes direction
    return {"frames": out}


def augment_mel_windows(inputs: dict[str, torch.Tensor], rng: np.random.Generator, modality: str,
                        flip: bool) -> dict[str, torch.Tensor]:
    return {"frames": spec_masks(inputs["frames"], rng, freq_dim=-2, time_dim=-1)}


def augment_fbank(inputs: dict[str, torch.Tensor], rng: np.random.Generator, modality: str,
                  flip: bool) -> dict[str, torch.Tensor]:
    fbank_TM = time_shift(inputs["fbank"], rng)
    return {"fbank": spec_masks(fbank_TM, rng, freq_dim=-1, time_dim=-2)}


def augment_layout(inputs: dict[str, torch.Tensor], rng: np.random.Generator, modality: str,
                   flip: bool) -> dict[str, torch.Tensor]:
    return {**inputs, "boxes": jitter_boxes(inputs["boxes"], inputs["categories"], rng)}


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
