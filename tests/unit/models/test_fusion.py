"""The fusion block, its missing-modality strategies (Eq. 6, B.1–B.5, none) and the MH-MLP."""

import pytest
import torch

from mmkd import registry
from mmkd.config import FusionConfig
from mmkd.models import STRATEGIES, FusionModel, ModalityEmbedding, ModelSpec

torch.set_num_threads(1)
MODS = {"video": [5, 12], "flow": [4, 8], "audio": [3, 6]}
HEADS = {"verb": 4, "noun": 6}


def _model(strategy: str, mods=None, layers: int = 2, seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    spec = ModelSpec(modalities=mods or MODS, heads=HEADS, width=16, layers=layers, n_heads=8,
                     attn_dropout=0.0, missing_strategy=strategy, mlp_hidden=20)
    return FusionModel(spec).eval()


def _inputs(b: int = 4, seed: int = 1, mods=None):
    g = torch.Generator().manual_seed(seed)
    mods = mods or MODS
    tokens = {m: torch.randn(b, k, d, generator=g) for m, (k, d) in mods.items()}
    present = {m: torch.ones(b, dtype=torch.bool) for m in mods}
    return tokens, present


@pytest.mark.parametrize("strategy", ["B2", "B3", "B4", "B5"])
def test_token_count_is_fixed_when_a_modality_is_missing(strategy):
    model = _model(strategy)
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(
        (args[0].shape, args[1])))
    tokens, present = _inputs()
    model(tokens, present)
    present["audio"][:] = False
    present["video"][1] = False
    model(tokens, present)
    total = 1 + sum(k for k, _ in MODS.values())
    assert [s for s, _ in seen] == [torch.Size([4, total, 16])] * 2
    assert all(mask is None for _, mask in seen)  # every position is a real token


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_missing_modality_tokens_have_no_influence(strategy):
    model = _model(strategy)
    tokens, present = _inputs()
    present["flow"] = torch.tensor([True, False, True, False])
    ref = model(tokens, present)
    perturbed = {m: t.clone() for m, t in tokens.items()}
    perturbed["flow"][1] = torch.randn(4, 8) * 1e3
    perturbed["flow"][3] = float("nan")
    out = model(perturbed, present)
    for h in HEADS:
        assert torch.equal(out.logits[h], ref.logits[h])
    assert torch.equal(out.cls, ref.cls)
    # ... while changing an *available* modality's tokens does change the output
    perturbed["flow"][0] += 1.0
    assert not torch.allclose(model(perturbed, present).logits["verb"][0], ref.logits["verb"][0])


def _set_params(emb: ModalityEmbedding) -> None:
    g = torch.Generator().manual_seed(3)
    for p in emb.parameters():
        p.data = torch.randn(p.shape, generator=g)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_matches_its_equation(strategy):
    k, d_in, d = 3, 5, 4
    emb = ModalityEmbedding(d_in, d, k, strategy)
    _set_params(emb)
    x = torch.randn(2, k, d_in)
    present = torch.tensor([True, False])
    o, keep = emb(x, present)
    t = x[0] @ emb.proj.weight.T + emb.proj.bias  # projected tokens t_i of the available sample
    mt = emb.modality_token  # t̆
    tt = emb.token_tokens  # t̆_i (B3/B4) or î_i (B5)
    avail, miss = {
        "B1": lambda: (t + mt, mt.expand(1, d)),
        "B2": lambda: (t + mt, mt.expand(k, d)),
        "B3": lambda: (t + tt, tt),
        "B4": lambda: (t, tt),
        "B5": lambda: (t + mt + tt, mt + tt),
        "none": lambda: (t, torch.zeros(0, d)),
        "cmpt": lambda: (t, torch.zeros(0, d)),  # the fusion block adds the proxy (models/proxies)
    }[strategy]()
    torch.testing.assert_close(o[0], avail)
    assert keep[0].all()
    n_miss = miss.shape[0]
    torch.testing.assert_close(o[1, :n_miss], miss)
    assert keep[1].tolist() == [True] * n_miss + [False] * (k - n_miss)


def test_output_is_mean_of_mh_mlp_predictions_over_m_plus_1_tokens():
    model = _model("B5")
    tokens, present = _inputs()
    out = model(tokens, present)
    z = torch.stack([*out.modality_tokens.values(), out.cls], 1)  # (B, M+1, d)
    preds = model.mlp_head(z)
    for h in HEADS:
        torch.testing.assert_close(out.logits[h], preds[h].mean(1))
    assert set(out.modality_tokens) == set(MODS) and out.cls.shape == (4, 16)


def test_none_strategy_equals_a_model_without_the_missing_modality():
    """With `none`, a missing modality is exactly absent: masked keys, excluded prediction."""
    full = _model("none")
    small = _model("none", mods={"video": MODS["video"], "flow": MODS["flow"]})
    small.load_state_dict({k: v for k, v in full.state_dict().items()
                           if not k.startswith("embed.audio")})
    tokens, present = _inputs()
    present["audio"][:] = False
    out = full(tokens, present)
    ref = small({m: tokens[m] for m in ("video", "flow")},
                {m: present[m] for m in ("video", "flow")})
    for h in HEADS:
        torch.testing.assert_close(out.logits[h], ref.logits[h], rtol=1e-5, atol=1e-6)
    assert not out.token_valid["audio"].any() and out.token_valid["video"].all()
    assert torch.equal(out.modality_tokens["audio"], torch.zeros(4, 16))


def test_b1_missing_modality_is_one_attended_token():
    model = _model("B1")
    masks = []
    model.blocks[0].register_forward_pre_hook(lambda mod, args: masks.append(args[1]))
    tokens, present = _inputs()
    present["video"][2] = False
    model(tokens, present)
    keep = masks[0]  # (B, 1 + 5 + 4 + 3): CLS, video, flow, audio
    assert keep[2, 1:6].tolist() == [True, False, False, False, False]
    assert keep[0].all() and keep[2, 6:].all()


def test_attention_dropout_only_in_training():
    spec = ModelSpec(modalities=MODS, heads=HEADS, width=16, layers=1, attn_dropout=0.5,
                     mlp_hidden=16)
    model = FusionModel(spec)
    tokens, present = _inputs()
    model.eval()
    assert torch.equal(model(tokens, present).cls, model(tokens, present).cls)
    model.train()
    assert not torch.equal(model(tokens, present).cls, model(tokens, present).cls)


def test_builders_follow_the_recipe_and_are_registered():
    import mmkd.models  # noqa: F401  (registers the builders)

    fusion = FusionConfig(width=32, layers=3, heads=8, attn_dropout=0.1, missing_strategy="B2",
                          mlp_hidden=24)
    teacher = registry.models.get("teacher")(fusion, {"video": (5, 12)}, HEADS)
    student = registry.models.get("student")(fusion, {"video": (5, 12)}, HEADS, "none")
    assert len(teacher.blocks) == 3 and teacher.spec.width == 32
    assert teacher.mlp_head.shared[0].out_features == 24
    assert teacher.embed["video"].strategy == "B2" and student.embed["video"].strategy == "none"
    assert teacher.blocks[0].attn_dropout == 0.1
    assert "cls_token" in teacher.no_weight_decay()


def test_wrong_token_count_is_a_clear_error():
    model = _model("B5")
    tokens, present = _inputs()
    tokens["video"] = torch.randn(4, 7, 12)
    with pytest.raises(ValueError, match="expected 5 tokens"):
        model(tokens, present)


def test_with_kv_gives_the_last_blocks_per_head_kt_v_over_each_modalitys_kept_tokens():
    """Keys and values as the last block's qkv makes them, summed over m's own positions (CLS
    and the other modalities excluded; masked tokens excluded under `none`); outputs unchanged."""
    model = _model("none")
    tokens, present = _inputs()
    present["flow"][1] = False
    seen = {}
    model.blocks[-1].qkv.register_forward_hook(lambda mod, inp, out: seen.update(qkv=out))
    plain = model(tokens, present)
    out = model(tokens, present, with_kv=True)
    assert torch.equal(plain.logits["verb"], out.logits["verb"]) and not plain.kv
    b, L, _ = seen["qkv"].shape
    q, k, v = seen["qkv"].view(b, L, 3, 8, 2).permute(2, 0, 3, 1, 4)  # each (B, H, L, dh)
    start = 1
    for m, (n, _) in MODS.items():
        k_m, v_m = k[:, :, start:start + n], v[:, :, start:start + n]
        keep = present[m].view(-1, 1, 1, 1).float()  # `none`: a missing modality's keys masked
        torch.testing.assert_close(out.kv[m], keep * (k_m.transpose(-1, -2) @ v_m))
        assert out.kv[m].shape == (b, 8, 2, 2)
        start += n
    assert out.kv["flow"][1].abs().sum() == 0
