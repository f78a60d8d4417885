"""AST at any clip length: an official-layout checkpoint for 1024 frames (the AudioSet 12 × 101
patch grid) loads for another `target_frames` with the position embedding the official code
computes, and `fbank_clip` pads the raw fbank before normalising, as the official loader does."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch
import torchaudio

from helpers import extract_media as em
from mmkd.extract.extractors import create_extractor
from mmkd.extract.extractors.ast import resample_pos_embed
from mmkd.extract.readers import audio
from mmkd.extract.sampling import ClipSampler


def official_audioset_pos(pos: torch.Tensor, t_dim: int) -> torch.Tensor:
    """ASTModel(audioset_pretrain=True): the 12 × 101 grid cut or interpolated on time."""
    d = pos.shape[-1]
    new = pos[:, 2:, :].reshape(1, 1212, d).transpose(1, 2).reshape(1, d, 12, 101)
    if t_dim < 101:
        new = new[:, :, :, 50 - int(t_dim / 2): 50 - int(t_dim / 2) + t_dim]
    else:
        new = torch.nn.functional.interpolate(new, size=(12, t_dim), mode="bilinear")
    new = new.reshape(1, d, 12 * t_dim).transpose(1, 2)
    return torch.cat([pos[:, :2, :], new], dim=1)


@pytest.fixture(scope="module")
def audioset_ckpt(tmp_path_factory):
    """A checkpoint saved the official way (DataParallel keys, mlp_head) for 128 × 1024 input."""
    model = create_extractor("test_ast", random_init=True, n_mels=128, target_frames=1024)
    assert model.v.patch_embed.grid_size == (12, 101)
    sd = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    sd["module.v.pos_embed"] = torch.randn_like(sd["module.v.pos_embed"])
    sd["module.mlp_head.0.weight"] = torch.ones(32)
    path = tmp_path_factory.mktemp("ast") / "audioset_10_10_0.4593.pth"
    torch.save(sd, path)
    return path, sd


@pytest.mark.parametrize("frames, t_dim", [(100, 9), (512, 50), (1024, 101), (1600, 159)])
def test_audioset_checkpoint_loads_for_any_clip_length(audioset_ckpt, frames, t_dim):
    path, sd = audioset_ckpt
    model = create_extractor("test_ast", weights=path, n_mels=128, target_frames=frames)
    assert model.v.patch_embed.grid_size == (12, t_dim)
    want = official_audioset_pos(sd["module.v.pos_embed"], t_dim)
    torch.testing.assert_close(model.v.pos_embed, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.v.blocks[0].attn.qkv.weight,
                               sd["module.v.blocks.0.attn.qkv.weight"], rtol=0, atol=0)
    tokens = model({"fbank": torch.randn(1, frames, 128)})
    assert tokens.shape == (1, 12 * t_dim + 2, 32)


def official_forward(sd: dict[str, torch.Tensor], fbank: torch.Tensor, pos: torch.Tensor,
                     heads: int) -> torch.Tensor:
    """ASTModel.forward up to its final norm, on the checkpoint's own keys, in plain torch ops:
    16×16 conv patches at stride 10, [cls, dist, patches] + pos, timm-0.4.5 pre-norm blocks
    (LayerNorm eps 1e-6, softmax(q·kᵀ·d^-½)·v, GELU MLP), final LayerNorm."""
    v = {k.removeprefix("module.v."): t for k, t in sd.items() if k.startswith("module.v.")}
    F = torch.nn.functional
    x = F.conv2d(fbank.unsqueeze(1).transpose(2, 3), v["patch_embed.proj.weight"],
                 v["patch_embed.proj.bias"], stride=10).flatten(2).transpose(1, 2)
    b = x.shape[0]
    x = torch.cat([v["cls_token"].expand(b, -1, -1), v["dist_token"].expand(b, -1, -1), x], 1) + pos
    n, c = x.shape[1], x.shape[2]
    for i in range(sum(k.endswith(".attn.qkv.weight") for k in v)):
        p = f"blocks.{i}."

        def ln(t, name, p=p):
            return F.layer_norm(t, (c,), v[p + name + ".weight"], v[p + name + ".bias"], 1e-6)

        qkv = F.linear(ln(x, "norm1"), v[p + "attn.qkv.weight"], v[p + "attn.qkv.bias"])
        q, k, val = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
        y = (attn @ val).transpose(1, 2).reshape(b, n, c)
        x = x + F.linear(y, v[p + "attn.proj.weight"], v[p + "attn.proj.bias"])
        h = F.gelu(F.linear(ln(x, "norm2"), v[p + "mlp.fc1.weight"], v[p + "mlp.fc1.bias"]))
        x = x + F.linear(h, v[p + "mlp.fc2.weight"], v[p + "mlp.fc2.bias"])
    return F.layer_norm(x, (c,), v["norm.weight"], v["norm.bias"], 1e-6)


@pytest.mark.parametrize("frames, t_dim", [(1024, 101), (300, 29)])
def test_tokens_are_the_official_forward(audioset_ckpt, frames, t_dim):
    """Our tokens = the official model's normed tokens (before its (cls + dist) / 2 head)."""
    path, sd = audioset_ckpt
    g = torch.Generator().manual_seed(1)  # weights away from init: every term matters
    sd = {k: torch.randn(v.shape, generator=g) * 0.05 if v.ndim > 1 and "pos_embed" not in k
          else v for k, v in sd.items()}
    torch.save(sd, path.with_name("perturbed.pth"))
    model = create_extractor("test_ast", weights=path.with_name("perturbed.pth"), n_mels=128,
                             target_frames=frames)
    fbank = torch.randn(2, frames, 128, generator=torch.Generator().manual_seed(0))
    pos = official_audioset_pos(sd["module.v.pos_embed"], t_dim)
    with torch.inference_mode():
        torch.testing.assert_close(model({"fbank": fbank}), official_forward(sd, fbank, pos, 2),
                                   rtol=1e-5, atol=1e-5)


def test_both_axes_follow_the_official_imagenet_rule():
    """The official DeiT → AST rule (24 × 24 → 12 × 101): time interpolated first, then the
    frequency axis cut from its middle."""
    pos = torch.randn(1, 2 + 24 * 24, 8)
    new = pos[:, 2:, :].reshape(1, 576, 8).transpose(1, 2).reshape(1, 8, 24, 24)
    new = torch.nn.functional.interpolate(new, size=(24, 101), mode="bilinear")
    new = new[:, :, int(24 / 2) - int(12 / 2): int(24 / 2) - int(12 / 2) + 12, :]
    want = torch.cat([pos[:, :2], new.reshape(1, 8, 1212).transpose(1, 2)], dim=1)
    torch.testing.assert_close(resample_pos_embed(pos, (24, 24), (12, 101)), want)


def official_fbank(path, target_length: int) -> torch.Tensor:
    """AudiosetDataset._wav2fbank + its normalisation (no mixup, no SpecAugment)."""
    with wave.open(str(path)) as wf:  # torchaudio.load of a 16-bit wav: int16 / 32768
        sr = wf.getframerate()
        pcm = np.frombuffer(wf.readframes(wf.getnframes()), "<i2")
    waveform = torch.from_numpy(pcm.astype(np.float32) / 32768)[None]
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform, htk_compat=True, sample_frequency=sr, use_energy=False,
        window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    p = target_length - fbank.shape[0]
    if p > 0:
        fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank)
    elif p < 0:
        fbank = fbank[0:target_length, :]
    return (fbank - audio.AST_MEAN) / (audio.AST_STD * 2)


def _fbank_clip(path, start_s: float, stop_s: float, target: int) -> torch.Tensor:
    sampler = ClipSampler(8, 2, "k400")
    clip, src = audio.open_clip(path, {}, em.sample("s", "v", start_s, stop_s, 30, {}), sampler)
    return audio.fbank_clip(clip, src, 16000, 128, 10.0, target)


def test_short_file_is_the_official_input_padded_before_normalisation(tmp_path):
    wav = em.write_wav(tmp_path / "a.wav",
                       em.tone(3.0, 16000, 500) + em.tone(3.0, 16000, 3100) * 0.3, 16000)
    got = _fbank_clip(wav, 1.0, 2.0, 1024)
    want = official_fbank(wav, 1024)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    # 298 frames of audio, then padding: raw 0 normalised, (0 - mean) / (2 std) ≈ 0.467
    pad = (0 - audio.AST_MEAN) / (2 * audio.AST_STD)
    assert torch.all(got[298:] == torch.tensor(pad, dtype=got.dtype))
    assert got[:298].std() > 0.1


def test_long_file_window_lies_inside_it_with_no_padding(tmp_path):
    rate = 16000
    x = em.tone(6.0, rate, 700)
    wav = em.write_wav(tmp_path / "a.wav", x, rate)
    got = _fbank_clip(wav, 5.2, 5.9, 200)  # centred window ends past 6 s: moved to end there
    span = 200 * 10 / 1000 + 0.015
    part = em.write_wav(tmp_path / "part.wav", x[round((6.0 - span) * rate):], rate)
    torch.testing.assert_close(got, official_fbank(part, 200), rtol=1e-5, atol=1e-4)
