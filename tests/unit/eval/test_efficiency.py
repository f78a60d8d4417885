import sys

import pytest
import torch

from mmkd.eval import efficiency
from mmkd.eval.ablation_runs import fusion_gflops

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux-only")

FUSION = {"width": 16, "layers": 1, "heads": 2, "attn_dropout": 0.0, "missing_strategy": "B5",
          "mlp_hidden": 16}
EXTRACTORS = {"video": "test_swin3d", "flow": "test_swin3d", "audio": "test_ast"}


def _cfg(subset, role="student"):
    return efficiency.CostConfig(role=role, label=role, extractors=EXTRACTORS, fusion=FUSION,
                        heads={"verb": 3, "noun": 4}, subset=subset, theta=8, num_frames=4)


def test_only_present_extractors_run_and_count():
    torch.set_num_threads(1)
    v = efficiency.measure(_cfg(["video"]))
    vf = efficiency.measure(_cfg(["video", "flow"]))
    model, _, params = efficiency.build_pipeline(_cfg(["video"]))
    fusion = model.fusion
    shapes = {m: tuple(s) for m, s in fusion.spec.modalities.items()}
    ext_params = sum(p.numel() for p in model.extractors.parameters())
    assert params == pytest.approx((ext_params + sum(p.numel() for p in fusion.parameters())) / 1e6)
    # the fusion block sees the same token count with or without a modality (B5 tokens), so
    # adding flow adds exactly one more Swin forward
    extractor_gflops = v.gflops - fusion_gflops(fusion, shapes, "cpu")["fusion GFLOPs"]
    assert extractor_gflops > 0
    assert vf.gflops - v.gflops == pytest.approx(extractor_gflops, rel=1e-6)
    assert vf.params_m - v.params_m == pytest.approx(ext_params / 1e6)


def test_subprocess_measurement_and_reuse_of_identical_subsets():
    configs = [_cfg(["video"]), _cfg(["flow"])]
    results = efficiency.measure_all(configs)
    (c1, cost1, reused1), (c2, cost2, reused2) = results
    assert reused1 == "" and reused2 == "V"  # flow runs the same extractor as video
    assert cost1 == cost2
    assert cost1.peak_mem_mib * 2**20 >= cost1.params_m * 1e6 * 4  # float32 weights are resident
    assert "VmHWM" in cost1.memory_method
