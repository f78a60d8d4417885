"""EPIC's quantizer: exact levels, clipping, and the error bounds of quantize -> JPEG -> dequantize."""

from pathlib import Path

import numpy as np
import pytest

from mmkd.datasets.flow_format import BOUND, STEP, ZERO, dequantize, quantize
from mmkd.flow import io
from mmkd.flow.methods import FlowSpec, create_method
from mmkd.flow.synthetic import affine_pair

# quantize -> JPEG (quality 95) -> dequantize, per component, for flow inside ±BOUND. Measured on
# these fields: JPEG moves a level by at most 2 and the mean error is 0.03-0.06 px.
JPEG_MAX_LEVEL_CHANGE = 3
JPEG_MAX_ERR_PX = STEP / 2 + JPEG_MAX_LEVEL_CHANGE * STEP  # 0.55 px
JPEG_MEAN_ERR_PX = 0.08


def test_levels_match_dense_flow_formula():
    # dense_flow (EPIC's tool): cvRound(255 * (f + 20) / 40); zero motion is 128
    assert quantize(np.float32(0.0)) == ZERO == 128
    assert quantize(np.array([-BOUND, BOUND])).tolist() == [0, 255]
    assert quantize(np.array([-1e3, 1e3, np.float32(-20.5)])).tolist() == [0, 255, 0]
    centres = np.arange(256) * STEP - BOUND
    assert (quantize(centres) == np.arange(256)).all()
    assert quantize(centres).dtype == np.uint8


def test_dequantize_is_within_half_a_step():
    flow = np.linspace(-BOUND, BOUND, 100_001, dtype=np.float32)
    err = np.abs(dequantize(quantize(flow)) - flow)
    assert err.max() <= STEP / 2 + 1e-5
    assert dequantize(np.uint8(128)) == pytest.approx(STEP / 2, abs=1e-6)  # bin centre, +0.078 px
    assert dequantize(quantize(np.float32(35.0))) == pytest.approx(BOUND, abs=1e-5)  # clipped


def _jpeg_roundtrip(tmp_path: Path, flow_HW2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    io.make_video_dirs(tmp_path, None)
    io.write_flow_jpegs(tmp_path, 1, flow_HW2)
    levels_HW2 = io.read_flow_jpegs(tmp_path, 1)
    return levels_HW2, dequantize(levels_HW2)


def test_jpeg_roundtrip_error_is_bounded(tmp_path):
    first, second, truth = affine_pair(128, 192, "rotate", 8.0, seed=3)
    dis = create_method(FlowSpec("dis"))(first[None], second[None])[0]
    for flow in (truth, dis, np.zeros_like(truth)):
        levels, back = _jpeg_roundtrip(tmp_path, flow)
        inside = np.clip(flow, -BOUND, BOUND)
        err = np.abs(back - inside)
        assert np.abs(levels.astype(int) - quantize(flow)).max() <= JPEG_MAX_LEVEL_CHANGE
        assert err.max() <= JPEG_MAX_ERR_PX
        assert err.mean() <= JPEG_MEAN_ERR_PX
    levels, _ = _jpeg_roundtrip(tmp_path, np.zeros((32, 48, 2), np.float32))
    assert (levels == ZERO).all()  # no motion stays exactly 128 through JPEG
