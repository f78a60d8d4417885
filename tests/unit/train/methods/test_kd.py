"""kd: Hinton's loss, checked against the formula written out, and no modality dropout."""

import pytest
import torch
import torch.nn.functional as F

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import registry
from mmkd.cache.loader import BatchNeeds
from mmkd.config import TrainConfig
from mmkd.models import FusionModel, ModelSpec
from mmkd.train.methods.kd import KdConfig

MODS = {"video": [3, 6], "audio": [2, 4]}
HEADS = {"verb": 3, "noun": 4}


def test_kd_loss_is_ce_plus_t2_scaled_soft_kl_without_dropout():
    torch.manual_seed(0)
    model = FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, mlp_hidden=16)).eval()
    cfg = KdConfig(temperature=3.0, ce_weight=0.2, kd_weight=0.8, teacher="t1")
    task = registry.methods.get("kd")(model, cfg, TrainConfig(modality_dropout=0.9), 50)
    assert task.needs(cfg) == BatchNeeds(logits=("t1",)) and task.p_drop == 0
    b = 5
    batch = {"index": torch.arange(b), "tokens": {m: torch.randn(b, k, d)
                                                  for m, (k, d) in MODS.items()},
             "present": {m: torch.ones(b, dtype=torch.bool) for m in MODS},
             "labels": {h: torch.randint(c, (b,)) for h, c in HEADS.items()},
             "teachers": {"t1": {"logits": {h: 3 * torch.randn(b, c) for h, c in HEADS.items()},
                                 "features": {}}}}
    res = task.training_step(batch, epoch=1)
    s = model(batch["tokens"], batch["present"]).logits  # every modality: nothing dropped
    want = 0.0
    for h in HEADS:
        p_t = torch.softmax(batch["teachers"]["t1"]["logits"][h] / 3.0, -1)
        log_p_s = torch.log_softmax(s[h] / 3.0, -1)
        kl = (p_t * (p_t.log() - log_p_s)).sum(-1).mean() * 9.0
        ce = F.cross_entropy(s[h], batch["labels"][h])
        want = want + (0.2 * ce + 0.8 * kl) / len(HEADS)
    assert res.loss.item() == pytest.approx(float(want.detach()), rel=1e-5)
    assert set(res.parts) == {"ce", "kd"}
