"""Methods own forward + loss: each loss is the paper's weighted sum of the tested terms."""

import pytest
import torch

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import registry
from mmkd.config import TrainConfig
from mmkd.models import FusionModel, ModelSpec
from mmkd.train import losses
from mmkd.train.methods import DropoutDraws

torch.set_num_threads(1)
MODS = {"video": [3, 6], "flow": [3, 5], "audio": [2, 4]}
HEADS = {"verb": 3, "noun": 4}


def _batch(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"index": torch.arange(10, 10 + b),
            "tokens": {m: torch.randn(b, k, d, generator=g) for m, (k, d) in MODS.items()},
            "present": {m: torch.ones(b, dtype=torch.bool) for m in MODS},
            "labels": {h: torch.randint(c, (b,), generator=g) for h, c in HEADS.items()},
            "teacher_logits": {h: torch.randn(b, c, generator=g) for h, c in HEADS.items()}}


def _model(strategy="B5"):
    torch.manual_seed(0)
    return FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, missing_strategy=strategy,
                                 mlp_hidden=16)).eval()


def test_registered_methods():
    assert {"teacher", "karmma", "baseline", "baseline-delta"} <= set(registry.methods.list())


def test_teacher_loss_is_alpha_ce_plus_beta_infonce():
    cfg = TrainConfig(alpha=0.7, beta=0.3, tau=0.1)
    method = registry.methods.get("teacher")(cfg, 100)
    model, batch = _model(), _batch()
    batch["present"]["audio"][1] = False
    res = method.training_step(model, batch, epoch=0)
    out = model(batch["tokens"], batch["present"])
    ce = losses.cross_entropy(out.logits, batch["labels"])
    nce = losses.info_nce(out.modality_tokens, batch["present"], 0.1)
    assert res.loss.item() == pytest.approx((0.7 * ce + 0.3 * nce).item(), rel=1e-5)
    assert nce.item() > 0


def test_karmma_loss_is_gamma_ce_plus_lambda_kl_with_dropout():
    cfg = TrainConfig(gamma=0.7, lambda_kl=0.3, modality_dropout=0.5, seed=3)
    method = registry.methods.get("karmma")(cfg, 100)
    assert method.needs_teacher and method.missing_strategy("B5") == "B5"
    model, batch = _model(), _batch()
    res = method.training_step(model, batch, epoch=2)
    kept = losses.modality_dropout(batch["present"], 0.5, DropoutDraws(3, 100)(2, batch["index"]))
    assert any(not k.all() for k in kept.values())  # something was dropped at p = 0.5
    out = model(batch["tokens"], kept)
    want = 0.7 * losses.cross_entropy(out.logits, batch["labels"]) + \
        0.3 * losses.kl_distill(out.logits, batch["teacher_logits"])
    assert res.loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_baselines():
    cfg = TrainConfig(modality_dropout=0.5)
    base = registry.methods.get("baseline")(cfg, 100)
    delta = registry.methods.get("baseline-delta")(cfg, 100)
    assert base.missing_strategy("B5") == "none" and base.p_drop == 0
    assert delta.missing_strategy("B5") == "B5" and delta.p_drop == 0.5
    assert not base.needs_teacher and not delta.needs_teacher
    model, batch = _model("none"), _batch()
    res = base.training_step(model, batch, epoch=0)
    out = model(batch["tokens"], batch["present"])
    assert res.loss.item() == pytest.approx(
        losses.cross_entropy(out.logits, batch["labels"]).item(), rel=1e-6)


def test_evaluation_forward_never_drops():
    method = registry.methods.get("karmma")(TrainConfig(modality_dropout=0.9), 100)
    _, present = method.forward(_model(), _batch(), epoch=None)
    assert all(p.all() for p in present.values())


def test_dropout_draws_depend_only_on_seed_epoch_and_index():
    d = DropoutDraws(seed=5, n_samples=50)
    a = d(1, torch.tensor([3, 7, 9]))
    assert torch.equal(d(1, torch.tensor([9, 3])), a[[2, 0]])  # batch order does not matter
    assert torch.equal(DropoutDraws(5, 50)(1, torch.tensor([3, 7, 9])), a)
    assert not torch.equal(d(2, torch.tensor([3, 7, 9])), a)
