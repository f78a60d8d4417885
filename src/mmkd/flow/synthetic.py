"""Frame pairs with known flow (a textured image translated or rotated), to measure accuracy.

The texture is multi-scale smoothed noise, which has gradients everywhere (flow is observable
at every pixel) and no periodicity (no aliasing ambiguity). The second frame is the first warped
by an affine map A, so the true flow at pixel p is A(p) - p exactly.
"""

from __future__ import annotations

import cv2
import numpy as np


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 texture: noise smoothed at several scales, contrast-stretched."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for sigma, weight in ((1.0, 0.5), (3.0, 1.0), (8.0, 1.0)):
        noise = rng.standard_normal((height, width, 3)).astype(np.float32)
        img += weight * cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    img -= img.min()
    return (255 * img / img.max()).astype(np.uint8)


def affine_pair(height: int, width: int, kind: str, amount: float, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first_HW3, second_HW3, flow_HW2): `kind` "translate" moves by (amount, -amount/2) px;
    "rotate" turns by `amount` degrees about the centre."""
    first = texture(height, width, seed)
    if kind == "translate":
        A = np.array([[1.0, 0.0, amount], [0.0, 1.0, -amount / 2]])
    elif kind == "rotate":
        A = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), amount, 1.0)
    else:
        raise ValueError(f"kind {kind!r}: use translate or rotate")
    second = cv2.warpAffine(first, A, (width, height), flags=cv2.INTER_CUBIC,
                            borderMode=cv2.BORDER_REFLECT)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u = A[0, 0] * xs + A[0, 1] * ys + A[0, 2] - xs
    v = A[1, 0] * xs + A[1, 1] * ys + A[1, 2] - ys
    return first, second, np.stack([u, v], axis=-1).astype(np.float32)


def endpoint_error(flow_HW2: np.ndarray, truth_HW2: np.ndarray, margin: int = 0) -> float:
    """Mean end-point error in pixels, ignoring a `margin`-pixel border (where content enters or
    leaves the frame and no method can know the flow)."""
    h, w = truth_HW2.shape[:2]
    diff = (flow_HW2 - truth_HW2)[margin:h - margin, margin:w - margin]
    return float(np.sqrt((diff ** 2).sum(-1)).mean())


def translating_frames(n: int, height: int, width: int, step: tuple[float, float],
                       seed: int = 0) -> np.ndarray:
    """(n, H, W, 3) frames of one texture moving `step` = (dx, dy) px per frame, so the flow
    from frame i to frame j is (j - i) * step everywhere away from the border."""
    base = texture(height, width, seed)
    frames = []
    for t in range(n):
        A = np.array([[1.0, 0.0, t * step[0]], [0.0, 1.0, t * step[1]]])
        frames.append(cv2.warpAffine(base, A, (width, height), flags=cv2.INTER_CUBIC,
                                     borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


def write_video(path, frames_THW3: np.ndarray, fps: int = 30) -> None:
    """Encode RGB frames as near-lossless H.264 (PyAV), for tests and benchmarks of decoding."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames_THW3.shape[2], frames_THW3.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for frame in frames_THW3:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
