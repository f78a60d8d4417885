"""mst: MaskNet, routing, load balancing, the λ schedule and each stage's loss and gradients."""

import math

import pytest
import torch

import mmkd.train  # noqa: F401  (registers methods)
from mmkd import registry
from mmkd.config import RunConfig, TrainConfig
from mmkd.errors import ConfigError
from mmkd.models import FusionModel, ModelSpec
from mmkd.train.methods.mst import (
    ALL,
    GateNet,
    MaskNet,
    MstCollaborative,
    MstConfig,
    MstSpecialise,
    decay_factors,
    load_balancing,
    masked,
    top_k_routes,
)

MODS = {"video": [3, 6], "audio": [2, 4]}
HEADS = {"verb": 3, "noun": 4}


def member(mods):
    return FusionModel(ModelSpec({m: MODS[m] for m in mods}, HEADS, width=12, layers=1,
                                 n_heads=2, mlp_hidden=9))


def batch(b=5, teachers=None):
    return {"index": torch.arange(b),
            "tokens": {m: torch.randn(b, k, d) for m, (k, d) in MODS.items()},
            "present": {m: torch.ones(b, dtype=torch.bool) for m in MODS},
            "labels": {h: torch.randint(c, (b,)) for h, c in HEADS.items()},
            "teachers": teachers or {}}


def test_masknet_shapes_and_zero_mask_path_halves_features():
    torch.manual_seed(0)
    net = MaskNet(12, heads=3, hidden_factor=2)
    assert net.hidden == 6 and net.embed.out_features == 12 * 6
    x = torch.randn(5, 4, 12)  # (B, tokens, d): one mask per token and channel
    mask = net.mask(x)
    assert mask.shape == x.shape and ((mask > 0) & (mask < 1)).all()
    torch.nn.init.zeros_(net.fc.weight)
    torch.nn.init.zeros_(net.fc.bias)
    assert torch.allclose(net(x), 0.5 * x)


@pytest.mark.parametrize("layer", ["fusion", "shared"])
def test_masked_changes_the_output_only_inside_the_context(layer):
    torch.manual_seed(0)
    model = member(list(MODS)).eval()
    b = batch()
    net = MaskNet(12 if layer == "fusion" else 9, heads=3)
    plain = model(b["tokens"], b["present"]).logits["verb"]
    with masked(model, layer, net):
        inside = model(b["tokens"], b["present"]).logits["verb"]
    after = model(b["tokens"], b["present"]).logits["verb"]
    assert not torch.allclose(plain, inside) and torch.equal(plain, after)


def test_top1_routing_picks_the_argmax():
    conf = torch.softmax(torch.randn(7, 5), -1)
    assert torch.equal(top_k_routes(conf, 1)[:, 0], conf.argmax(-1))
    top2 = top_k_routes(conf, 2)
    assert torch.equal(top2[:, 0], conf.argmax(-1)) and (top2[:, 0] != top2[:, 1]).all()


def test_load_balancing_is_zero_for_uniform_and_matches_a_hand_computation():
    assert load_balancing(torch.full((6, 4), 0.25)).item() == pytest.approx(0.0, abs=1e-7)
    conf = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])  # mean: 0.4, 0.4, 0.2
    want = sum(1 / 3 * math.log((1 / 3) / c) for c in (0.4, 0.4, 0.2))
    assert load_balancing(conf).item() == pytest.approx(want, rel=1e-6)


def test_lambda_schedule_is_scaled_to_the_run_and_decays_after_epoch_0():
    cfg = MstConfig()
    assert decay_factors(0, 100, cfg) == (1.0, 1.0)
    assert decay_factors(1, 100, cfg) == pytest.approx((0.5, 0.9))
    assert decay_factors(31, 100, cfg) == pytest.approx((0.25, 0.9 ** 4))
    # 40 epochs: periods 12 and 4
    assert decay_factors(13, 40, cfg) == pytest.approx((0.25, 0.9 ** 4))


def test_config_problems_are_reported():
    with pytest.raises(ConfigError, match="mask_layers"):
        registry.methods.get("mst").config_from(
            RunConfig(methods={"mst": {"mask_layers": ["nope"]}}))


def test_stage1_gradients_reach_both_members_of_a_pair():
    torch.manual_seed(0)
    task = MstCollaborative(member(list(MODS)), MstConfig(), TrainConfig(), 10,
                            {m: member([m]) for m in MODS})
    b = batch()
    res = task.training_step(b, 0)
    out = {n: m(b["tokens"], b["present"]).logits for n, m in task.all_members().items()}
    # the KL part alone (CE removed) still reaches every member: nothing is detached
    from mmkd.train.methods.kd import soft_kl
    kl = soft_kl(out["video"], out[ALL], 4.0)  # KL(p_all ‖ p_video): one pair, one direction
    kl.backward()
    for name in (ALL, "video"):
        grads = [p.grad for p in task.all_members()[name].mlp_head.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), name
    assert set(res.parts) == {"ce", "kl"} and res.loss.requires_grad


def test_stage2_trains_only_the_masknets_against_the_target_member():
    torch.manual_seed(0)
    members = {ALL: member(list(MODS)), "video": member(["video"]),
               "audio": member(["audio"])}
    task = MstSpecialise(members["audio"], MstConfig(), TrainConfig(), 10,
                         {n: m for n, m in members.items() if n != "audio"})
    assert task.routes == [(ALL, "fusion"), (ALL, "shared"), ("video", "fusion"),
                           ("video", "shared")]
    task.train()
    assert not task.bases.training and not task.model.training
    res = task.training_step(batch(), 0)
    res.loss.backward()
    assert all(p.grad is None for p in task.bases.parameters())
    assert all(p.grad is None for p in task.model.parameters())
    assert all(net.embed.weight.grad.abs().sum() > 0 for net in task.masks)
    assert len(res.parts) == 4


def test_stage3_loss_routing_and_gate_gradient_only_from_load_balancing():
    torch.manual_seed(0)
    ids = ["mst-audio-1", "mst-audio-2", "mst-audio-3"]
    b = batch(teachers={t: {"logits": {h: 3 * torch.randn(5, c) for h, c in HEADS.items()},
                            "features": {}} for t in ids})
    task = registry.methods.get("mst")(member(["audio"]), MstConfig(), TrainConfig(epochs=10),
                                       10, teachers=ids)
    assert isinstance(task.gate, GateNet) and task.gate.fc1.out_features == 2 * 7
    res = task.training_step(b, epoch=0)
    logits = task.model(b["tokens"], b["present"]).logits
    conf = torch.softmax(task.gate(torch.cat([logits["verb"], logits["noun"]], -1)), -1)
    pick = conf.argmax(-1)
    assert task.routed.tolist() == torch.bincount(pick, minlength=3).tolist()
    want_kd = 0.0
    for h in HEADS:
        q = torch.stack([b["teachers"][t]["logits"][h] for t in ids])[pick, torch.arange(5)]
        p_t = torch.softmax(q / 4, -1)
        want_kd += (p_t * (p_t.log() - torch.log_softmax(logits[h] / 4, -1))).sum(-1).mean() * 16
    want_kd /= len(HEADS)
    assert res.parts["kd"].item() == pytest.approx(want_kd.item(), rel=1e-5)
    assert res.parts["lb"].item() == pytest.approx(load_balancing(conf).item(), rel=1e-5)
    # the gate learns from λ2·L_LB only: with λ2 = 0 it gets no gradient at all
    task.cfg.lb_weight = 0.0
    task.zero_grad()
    task.training_step(b, epoch=0).loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in task.gate.parameters())
    task.cfg.lb_weight = 1.0
    task.zero_grad()
    task.training_step(b, epoch=0).loss.backward()
    assert task.gate.fc2.weight.grad.abs().sum() > 0
