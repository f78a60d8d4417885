"""The training loop: schedule, determinism, exact resume after a kill, non-finite loss."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import mmkd.train  # noqa: F401  (registers methods and builders)
from helpers.train_cache import TEACHER, build_cache
from mmkd.cache.loader import CacheBatches
from mmkd.config import TrainConfig, demo_teacher
from mmkd.errors import MmkdError
from mmkd.models import build_teacher
from mmkd.train import checkpoint as ckpt
from mmkd.train.loop import NonFiniteLossError, fit, lr_at
from mmkd.train.methods import TeacherMethod
from mmkd.train.methods.teacher import TeacherConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("c") / "cache.zarr", n=50, theta=3, dim=8)


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=2, batch_size=8, lr_min=1e-4, lr_max=3e-3, warmup_epochs=1,
                weight_decay=0.05, grad_clip=1.0, seed=0)
    return TrainConfig(**{**base, **kw})


def _setup(cache, cfg: TrainConfig, attn_dropout: float = 0.2, method_cls=TeacherMethod):
    fusion = demo_teacher().fusion
    fusion.width, fusion.layers, fusion.mlp_hidden, fusion.attn_dropout = 16, 1, 16, attn_dropout
    train = CacheBatches(cache, TEACHER, "train", cfg.batch_size, shuffle=True, seed=cfg.seed)
    val = CacheBatches(cache, TEACHER, "val", cfg.batch_size, shuffle=False, seed=0)
    torch.manual_seed(cfg.seed)
    model = build_teacher(fusion, {m: (r.theta, r.dim) for m, r in train.readers.items()},
                          cache.heads)
    return method_cls(model, TeacherConfig(), cfg, cache.n), model, train, val


def _weights(out_dir, name=ckpt.LAST):
    return {k: v for k, v in load_file(str(out_dir / name)).items()
            if k.startswith(("model.", "optim."))}


def test_lr_schedule_warmup_then_cosine():
    cfg = _cfg(epochs=10, warmup_epochs=2, lr_min=1e-5, lr_max=5e-4)
    lrs = [lr_at(s, 10, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[10] == pytest.approx(1e-5 + (5e-4 - 1e-5) / 2)  # halfway through warm-up
    assert lrs[20] == pytest.approx(5e-4)
    assert lrs[60] == pytest.approx(1e-5 + (5e-4 - 1e-5) / 2)  # cosine midpoint
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21], strict=True))
    assert all(a > b for a, b in zip(lrs[20:99], lrs[21:100], strict=True))
    assert lr_at(100, 10, cfg) == pytest.approx(1e-5)


def test_poly_schedule_holds_a_tenth_during_warmup_then_decays_with_power_0_9():
    cfg = _cfg(epochs=10, warmup_epochs=5, lr_min=1e-9, lr_max=5e-5, schedule="poly",
               poly_power=0.9, warmup_factor=0.1)
    lrs = [lr_at(s, 4, cfg) for s in range(40)]
    assert lrs[:20] == [pytest.approx(5e-6)] * 20  # 5 warm-up epochs at 0.1 × lr
    assert lrs[20] == pytest.approx(5e-5)
    assert lrs[30] == pytest.approx(1e-9 + (5e-5 - 1e-9) * 0.5 ** 0.9)
    assert all(a > b for a, b in zip(lrs[20:39], lrs[21:40], strict=True))
    assert lr_at(40, 4, cfg) == pytest.approx(1e-9)


def test_optimizer_takes_eps_and_leaves_frozen_parameters_out():
    from mmkd.train.loop import make_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)
    model.no_weight_decay = lambda: {"1.bias"}
    opt = make_optimizer(model, _cfg(adam_eps=1e-7))
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    assert all(g["eps"] == 1e-7 for g in opt.param_groups)


def test_fit_writes_outputs_and_is_deterministic(cache, tmp_path):
    cfg = _cfg()
    runs = []
    for name in ("a", "b"):
        method, model, train, val = _setup(cache, cfg)
        events = []
        res = fit(method, train, val, cfg, tmp_path / name, {"note": "x"},
                  progress=events.append)
        runs.append(res)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    out = tmp_path / "a"
    lines = [json.loads(x) for x in (out / ckpt.METRICS).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"train_loss", "train_loss_ce", "train_loss_infonce", "train_acc", "val_acc",
            "val_acc_verb", "val_acc_noun", "samples_per_s", "lr"} <= set(lines[0])
    meta = json.loads((out / ckpt.META).read_text())
    assert meta["note"] == "x" and meta["epoch"] == runs[0].best_epoch
    assert meta["metrics"]["val_acc"] == max(r["val_acc"] for r in lines)
    steps = [e for e in events if e.phase == "train"]
    assert len(steps) == 2 * len(train) and steps[-1].step == steps[-1].total_steps
    assert all(e.samples_per_s > 0 and 0 <= e.acc <= 1 for e in steps)
    model, meta2 = ckpt.load_model(out)
    assert not model.training and meta2["model"]["width"] == 16


def test_fit_learns_the_fixture(cache, tmp_path):
    cfg = _cfg(epochs=15, lr_max=5e-3)
    method, model, train, val = _setup(cache, cfg, attn_dropout=0.0)
    res = fit(method, train, val, cfg, tmp_path, {})
    assert res.best["val_acc_verb"] > 0.8  # chance is 1/3


@pytest.mark.parametrize("every", [0, 3])
def test_resume_after_kill_is_exact(cache, tmp_path, every):
    """2 epochs straight == killed (at an epoch end, or mid-epoch after a step checkpoint) +
    resumed in a fresh model with a disturbed global RNG."""
    cfg = _cfg()
    method, model, train, val = _setup(cache, cfg)
    fit(method, train, val, cfg, tmp_path / "straight", {})

    kill_at = len(train) if every == 0 else every  # after the first epoch / after step 3

    class Killed(Exception):
        pass

    def killer(ev):
        if ev.phase == ("epoch" if every == 0 else "train") and ev.step == kill_at:
            raise Killed

    method, model, train, val = _setup(cache, cfg)
    with pytest.raises(Killed):
        fit(method, train, val, cfg, tmp_path / "killed", {}, progress=killer,
            checkpoint_every=every)
    torch.manual_seed(1234)  # a new process: other RNG state, other initial weights
    method, model, train, val = _setup(cache, _cfg(seed=0))
    torch.nn.init.normal_(model.cls_token)
    res = fit(method, train, val, cfg, tmp_path / "killed", {}, checkpoint_every=every)
    # 1-based: killed after epoch 1 continues epoch 2 at step 0; after step 3, epoch 1 there
    assert res.resumed_from == {"epoch": 1 if every else 2, "step": every, "epochs": 2}
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (tmp_path / "straight" / ckpt.METRICS).read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "killed" / ckpt.METRICS).read_text().splitlines()]
    drop = ("time_s", "samples_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in la] == \
        [{k: v for k, v in r.items() if k not in drop} for r in lb]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(cache, tmp_path):
    class ExplodesInEpoch2(TeacherMethod):
        def training_step(self, batch, epoch):
            out = super().training_step(batch, epoch)
            if epoch == 1:
                out.loss = out.loss * float("nan")
            return out

    cfg = _cfg(epochs=3)
    method, model, train, val = _setup(cache, cfg, method_cls=ExplodesInEpoch2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1: .*the last good checkpoint "
                                                 r".*last.safetensors \(after epoch 1\) is kept"):
        fit(method, train, val, cfg, tmp_path, {})
    from safetensors import safe_open
    with safe_open(str(tmp_path / ckpt.LAST), "pt") as fh:
        state = json.loads(fh.metadata()["trainer_state"])
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in load_file(str(tmp_path / ckpt.LAST)).values()
               if v.is_floating_point())
    assert (tmp_path / ckpt.BEST).exists()


class ExplodesAtStep(TeacherMethod):
    at = (0, 1)  # (0-based epoch, 0-based step in it) whose loss is NaN

    def training_step(self, batch, epoch):
        out = super().training_step(batch, epoch)
        self.calls = getattr(self, "calls", -1) + 1 if epoch == self.at[0] else -1
        if (epoch, self.calls) == self.at:
            out.loss = out.loss * float("nan")
        return out


def test_non_finite_loss_before_any_checkpoint_claims_none(cache, tmp_path):
    cfg = _cfg(epochs=2)
    method, model, train, val = _setup(cache, cfg, method_cls=ExplodesAtStep)
    with pytest.raises(NonFiniteLossError) as err:
        fit(method, train, val, cfg, tmp_path, {})
    assert "epoch 1, step 2: training stopped; no checkpoint of this run was written yet" in \
        str(err.value) and "epoch 0" not in str(err.value)
    assert not (tmp_path / ckpt.LAST).exists()


def test_non_finite_loss_after_a_step_checkpoint_names_it(cache, tmp_path):
    cfg = _cfg(epochs=2)
    method, model, train, val = _setup(cache, cfg, method_cls=ExplodesAtStep)
    method.at = (0, 2)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 3: .*\(epoch 1, step 2\) is kept"):
        fit(method, train, val, cfg, tmp_path, {}, checkpoint_every=1)


def test_restart_resets_the_folder_only_once_training_runs(cache, tmp_path):
    """--restart (resume=False) that fails before its first step (a cache error) leaves the
    previous run's metrics, training state and config as they were."""
    cfg = _cfg(epochs=1)
    method, model, train, val = _setup(cache, cfg)
    fit(method, train, val, cfg, tmp_path, {"config": {"run": 1}})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert {ckpt.METRICS, ckpt.LAST, ckpt.CONFIG} <= set(before)

    class BrokenCache:
        def __len__(self):
            return len(train)

        def set_epoch(self, epoch):
            pass

        def __iter__(self):
            raise MmkdError("cache.zarr: shard 0 is corrupt")

    method, model, _, val = _setup(cache, cfg)
    with pytest.raises(MmkdError, match="corrupt"):
        fit(method, BrokenCache(), val, cfg, tmp_path, {"config": {"run": 2}}, resume=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    fit(method, train, val, cfg, tmp_path, {"config": {"run": 2}}, resume=False)
    assert yaml.safe_load((tmp_path / ckpt.CONFIG).read_text()) == {"run": 2}
    assert len((tmp_path / ckpt.METRICS).read_text().splitlines()) == 1


def test_resume_refuses_another_config(cache, tmp_path):
    cfg = _cfg(epochs=1)
    method, model, train, val = _setup(cache, cfg)
    fit(method, train, val, cfg, tmp_path, {"fingerprint": "one"})
    method, model, train, val = _setup(cache, cfg)
    with pytest.raises(Exception, match="--restart"):
        fit(method, train, val, cfg, tmp_path, {"fingerprint": "two"})
    res = fit(method, train, val, cfg, tmp_path, {"fingerprint": "two"}, resume=False)
    assert res.resumed_from is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_cuda_uses_bf16_autocast_and_resumes(cache, tmp_path):
    cfg = _cfg(epochs=2)
    method, model, train, val = _setup(cache, cfg)
    dtypes = set()
    model.blocks[0].qkv.register_forward_hook(lambda m, a, out: dtypes.add(out.dtype))
    res = fit(method, train, val, cfg, tmp_path / "a", {}, device="cuda")
    assert dtypes == {torch.bfloat16} and res.best_epoch >= 1
    state = load_file(str(tmp_path / "a" / ckpt.LAST))
    assert "rng.cuda.rank0" in state and all(torch.isfinite(v).all() for v in state.values()
                                            if v.is_floating_point())
    model2, _ = ckpt.load_model(tmp_path / "a", map_location="cuda")
    assert next(model2.parameters()).is_cuda


def test_non_finite_between_syncs_is_raised_at_the_next_one_with_its_step(cache, tmp_path):
    """A NaN at epoch 2, step 2 (no sync there) stops the run at the next sync, naming that
    step, before the step checkpoint due after it is written: the last good one stays."""
    class ExplodesOnce(TeacherMethod):
        calls = 0

        def training_step(self, batch, epoch):
            out = super().training_step(batch, epoch)
            ExplodesOnce.calls += 1
            if ExplodesOnce.calls == steps + 2:
                out.loss = out.loss * float("nan")
            return out

    cfg = _cfg(epochs=3)
    method, _, train, val = _setup(cache, cfg, method_cls=ExplodesOnce)
    steps = len(train)
    assert steps >= 4
    with pytest.raises(NonFiniteLossError, match=r"loss is nan .* at epoch 2, step 2: training "
                                                 r"stopped; the last good checkpoint"):
        fit(method, train, val, cfg, tmp_path, {}, log_every=100, checkpoint_every=steps + 3)
    from safetensors import safe_open
    with safe_open(str(tmp_path / ckpt.LAST), "pt") as fh:
        state = json.loads(fh.metadata()["trainer_state"])
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in load_file(str(tmp_path / ckpt.LAST)).values()
               if v.is_floating_point())


def test_a_student_step_never_waits_for_the_device(cache, monkeypatch):
    """Loss, dropout, running sums and the finiteness check stay on the device; reading them
    back is one sync, and gives exactly the per-step values."""
    from mmkd.train.loop import EpochStats, FiniteGuard, correct_counts
    from mmkd.train.methods import KarmmaMethod
    from mmkd.train.methods.karmma import KarmmaConfig

    cfg = _cfg(modality_dropout=0.5)
    _, model, train, _ = _setup(cache, cfg)
    task = KarmmaMethod(model, KarmmaConfig(), cfg, cache.n)
    batches = []
    for b in train:
        b = {k: ({m: t.clone() for m, t in v.items()} if isinstance(v, dict) else v.clone())
             for k, v in b.items()}
        b["teachers"] = {"teacher": {"logits": {h: torch.randn(len(b["index"]), c)
                                                for h, c in cache.heads.items()}}}
        batches.append(b)
    stats, guard, want = EpochStats(), FiniteGuard(), []

    def host_sync(*_a, **_k):
        raise AssertionError("a host sync inside the training step")

    with monkeypatch.context() as mp:
        for name in ("item", "tolist", "__float__", "__int__", "__bool__", "numpy", "cpu"):
            mp.setattr(torch.Tensor, name, host_sync)
        for step, b in enumerate(batches):
            out = task.training_step(b, epoch=1)
            guard.watch(step, out.loss, out.loss.detach() * 0 + 1.0, out.parts)
            stats.add(len(b["index"]), out.loss, out.parts, correct_counts(out.logits, b["labels"]))
            want.append(out.loss.detach())
    guard.check(len(batches))  # finite: no error
    sums = stats.sync()
    assert sums["n"] == sum(len(b["index"]) for b in batches)
    assert sums["loss"] == pytest.approx(sum(float(w) * len(b["index"])
                                             for w, b in zip(want, batches, strict=True)))


def test_a_tasks_own_parts_train_and_resume_exactly(cache, tmp_path):
    """dml's peer student is a task parameter: AdamW updates it, last.safetensors holds it, and
    a killed run resumes it exactly (the same as straight through)."""
    from mmkd.train.methods.dml import DmlConfig, DmlMethod

    cfg = _cfg(epochs=2)

    def setup():
        _, model, train, val = _setup(cache, cfg)
        peer_of = _setup(cache, cfg)[1]
        task = DmlMethod(model, DmlConfig(), cfg, cache.n, make_model=lambda: peer_of)
        return task, train, val

    task, train, val = setup()
    peer0 = {k: v.clone() for k, v in task.peer.state_dict().items()}
    fit(task, train, val, cfg, tmp_path / "straight", {})
    assert any(not torch.equal(peer0[k], v) for k, v in task.peer.state_dict().items())

    class Killed(Exception):
        pass

    def killer(ev):
        if ev.phase == "epoch" and ev.epoch == 1:
            raise Killed

    task, train, val = setup()
    with pytest.raises(Killed):
        fit(task, train, val, cfg, tmp_path / "killed", {}, progress=killer)
    task, train, val = setup()
    torch.nn.init.normal_(task.peer.cls_token)  # everything must come from the checkpoint
    fit(task, train, val, cfg, tmp_path / "killed", {})
    a, b = (load_file(str(tmp_path / d / ckpt.LAST)) for d in ("straight", "killed"))
    assert any(k.startswith("peer.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng."))
