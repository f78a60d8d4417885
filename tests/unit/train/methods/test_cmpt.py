"""cmpt: proxies read only their source modality, replace a missing modality's pooled token,
and are aligned to it only where both are present; L = CE + λ·L_align."""

import pytest
import torch

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import registry
from mmkd.config import RunConfig, TrainConfig
from mmkd.errors import ConfigError
from mmkd.models import FusionModel, ModelSpec
from mmkd.models.proxies import pair_key
from mmkd.train import losses
from mmkd.train.methods.cmpt import CmptConfig, align_loss

MODS = {"video": [3, 8], "flow": [2, 8], "audio": [4, 6]}
HEADS = {"verb": 3, "noun": 4}


def _model():
    torch.manual_seed(0)
    return FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, mlp_hidden=16,
                                 missing_strategy="cmpt")).eval()


def _batch(b=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"index": torch.arange(b),
            "tokens": {m: torch.randn(b, k, d, generator=g) for m, (k, d) in MODS.items()},
            "present": {m: torch.ones(b, dtype=torch.bool) for m in MODS},
            "labels": {h: torch.randint(c, (b,), generator=g) for h, c in HEADS.items()}}


def test_a_proxy_never_attends_to_its_target_modality():
    model = _model()
    keeps = {m: torch.ones(2, k, dtype=torch.bool) for m, (k, _) in MODS.items()}
    keeps["flow"][1] = False  # a missing source: its row falls back to its own positions
    mask_BPL = model.proxies.attend_mask(keeps)
    spans = {"video": range(0, 3), "flow": range(3, 5), "audio": range(5, 9)}
    for i, (_t, s) in enumerate(model.proxies.pairs):
        for m, span in spans.items():
            assert mask_BPL[:, i, span].all() == (m == s) and mask_BPL[:, i, span].any() == (m == s)
    # and in the numbers: changing the target's tokens leaves its proxies as they were
    batch = _batch()
    before = model(batch["tokens"], batch["present"]).proxies
    batch["tokens"]["audio"] = batch["tokens"]["audio"] * 7 + 3
    after = model(batch["tokens"], batch["present"]).proxies
    for key in before:
        same = torch.allclose(before[key], after[key])
        assert same == (not key.endswith("<-audio")), key


def test_a_missing_modality_takes_the_mean_of_its_proxies_from_the_available_ones():
    model, batch = _model(), _batch()
    batch["present"]["audio"][:2] = False
    batch["present"]["flow"][0] = False  # sample 0: audio from video only
    out = model(batch["tokens"], batch["present"])
    p = out.proxies
    assert torch.allclose(out.modality_tokens["audio"][0], p[pair_key("audio", "video")][0])
    assert torch.allclose(out.modality_tokens["audio"][1],
                          (p["audio<-video"][1] + p["audio<-flow"][1]) / 2)
    assert out.token_valid["audio"].all()
    # the ordinary path is the `none` block's: other tokens never attend to the proxies
    plain = FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, mlp_hidden=16,
                                  missing_strategy="none")).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith("proxies.")})
    ref = plain(batch["tokens"], batch["present"])
    assert torch.allclose(ref.modality_tokens["video"], out.modality_tokens["video"])
    assert torch.allclose(ref.cls, out.cls)


def test_alignment_is_zero_where_the_target_is_missing():
    model, batch = _model(), _batch()
    out = model(batch["tokens"], batch["present"])
    present = {m: p.clone() for m, p in batch["present"].items()}
    assert align_loss(out.proxies, out.modality_tokens, present) > 0
    present["audio"][:] = False  # no audio: its proxies have no target, audio no source
    only_vf = align_loss(out.proxies, out.modality_tokens, present)
    moved = {k: v + (100.0 if "audio" in k else 0.0) for k, v in out.proxies.items()}
    assert align_loss(moved, out.modality_tokens, present).item() == pytest.approx(only_vf.item())
    present = {m: torch.zeros(5, dtype=torch.bool) for m in MODS}
    present["video"][:] = True  # a single modality: nothing to align
    assert align_loss(out.proxies, out.modality_tokens, present).item() == 0.0


def test_alignment_matches_the_formula_and_detaches_the_target():
    model, batch = _model(), _batch()
    out = model(batch["tokens"], batch["present"])
    two = {m: batch["present"][m] for m in ("video", "audio")}
    pooled = {m: out.modality_tokens[m] for m in two}
    prox = {k: out.proxies[k] for k in ("video<-audio", "audio<-video")}
    want = ((prox["video<-audio"] - pooled["video"]).pow(2).mean(-1)
            + (prox["audio<-video"] - pooled["audio"]).pow(2).mean(-1)).mean()
    got = align_loss(prox, pooled, two)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    ratio = align_loss(prox, pooled, two, "ratio")
    want_r = ((prox["video<-audio"] - pooled["video"]).pow(2).mean(-1)
              / (prox["video<-audio"] - pooled["audio"]).pow(2).mean(-1)
              + (prox["audio<-video"] - pooled["audio"]).pow(2).mean(-1)
              / (prox["audio<-video"] - pooled["video"]).pow(2).mean(-1)).mean()
    assert ratio.item() == pytest.approx(want_r.item(), rel=1e-5)
    got.backward()
    assert model.proxies.query_Pd.grad.abs().sum() > 0
    assert model.cls_token.grad is None  # the pooled targets are detached


def test_cmpt_step_is_ce_plus_lambda_align_with_dropout_selectable():
    cls = registry.methods.get("cmpt")
    assert cls.label == "CMPT" and cls.missing_strategy("B5") == "cmpt"
    batch = _batch()
    task = cls(_model(), CmptConfig(lambda_align=0.2), TrainConfig(modality_dropout=0.5), 5)
    assert task.p_drop == 0.5
    res = task.training_step(batch, epoch=0)
    present = task.dropped(batch, 0)
    out = task.model(batch["tokens"], present)
    want = losses.cross_entropy(out.logits, batch["labels"]) + 0.2 * align_loss(
        out.proxies, out.modality_tokens, present)
    assert res.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert set(res.parts) == {"ce", "align"}
    assert "model.proxies.query_Pd" in task.no_weight_decay()  # a learned token, as CLS
    as_cached = cls(_model(), CmptConfig(dropout=False), TrainConfig(modality_dropout=0.5), 5)
    assert as_cached.p_drop == 0.0


def test_cmpt_config_refuses_an_unknown_distance():
    with pytest.raises(ConfigError, match="methods.cmpt.distance"):
        registry.methods.get("cmpt").config_from(RunConfig(methods={"cmpt": {"distance": "l1"}}))
