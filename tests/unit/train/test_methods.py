"""Methods are tasks owning their model and loss: each loss is the paper's weighted sum of the
tested terms, configs come from `methods.<name>` of the run, and tasks declare their batch."""

import pytest
import torch

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import config as C
from mmkd import registry
from mmkd.cache.loader import BatchNeeds
from mmkd.config import TrainConfig
from mmkd.errors import ConfigError, MmkdError
from mmkd.models import FusionModel, ModelSpec
from mmkd.train import losses
from mmkd.train.loop import make_optimizer
from mmkd.train.methods import DropoutDraws, student_methods
from mmkd.train.methods.karmma import KarmmaConfig
from mmkd.train.methods.teacher import TeacherConfig
from mmkd.train.runs import build_task, method_class

torch.set_num_threads(1)
MODS = {"video": [3, 6], "flow": [3, 5], "audio": [2, 4]}
HEADS = {"verb": 3, "noun": 4}


def _batch(b=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"index": torch.arange(10, 10 + b),
            "tokens": {m: torch.randn(b, k, d, generator=g) for m, (k, d) in MODS.items()},
            "present": {m: torch.ones(b, dtype=torch.bool) for m in MODS},
            "labels": {h: torch.randint(c, (b,), generator=g) for h, c in HEADS.items()},
            "teachers": {"teacher": {"logits": {h: torch.randn(b, c, generator=g)
                                                for h, c in HEADS.items()}, "features": {}}}}


def _model(strategy="B5"):
    torch.manual_seed(0)
    return FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, missing_strategy=strategy,
                                 mlp_hidden=16)).eval()


def _task(name, cfg=None, train=None, strategy="B5"):
    cls = registry.methods.get(name)
    return cls(_model(cls.missing_strategy(strategy)), cfg or cls.Config(),
               train or TrainConfig(), 100, make_model=lambda: _model(strategy))


def test_registered_methods_with_labels():
    assert {"teacher", "karmma", "baseline", "baseline-delta", "kd", "dml"} <= \
        set(registry.methods.list())
    assert registry.methods.get("karmma").label == "KARMMA_S"
    assert "teacher" not in student_methods() and "kd" in student_methods()


def test_paper_loss_weights_are_the_method_defaults():
    assert (TeacherConfig().alpha, TeacherConfig().beta, TeacherConfig().tau) == (0.7, 0.3, 0.1)
    assert (KarmmaConfig().gamma, KarmmaConfig().lambda_kl) == (0.7, 0.3)


def test_method_config_from_the_run_and_its_errors():
    cfg = C.apply_overrides(C.run_preset("demo"), ["methods.karmma.lambda_kl=0.4",
                                                   "methods.teacher.tau=0.07"])
    _, k = method_class("karmma", cfg)
    assert (k.gamma, k.lambda_kl) == (0.7, 0.4)
    assert method_class("teacher", cfg)[1].tau == pytest.approx(0.07)
    with pytest.raises(ConfigError, match=r"methods\.karmma\.lambda: unknown field"):
        method_class("karmma", C.apply_overrides(cfg, ["methods.karmma.lambda=1"]))
    with pytest.raises(ConfigError, match=r"methods\.teacher\.tau = 0.0: must be > 0"):
        method_class("teacher", C.apply_overrides(cfg, ["methods.teacher.tau=0"]))
    with pytest.raises(MmkdError, match="methods.karma: no such method"):
        method_class("karmma", C.apply_overrides(cfg, ["methods.karma.gamma=1"]))


def test_method_overrides_survive_a_yaml_round_trip(tmp_path):
    cfg = C.apply_overrides(C.run_preset("demo"), ["methods.kd.temperature=2"])
    C.save(cfg, tmp_path / "mmkd.yaml")
    assert method_class("kd", C.load(tmp_path / "mmkd.yaml"))[1].temperature == 2


def test_teacher_loss_is_alpha_ce_plus_beta_infonce():
    task = _task("teacher", TeacherConfig(alpha=0.7, beta=0.3, tau=0.1))
    batch = _batch()
    batch["present"]["audio"][1] = False
    res = task.training_step(batch, epoch=0)
    out = task.model(batch["tokens"], batch["present"])
    ce = losses.cross_entropy(out.logits, batch["labels"])
    nce = losses.info_nce(out.modality_tokens, batch["present"], 0.1)
    assert res.loss.item() == pytest.approx((0.7 * ce + 0.3 * nce).item(), rel=1e-5)
    assert nce.item() > 0


def test_karmma_loss_is_gamma_ce_plus_lambda_kl_with_dropout():
    task = _task("karmma", KarmmaConfig(gamma=0.7, lambda_kl=0.3),
                 TrainConfig(modality_dropout=0.5, seed=3))
    assert task.needs(task.cfg) == BatchNeeds(logits=("teacher",))
    assert task.missing_strategy("B5") == "B5"
    batch = _batch()
    res = task.training_step(batch, epoch=2)
    kept = losses.modality_dropout(batch["present"], 0.5, DropoutDraws(3, 100)(2, batch["index"]))
    assert any(not k.all() for k in kept.values())  # something was dropped at p = 0.5
    out = task.model(batch["tokens"], kept)
    want = 0.7 * losses.cross_entropy(out.logits, batch["labels"]) + \
        0.3 * losses.kl_distill(out.logits, batch["teachers"]["teacher"]["logits"])
    assert res.loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_baselines():
    train = TrainConfig(modality_dropout=0.5)
    base, delta = _task("baseline", train=train), _task("baseline-delta", train=train)
    assert base.missing_strategy("B5") == "none" and base.p_drop == 0
    assert delta.missing_strategy("B5") == "B5" and delta.p_drop == 0.5
    assert base.needs(base.cfg) == BatchNeeds() == delta.needs(delta.cfg)
    batch = _batch()
    res = base.training_step(batch, epoch=0)
    out = base.model(batch["tokens"], batch["present"])
    assert res.loss.item() == pytest.approx(
        losses.cross_entropy(out.logits, batch["labels"]).item(), rel=1e-6)


def test_task_owns_its_parts_for_the_optimizer_and_checkpoints():
    """A method's own trainable parts are task parameters: AdamW and the state dict see them."""
    task = _task("karmma")
    task.router = torch.nn.Linear(4, 2)
    opt = make_optimizer(task, TrainConfig())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(p) for p in task.router.parameters()} <= in_opt
    assert all(id(p) in in_opt for p in task.model.parameters())
    no_decay = {id(p) for p in opt.param_groups[1]["params"]}
    assert id(task.model.cls_token) in no_decay
    assert {"router.weight", "model.cls_token"} <= set(task.state_dict())


def test_build_task_seeds_and_applies_the_forced_strategy():
    cfg = C.run_preset("demo")
    train = TrainConfig(seed=5)
    mk = lambda s: FusionModel(ModelSpec(MODS, HEADS, width=16, layers=1, missing_strategy=s,  # noqa: E731
                                         mlp_hidden=16))
    a, b = build_task("baseline", cfg, train, 10, mk, "B5"), build_task("baseline", cfg, train,
                                                                         10, mk, "B5")
    assert a.model.spec.missing_strategy == "none"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


def test_evaluation_forward_never_drops():
    task = _task("karmma", train=TrainConfig(modality_dropout=0.9))
    assert all(p.all() for p in task.dropped(_batch(), None).values())


def test_dropout_draws_depend_only_on_seed_epoch_and_index():
    d = DropoutDraws(seed=5, n_samples=50)
    a = d(1, torch.tensor([3, 7, 9]))
    assert torch.equal(d(1, torch.tensor([9, 3])), a[[2, 0]])  # batch order does not matter
    assert torch.equal(DropoutDraws(5, 50)(1, torch.tensor([3, 7, 9])), a)
    assert not torch.equal(d(2, torch.tensor([3, 7, 9])), a)
