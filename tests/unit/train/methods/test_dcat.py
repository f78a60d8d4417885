"""dcat: L_CA against the formula, zero under the linear maps it aims for, the source-correct
mask, gradients only into the student, and the refusals (wrong student, mismatched attention)."""

import pytest
import torch
import torch.nn.functional as F

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import registry
from mmkd.cache.loader import BatchNeeds
from mmkd.config import TrainConfig, run_preset
from mmkd.errors import ConfigError
from mmkd.models import FusionModel, ModelSpec
from mmkd.train.methods.dcat import DcatConfig, cross_attention_loss, normalised_kv

HEADS = {"verb": 3, "noun": 4}
B, H, DH = 6, 2, 4  # batch, attention heads, head width
CFG = DcatConfig(source="audio", teacher="t_a")


def student(seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    return FusionModel(ModelSpec({"video": [3, 5]}, HEADS, width=H * DH, layers=1, n_heads=H,
                                 mlp_hidden=8))


def task(cfg: DcatConfig = CFG, model: FusionModel | None = None):
    return registry.methods.get("dcat")(model or student(), cfg, TrainConfig(), 50)


def batch(kv_a: torch.Tensor, right_B: torch.Tensor) -> dict:
    torch.manual_seed(1)
    labels = {h: torch.randint(c, (B,)) for h, c in HEADS.items()}
    # the source's logits: one-hot on the label where it is right, on another class where not
    logits = {h: 5 * F.one_hot(torch.where(right_B, labels[h], (labels[h] + 1) % c), c).float()
              for h, c in HEADS.items()}
    return {"index": torch.arange(B), "tokens": {"video": torch.randn(B, 3, 5)},
            "present": {"video": torch.ones(B, dtype=torch.bool)}, "labels": labels,
            "teachers": {"t_a": {"logits": logits, "features": {}, "kv": {"audio": kv_a}}}}


def kv_of(k_BHLd: torch.Tensor, v_BHLd: torch.Tensor) -> torch.Tensor:
    return k_BHLd.transpose(-1, -2) @ v_BHLd


def test_needs_source_kv_and_logits_only_when_masked():
    assert task().needs(CFG) == BatchNeeds(logits=("t_a",), kv=(("t_a", "audio"),))
    unmasked = DcatConfig(source="audio", masked=False)
    assert task().needs(unmasked) == BatchNeeds(kv=(("audio", "audio"),))  # id defaults to A
    assert task().p_drop == 0


def test_loss_is_zero_when_k_v_are_linear_maps_that_equalise_the_normalised_products():
    """K_B = r·P K_A, V_B = s·P V_A with PᵀP = I (B has another number of tokens) gives
    K_Bᵀ V_B = r·s·K_Aᵀ V_A: equal after normalisation, so L_CA = 0; another map does not."""
    g = torch.Generator().manual_seed(0)
    k_a, v_a = torch.randn(B, H, 5, DH, generator=g), torch.randn(B, H, 5, DH, generator=g)
    p, _ = torch.linalg.qr(torch.randn(7, 5, generator=g))  # (7, 5), orthonormal columns
    k_b, v_b = 2.5 * p @ k_a, 0.3 * p @ v_a
    kv_a, kv_b = normalised_kv(kv_of(k_a, v_a)), normalised_kv(kv_of(k_b, v_b))
    ones = torch.ones(B, dtype=torch.bool)
    assert cross_attention_loss(kv_b, kv_a, ones).item() == pytest.approx(0, abs=1e-6)
    assert kv_a.norm(dim=1) == pytest.approx(torch.ones(B))
    k_c = torch.randn(7, 5, generator=g) @ k_a  # not a map that equalises the products
    assert cross_attention_loss(normalised_kv(kv_of(k_c, v_b)), kv_a, ones).item() > 0.1


def test_loss_zero_through_the_student_when_the_source_kv_is_a_scaled_copy():
    """The method's wiring: a source product that is the student's own times 3 (the same after
    normalisation) adds nothing to CE; a different one adds λ·‖n(K_Bᵀ V_B) − n(K_Aᵀ V_A)‖_F."""
    t = task(DcatConfig(source="audio", teacher="t_a", ca_weight=2.0))
    b0 = batch(torch.zeros(B, H * DH * DH), torch.ones(B, dtype=torch.bool))
    with torch.no_grad():
        out = t.model(b0["tokens"], b0["present"], with_kv=True)
    kv_b = normalised_kv(out.kv["video"])
    ce = sum(F.cross_entropy(out.logits[h], b0["labels"][h]) for h in HEADS) / len(HEADS)
    same = t.training_step(batch(3 * out.kv["video"].flatten(1), torch.ones(B, dtype=bool)), 0)
    assert same.parts["ca"].item() == pytest.approx(0, abs=1e-6)
    assert same.loss.item() == pytest.approx(ce.item(), rel=1e-5)
    other = normalised_kv(torch.randn(B, H, DH, DH))
    res = t.training_step(batch(other, torch.ones(B, dtype=torch.bool)), 0)
    want = (kv_b - other).norm(dim=1).mean()
    assert res.parts["ca"].item() == pytest.approx(want.item(), rel=1e-5)
    assert res.loss.item() == pytest.approx((ce + 2.0 * want).item(), rel=1e-5)


def test_mask_removes_samples_the_source_classifies_wrongly_and_missing_ones():
    right = torch.tensor([True, False, True, True, False, True])
    kv_a = normalised_kv(torch.randn(B, H, DH, DH))
    kv_a[3] = 0  # A missing for sample 3: nothing to align, even unmasked
    t = task()
    with torch.no_grad():
        kv_b = normalised_kv(t.model(batch(kv_a, right)["tokens"], batch(kv_a, right)["present"],
                                     with_kv=True).kv["video"])
    per = (kv_b - kv_a).norm(dim=1)
    masked = t.training_step(batch(kv_a, right), 0).parts["ca"]
    assert masked.item() == pytest.approx((per * (right & (kv_a != 0).any(1))).sum().item() / B,
                                          rel=1e-5)
    changed = kv_a.clone()
    changed[~right] = normalised_kv(torch.randn(int((~right).sum()), H, DH, DH))
    assert t.training_step(batch(changed, right), 0).parts["ca"].item() == \
        pytest.approx(masked.item(), rel=1e-6)  # wrongly classified samples do not count
    unmasked = task(DcatConfig(source="audio", teacher="t_a", masked=False))
    got = unmasked.training_step(batch(changed, right), 0).parts["ca"]
    keep = (changed != 0).any(1)
    assert got.item() == pytest.approx(
        ((kv_b - changed).norm(dim=1) * keep).sum().item() / B, rel=1e-5)
    assert got.item() > masked.item()


def test_gradients_reach_only_the_students_parameters():
    """The source (here a live model, as if not cached) gets no gradient; L_CA alone reaches the
    student's projection and attention but not its classifier."""
    torch.manual_seed(3)
    source = FusionModel(ModelSpec({"audio": [4, 6]}, HEADS, width=H * DH, layers=2, n_heads=H,
                                   mlp_hidden=8))
    kv_a = normalised_kv(source({"audio": torch.randn(B, 4, 6)},
                                {"audio": torch.ones(B, dtype=torch.bool)}, with_kv=True).kv["audio"])
    assert kv_a.requires_grad
    t = task(DcatConfig(source="audio", teacher="t_a", masked=False))
    assert {id(p) for p in t.parameters()} == {id(p) for p in t.model.parameters()}
    b = batch(kv_a, torch.ones(B, dtype=torch.bool))
    b["labels"] = {h: torch.full((B,), -1) for h in HEADS}  # CE ignores them: L_CA alone
    b["labels"]["verb"][0] = 0  # (one label, so CE is defined)
    t.zero_grad()
    out = t.model(b["tokens"], b["present"], with_kv=True)
    ca = cross_attention_loss(normalised_kv(out.kv["video"]), kv_a.detach(),
                              torch.ones(B, dtype=torch.bool))
    ca.backward()
    assert all(p.grad is None for p in source.parameters())
    assert t.model.embed["video"].proj.weight.grad.abs().sum() > 0
    assert t.model.blocks[-1].qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in t.model.mlp_head.parameters())
    t.zero_grad()
    t.training_step(b, 0).loss.backward()  # the method's own step: still nothing to the source
    assert all(p.grad is None for p in source.parameters())
    assert t.model.blocks[-1].qkv.weight.grad.abs().sum() > 0


def test_refuses_a_student_on_the_source_or_several_modalities_and_mismatched_attention():
    with pytest.raises(ConfigError, match="--modalities B"):
        task(DcatConfig(source="video"))
    two = FusionModel(ModelSpec({"video": [3, 5], "flow": [3, 5]}, HEADS, width=8, layers=1))
    with pytest.raises(ConfigError, match="--modalities B"):
        task(model=two)
    with pytest.raises(ConfigError, match=r"teacher.fusion.width=8 --set teacher.fusion.heads=2"):
        task().training_step(batch(torch.ones(B, 8 * 16 * 16), torch.ones(B, dtype=bool)), 0)
    with pytest.raises(ConfigError, match="methods.dcat.source"):
        registry.methods.get("dcat").config_from(run_preset("demo"))
