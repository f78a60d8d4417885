"""EndToEndStudent: extractors inside the fusion model, with the memory controls exact."""

import copy

import pytest
import torch
from safetensors.torch import save_file

from helpers.e2e_student import THETA, B, T
from helpers.e2e_student import batch as _batch
from helpers.e2e_student import extractor as _extractor
from mmkd.errors import MmkdError
from mmkd.extract.extractors import create_extractor
from mmkd.extract.theta import n_out
from mmkd.models import ModelSpec
from mmkd.train.finetune import finetune_recipe
from mmkd.train.finetune_data import RawInputs, collate
from mmkd.train.finetune_model import EndToEndStudent, enable_grad_checkpointing


def _model(accum: int = 1) -> EndToEndStudent:
    torch.manual_seed(0)
    ext = {"video": _extractor("test_swin3d", stochastic_depth_prob=0.0),
           "audio": _extractor("test_ast"), "detection": _extractor("test_stlt", dropout=0.0)}
    mods = {m: [n_out(e.spec.n_tokens(T), THETA), e.spec.dim] for m, e in ext.items()}
    mods["flow"] = [THETA, 8]  # a cached modality
    spec = ModelSpec(modalities=mods, heads={"verb": 3}, width=16, layers=1, n_heads=2,
                     mlp_hidden=16)
    return EndToEndStudent(spec, ext, {m: THETA for m in ext}, accum_steps=accum)


def _grads(model) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    tokens, present = _batch()
    out = model(tokens, present)
    (out.logits["verb"].square().sum() + out.cls.sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _saved_numel(model) -> int:
    """Elements autograd keeps for backward outside checkpointed regions."""
    n = 0

    def pack(t):
        nonlocal n
        n += t.numel()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(*_batch())
    return n


def test_accumulation_and_checkpointing_give_the_same_gradients():
    torch.set_num_threads(1)
    base = _model()
    ref = _grads(base)
    assert any(k.startswith("extractors.audio.") for k in ref)
    split = copy.deepcopy(base)
    split.accum_steps = 3
    ckpt = copy.deepcopy(base)
    assert sum(enable_grad_checkpointing(e) for e in ckpt.extractors.values()) == 2 + 1 + 2
    both = copy.deepcopy(ckpt)
    both.accum_steps = 2
    full = _saved_numel(base)
    assert _saved_numel(split) < 0.5 * full and _saved_numel(ckpt) < 0.8 * full
    for other in (split, ckpt, both):
        got = _grads(other)
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=2e-5, rtol=1e-4, msg=k)


def test_absent_rows_never_reach_the_extractor():
    model = _model().eval()
    tokens, present = _batch()
    enc = model.encode(tokens, present)
    assert enc["audio"].shape == (B, *model.spec.modalities["audio"])
    assert not enc["audio"][1].any() and enc["audio"][0].abs().sum() > 0
    garbage = dict(tokens, audio=RawInputs(fbank=tokens["audio"]["fbank"].clone()))
    garbage["audio"]["fbank"][1] = float("nan")
    with torch.no_grad():
        a, b = model(tokens, present), model(garbage, present)
    torch.testing.assert_close(a.logits["verb"], b.logits["verb"])
    none = {m: torch.zeros(B, dtype=torch.bool) if m == "audio" else p for m, p in present.items()}
    assert not model.encode(tokens, none)["audio"].any()


def test_extractor_state_round_trips_through_create_extractor(tmp_path):
    model = _model()
    with torch.no_grad():
        for p in model.extractors.parameters():
            p.add_(0.01)
    fusion, ext = model.split_state()
    assert not any(k.startswith("extractors.") for k in fusion)
    for m, name in (("video", "test_swin3d"), ("audio", "test_ast"), ("detection", "test_stlt")):
        save_file({k: v.contiguous() for k, v in ext[m].items()}, str(tmp_path / f"{m}.st"))
        path = tmp_path / f"{m}.safetensors"
        (tmp_path / f"{m}.st").rename(path)
        loaded = create_extractor(name, weights=path)
        for k, v in loaded.state_dict().items():
            torch.testing.assert_close(v, ext[m][k], msg=k)


def test_weight_decay_skips_extractor_embeddings_and_norms():
    skip = _model().no_weight_decay()
    assert {"extractors.audio.v.pos_embed", "extractors.audio.v.cls_token",
            "extractors.detection.frame_embed.layer_norm.weight",
            "extractors.audio.v.norm.weight"} <= skip
    assert "extractors.audio.v.blocks.0.attn.qkv.weight" not in skip
    assert "cls_token" in skip
    # each family names its own: Swin's relative position tables, none of STLT's embeddings
    assert any(n.startswith("extractors.video.") and n.endswith("relative_position_bias_table")
               for n in skip)
    assert "extractors.detection.frame_embed.position_embeddings.weight" not in skip


def test_checkpointing_is_refused_for_a_family_without_transformer_blocks():
    with pytest.raises(MmkdError, match="small_convnet: no transformer blocks"):
        enable_grad_checkpointing(create_extractor("small_convnet", random_init=True))


def test_collate_zero_fills_failed_media():
    ok = {"fbank": torch.ones(6, 4)}
    idx, raw, present, reasons = collate([(3, {"audio": ok}, {}),
                                          (5, {"audio": None}, {"audio": "too short"})])
    assert idx.tolist() == [3, 5] and present["audio"].tolist() == [True, False]
    assert raw["audio"]["fbank"].shape == (2, 6, 4) and not raw["audio"]["fbank"][1].any()
    assert reasons == ["too short"]
    _, raw, present, _ = collate([(0, {"audio": None}, {"audio": "x"})])
    assert not raw["audio"] and not present["audio"].any()


def test_recipe_keeps_the_warmup_share_and_rejects_bad_values():
    from mmkd.config import TrainConfig

    t = finetune_recipe(TrainConfig(epochs=30, warmup_epochs=3, lr_min=1e-5, lr_max=1e-3), 10,
                        0.1)
    assert (t.epochs, t.warmup_epochs) == (10, 1.0)
    assert (t.lr_min, t.lr_max) == pytest.approx((1e-6, 1e-4))
    assert finetune_recipe(TrainConfig(epochs=30), None).epochs == 30
    with pytest.raises(MmkdError, match="--epochs"):
        finetune_recipe(TrainConfig(), 0)
    with pytest.raises(MmkdError, match="--lr-scale"):
        finetune_recipe(TrainConfig(), 3, 0.0)
    with pytest.raises(MmkdError, match="--accum-steps"):
        _model(accum=0)
