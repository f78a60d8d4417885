"""Stage 3 for CMPT: peft LoRA on the extractors' attention projections (base frozen, output
unchanged at B = 0, merged back exactly) and proxy tokens inside an AST encoder."""

import copy

import pytest
import torch

from helpers.e2e_student import THETA, T
from helpers.e2e_student import batch as _batch
from helpers.e2e_student import extractor as _extractor
from mmkd.extract.theta import n_out
from mmkd.models import ModelSpec
from mmkd.train.finetune import EndToEndStudent
from mmkd.train.finetune_cmpt import add_lora, build_encoder_proxies, merge_lora, proxy_key


@pytest.mark.parametrize("name", ["test_ast", "test_swin3d"])
def test_lora_freezes_the_base_and_leaves_the_output_identical_at_init(name):
    torch.manual_seed(0)
    ext = _extractor(name, **({"stochastic_depth_prob": 0.0} if name == "test_swin3d" else {}))
    plain = copy.deepcopy(ext).eval()
    base = {k: v.clone() for k, v in ext.state_dict().items()}
    n = add_lora(ext)
    blocks = sum(1 for k in base if k.endswith("attn.qkv.weight"))
    assert n == 2 * blocks > 0  # qkv and proj of every attention block
    trainable = {k for k, p in ext.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in k or ".lora_B." in k for k in trainable)
    lora_b = [p for k, p in ext.named_parameters() if ".lora_B." in k]
    assert all(p.shape[1] == 1 and not p.any() for p in lora_b)  # rank 1, B = 0
    inputs = _batch()[0]["audio" if name == "test_ast" else "video"]
    ext.eval()
    with torch.no_grad():
        assert torch.equal(ext(dict(inputs)), plain(dict(inputs)))
    # a training step moves only the adapters; the merged weights load into a plain extractor
    ext.train()
    opt = torch.optim.SGD([p for p in ext.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        ext(dict(inputs)).square().mean().backward()
        opt.step()
    assert merge_lora(base) == base  # nothing to merge in a plain state dict
    sd = ext.state_dict()
    for k, v in base.items():
        layer = k.rsplit(".", 1)[0]
        stored = sd.get(f"{layer}.base_layer.{k.rsplit('.', 1)[1]}", sd.get(k))
        assert torch.equal(stored, v), k  # base weights unchanged
    merged = copy.deepcopy(plain)
    merged.load_state_dict(merge_lora(sd))
    ext.eval()
    with torch.no_grad():
        out, ref = merged(dict(inputs)), ext(dict(inputs))
    assert not torch.allclose(ref, plain(dict(inputs)))  # the adapters did change something
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def _student():
    torch.manual_seed(0)
    ext = {"video": _extractor("test_swin3d", stochastic_depth_prob=0.0),
           "audio": _extractor("test_ast")}
    mods = {m: [n_out(e.spec.n_tokens(T), THETA), e.spec.dim] for m, e in ext.items()}
    mods["flow"] = [THETA, 8]
    spec = ModelSpec(modalities=mods, heads={"verb": 3}, width=16, layers=1, n_heads=2,
                     mlp_hidden=16, missing_strategy="cmpt")
    model = EndToEndStudent(spec, ext, {m: THETA for m in ext})
    model.encoder_proxies = build_encoder_proxies(spec, ext)
    return model.eval()


def test_proxies_inside_the_ast_leave_its_tokens_as_they_were_and_feed_the_fusion():
    model = _student()
    assert list(model.encoder_proxies) == ["audio"]  # the Swin has no class token
    assert "encoder_proxies.audio.tokens_PD" in model.no_weight_decay()
    assert model.encoder_proxies["audio"].targets == ["video", "flow"]
    tokens, present = _batch()
    tokens = {m: tokens[m] for m in ("video", "audio", "flow")}
    present = {m: present[m] for m in tokens}
    with torch.no_grad():
        enc = model.encode(tokens, present)
        plain = model.extractors["audio"](dict(tokens["audio"]))
        from mmkd.extract.theta import theta_average

        rows = present["audio"]
        torch.testing.assert_close(enc["audio"][rows], theta_average(plain, THETA)[rows])
        assert enc[proxy_key("audio")].shape == (5, 2, model.extractors["audio"].spec.dim)
        out = model(tokens, present)
    want = model.encoder_proxies["audio"].out["video"](enc[proxy_key("audio")][:, 0])
    torch.testing.assert_close(out.proxies["video<-audio"], want)
    # the proxies read only their source: changing the video leaves the audio's proxies alone
    tokens["video"] = type(tokens["video"])(frames=tokens["video"]["frames"] * 3 + 1)
    with torch.no_grad():
        again = model(tokens, present)
    torch.testing.assert_close(again.proxies["video<-audio"], out.proxies["video<-audio"])
    # a missing video takes the mean of its proxies from the audio (encoder) and the flow
    present["video"] = torch.zeros(5, dtype=torch.bool)
    with torch.no_grad():
        miss = model(tokens, present)
    ok = present["audio"]
    torch.testing.assert_close(
        miss.modality_tokens["video"][ok],
        ((miss.proxies["video<-audio"] + miss.proxies["video<-flow"]) / 2)[ok])


def test_proxy_tokens_receive_gradients_from_the_loss():
    model = _student().train()
    add_lora(model.extractors["audio"])
    tokens, present = _batch()
    tokens = {m: tokens[m] for m in ("video", "audio", "flow")}
    present = {m: present[m] for m in tokens}
    present["video"][:] = False
    out = model(tokens, present)
    out.logits["verb"].square().sum().backward()
    assert model.encoder_proxies["audio"].tokens_PD.grad.abs().sum() > 0
    lora_a = [p for k, p in model.extractors["audio"].named_parameters() if "lora_B" in k]
    assert all(p.grad is not None for p in lora_a)
