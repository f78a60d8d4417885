"""dml: two students, each CE + KL to the other's (fixed) prediction; both receive gradients,
the peer is part of the task (optimizer, resumable state) but not of the kept model."""

import pytest
import torch

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import registry
from mmkd.cache.loader import BatchNeeds
from mmkd.config import TrainConfig
from mmkd.models import FusionModel, ModelSpec
from mmkd.train import losses
from mmkd.train.methods.dml import DmlConfig

MODS = {"video": [3, 6], "audio": [2, 4]}
HEADS = {"verb": 3, "noun": 4}


def _model():
    return FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, mlp_hidden=16))


def test_dml_trains_two_students_on_each_others_predictions():
    torch.manual_seed(0)
    task = registry.methods.get("dml")(_model(), DmlConfig(kl_weight=0.5), TrainConfig(), 50,
                                       make_model=_model)
    assert task.needs(task.cfg) == BatchNeeds()
    assert {k.split(".")[0] for k in task.state_dict()} == {"model", "peer"}
    b = 6
    batch = {"index": torch.arange(b), "tokens": {m: torch.randn(b, k, d)
                                                  for m, (k, d) in MODS.items()},
             "present": {m: torch.ones(b, dtype=torch.bool) for m in MODS},
             "labels": {h: torch.randint(c, (b,)) for h, c in HEADS.items()}}
    task.eval()  # no attention dropout: the forward passes below see the same numbers
    res = task.training_step(batch, epoch=0)
    a = task.model(batch["tokens"], batch["present"]).logits
    p = task.peer(batch["tokens"], batch["present"]).logits
    want = (losses.cross_entropy(a, batch["labels"]) + 0.5 * losses.kl_distill(a, p)
            + losses.cross_entropy(p, batch["labels"]) + 0.5 * losses.kl_distill(p, a))
    assert res.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert res.parts["kl"].item() > 0  # the two differ at initialisation
    res.loss.backward()
    assert task.model.cls_token.grad is not None and task.peer.cls_token.grad is not None
    assert all(torch.equal(res.logits[h], a[h]) for h in HEADS)  # the kept student's logits


def test_dml_needs_a_model_factory():
    with pytest.raises(ValueError, match="make_model"):
        registry.methods.get("dml")(_model(), DmlConfig(), TrainConfig(), 10)
