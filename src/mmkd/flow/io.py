"""Flow file formats: EPIC's quantized u/v JPEGs, and the raw float flow as .npy or Middlebury .flo.

EPIC layout for one video: `<dir>/u/frame_%010d.jpg` and `<dir>/v/frame_%010d.jpg`, 1-based,
single-channel JPEGs at quality 95 (what `dense_flow` writes). Raw flow goes to
`<dir>/raw/frame_%010d.{npy,flo}` so it sits next to the JPEGs it was quantized into.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mmkd.datasets.flow_format import quantize
from mmkd.errors import MmkdError

FRAME_TEMPLATE = "frame_%010d"
JPEG_QUALITY = 95
RAW_FORMATS = ("npy", "flo")
FLO_MAGIC = 202021.25  # the float32 whose bytes read 'PIEH'


def frame_name(index: int, ext: str) -> str:
    return f"{FRAME_TEMPLATE % index}.{ext}"


def write_flow_jpegs(video_dir: Path, index: int, flow_HW2: np.ndarray) -> None:
    """Write the quantized u and v components of one flow field as EPIC frame `index`."""
    levels_HW2 = quantize(flow_HW2)
    for c, comp in enumerate(("u", "v")):
        path = video_dir / comp / frame_name(index, "jpg")
        ok = cv2.imwrite(str(path), np.ascontiguousarray(levels_HW2[..., c]),
                         [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"could not write {path}")


def read_flow_jpegs(video_dir: Path, index: int) -> np.ndarray:
    """The uint8 levels (H, W, 2) of EPIC flow frame `index` (dequantize them for pixels)."""
    comps = []
    for comp in ("u", "v"):
        path = video_dir / comp / frame_name(index, "jpg")
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise MmkdError(f"{path}: not a readable flow JPEG; recompute it with `mmkd flow`")
        comps.append(img)
    return np.stack(comps, axis=-1)


def write_flo(path: Path, flow_HW2: np.ndarray) -> None:
    """Middlebury .flo: float32 magic 202021.25 ('PIEH'), int32 width, int32 height, then
    float32 (u, v) interleaved row by row, all little-endian."""
    flow = np.asarray(flow_HW2, dtype="<f4")
    h, w = flow.shape[:2]
    with open(path, "wb") as fh:
        np.array([FLO_MAGIC], dtype="<f4").tofile(fh)
        np.array([w, h], dtype="<i4").tofile(fh)
        np.ascontiguousarray(flow).tofile(fh)


def read_flo(path: Path) -> np.ndarray:
    """Read a Middlebury .flo file into a float32 (H, W, 2) array."""
    with open(path, "rb") as fh:
        magic = np.fromfile(fh, dtype="<f4", count=1)
        if magic.size != 1 or magic[0] != np.float32(FLO_MAGIC):
            raise MmkdError(f"{path}: not a .flo file (magic {magic[:1].tolist()} is not 'PIEH')")
        w, h = (int(x) for x in np.fromfile(fh, dtype="<i4", count=2))
        data = np.fromfile(fh, dtype="<f4", count=h * w * 2)
    if data.size != h * w * 2:
        raise MmkdError(f"{path}: truncated .flo file ({data.size} of {h * w * 2} floats)")
    return data.reshape(h, w, 2)


def write_raw(video_dir: Path, index: int, flow_HW2: np.ndarray, fmt: str) -> None:
    path = video_dir / "raw" / frame_name(index, fmt)
    if fmt == "npy":
        np.save(path, np.asarray(flow_HW2, dtype=np.float32))
    elif fmt == "flo":
        write_flo(path, flow_HW2)
    else:
        raise MmkdError(f"--raw {fmt!r} is not a raw flow format; use one of {', '.join(RAW_FORMATS)}")


def make_video_dirs(video_dir: Path, raw: str | None) -> None:
    for sub in ("u", "v") + (("raw",) if raw else ()):
        (video_dir / sub).mkdir(parents=True, exist_ok=True)
