"""EPIC's flow quantization: the ONE implementation every mmkd module uses.

It lives with the dataset formats, below `mmkd.flow` (which writes it), the flow reader of
`mmkd.extract` (which reads it) and the demo, so none of them imports another for it.

EPIC-KITCHENS ships TV-L1 flow as 8-bit JPEGs written by `dense_flow`: each component clipped to
±BOUND px and mapped linearly onto 0..255 with `cvRound(255 * (f + BOUND) / (2 * BOUND))`, so zero
motion becomes 128 (127.5 rounds half to even). `quantize` reproduces that byte for byte, so flow
computed by mmkd is interchangeable with the official files. `dequantize` is the exact linear
inverse (the centre of each bin), which keeps the reconstruction error at most half a step
(BOUND / 255 = 0.078 px) for flow inside ±BOUND; 128 therefore reads back as +0.078 px, the centre
of the bin [0, 0.157) that zero motion falls into.
"""

from __future__ import annotations

import numpy as np

BOUND = 20.0  # px: EPIC's clipping bound
STEP = 2 * BOUND / 255  # px per grey level
ZERO = 128  # the grey level of zero motion


def quantize(flow_px: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """Float flow in pixels (any shape) -> uint8 grey levels, clipped to ±bound."""
    scaled = (np.asarray(flow_px, dtype=np.float32) + bound) * (255.0 / (2 * bound))
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def dequantize(levels: np.ndarray, bound: float = BOUND) -> np.ndarray:
    """uint8 grey levels -> float32 flow in pixels (inverse of `quantize` up to half a step)."""
    return np.asarray(levels, dtype=np.float32) * np.float32(2 * bound / 255.0) - np.float32(bound)
