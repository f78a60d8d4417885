"""Accuracy of TV-L1 and DIS on textures with known flow; RAFT's plumbing and weight loading.

Bounds (mean end-point error, 8-px border excluded, 96x128 frames, seeded textures): TV-L1
<= 0.10 px and DIS <= 0.25 px on a 3.0-px translation and a 3-degree rotation (up to 3.4 px);
measured: TV-L1 0.006 / 0.028 px, DIS 0.038 / 0.064 px. Quantizing to EPIC's levels (half a
step is 0.078 px) may add up to QUANTIZED_EXTRA (measured totals 0.06-0.09 px). RAFT with random weights cannot be accurate, so only its
shapes, batching and weight handling are tested; accurate RAFT needs the user's local weights.
"""

import numpy as np
import pytest
import torch

from mmkd.datasets.flow_format import dequantize, quantize
from mmkd.errors import MmkdError
from mmkd.flow.methods import FlowSpec, create_method, load_raft
from mmkd.flow.synthetic import affine_pair, endpoint_error

EPE_BOUND = {"tvl1": 0.10, "dis": 0.25}
QUANTIZED_EXTRA = 0.12
CASES = [("translate", 3.0), ("rotate", 3.0)]


@pytest.mark.parametrize("method", ["tvl1", "dis"])
@pytest.mark.parametrize(("kind", "amount"), CASES)
def test_opencv_methods_recover_known_flow(method, kind, amount):
    first, second, truth = affine_pair(96, 128, kind, amount, seed=7)
    flow = create_method(FlowSpec(method))(first[None], second[None])
    assert flow.shape == (1, 96, 128, 2) and flow.dtype == np.float32
    epe = endpoint_error(flow[0], truth, margin=8)
    assert epe <= EPE_BOUND[method], f"{method} {kind}: EPE {epe:.3f} px"
    quantized = endpoint_error(dequantize(quantize(flow[0])), truth, margin=8)
    assert quantized <= EPE_BOUND[method] + QUANTIZED_EXTRA
    still = create_method(FlowSpec(method))(first[None], first[None])
    assert np.abs(still).mean() < 0.05  # identical frames: no motion


def test_sign_convention_first_to_second():
    first, second, _ = affine_pair(96, 128, "translate", 4.0, seed=1)  # moves +4 px in x, -2 in y
    flow = create_method(FlowSpec("dis"))(first[None], second[None])[0, 8:-8, 8:-8]
    assert np.median(flow[..., 0]) == pytest.approx(4.0, abs=0.2)
    assert np.median(flow[..., 1]) == pytest.approx(-2.0, abs=0.2)


def _pairs(n: int, h: int = 40, w: int = 60) -> tuple[np.ndarray, np.ndarray]:
    firsts, seconds = zip(*[affine_pair(h, w, "translate", 1.0 + i, seed=i)[:2] for i in range(n)],
                          strict=True)
    return np.stack(firsts), np.stack(seconds)


def test_raft_plumbing_shapes_and_batching():
    torch.set_num_threads(1)
    first, second = _pairs(3, 40, 60)  # not a multiple of 8 and below RAFT's 128-px minimum
    spec = FlowSpec("raft", raft_model="small", random_init=True, batch_size=2, device="cpu",
                    num_flow_updates=2)
    flow_2 = create_method(spec)(first, second)
    assert flow_2.shape == (3, 40, 60, 2) and flow_2.dtype == np.float32
    assert np.isfinite(flow_2).all()
    one_batch = FlowSpec("raft", raft_model="small", random_init=True, batch_size=3, device="cpu",
                         num_flow_updates=2)
    np.testing.assert_allclose(create_method(one_batch)(first, second), flow_2, atol=1e-3)


def test_raft_refuses_random_weights_unless_asked():
    with pytest.raises(MmkdError, match="needs local weights"):
        create_method(FlowSpec("raft"))
    with pytest.raises(MmkdError, match="--method raft"):
        FlowSpec("dis", random_init=True).validate()


def test_raft_weights_load_wrapped_and_report_mismatches(tmp_path):
    net = load_raft("small", None, random_init=True)
    plain = tmp_path / "raft_small.pth"
    torch.save(net.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, wrapped)
    for path in (plain, wrapped):
        loaded = load_raft("small", str(path))
        for k, v in net.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v)

    with pytest.raises(MmkdError, match=r"missing keys.*--raft-model small"):
        load_raft("large", str(plain))  # a small checkpoint given to the large model
    partial = tmp_path / "partial.pth"
    state = net.state_dict()
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(MmkdError, match=r"1 missing keys.*1 unexpected keys \(extra.weight\)"):
        load_raft("small", str(partial))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(MmkdError, match="weights_only=True"):
        load_raft("small", str(garbage))
    with pytest.raises(MmkdError, match="file not found"):
        load_raft("small", str(tmp_path / "absent.pth"))
