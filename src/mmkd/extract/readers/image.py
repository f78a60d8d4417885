"""Frame preprocessing shared by RGB and flow: short-side resize, centre crop, normalisation.

The crop and the resize come from the extractor's input contract (K400 Video Swin: resize the
short side to 256, centre-crop 224, ImageNet mean/std on [0, 1] RGB).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def resize_crop(frame_HWC: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Resize the short side to `resize` (aspect kept), then take the centre `crop`×`crop`."""
    h, w = frame_HWC.shape[:2]
    scale = resize / min(h, w)
    nh, nw = max(crop, round(h * scale)), max(crop, round(w * scale))
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        frame_HWC = cv2.resize(frame_HWC, (nw, nh), interpolation=interp)
    top, left = (nh - crop) // 2, (nw - crop) // 2
    return frame_HWC[top:top + crop, left:left + crop]


def to_tensor(frames_THWC: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              scale: float = 1 / 255) -> torch.Tensor:
    """uint8/float frames (T, H, W, C) -> normalised float32 (C, T, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(frames_THWC)).float().mul_(scale)
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.permute(3, 0, 1, 2).contiguous()
