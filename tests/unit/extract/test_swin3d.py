"""Video Swin tokens = the official Video-Swin-Transformer forward (SwinTransformer3D, mmaction2
layout) on an official-layout checkpoint, written out here in plain torch ops: patch embedding
with padding and LayerNorm, (shifted) 3D window attention with the relative position bias and
the -100 shift mask, windows shrunk to small inputs, patch merging, final LayerNorm."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.official_swin import official_swin_keys
from mmkd.extract.extractors import create_extractor
from mmkd.extract.extractors.swin3d import swin_arch

F = torch.nn.functional


def fit_window(size, window, shift):
    """The official get_window_size: a window larger than the input shrinks to it, unshifted."""
    win, sh = list(window), list(shift)
    for i, n in enumerate(size):
        if n <= window[i]:
            win[i], sh[i] = n, 0
    return tuple(win), tuple(sh)


def windows(x, win):
    b, d, h, w, c = x.shape
    x = x.view(b, d // win[0], win[0], h // win[1], win[1], w // win[2], win[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, math.prod(win), c)


def unwindows(x, win, b, d, h, w):
    x = x.view(b, d // win[0], h // win[1], w // win[2], win[0], win[1], win[2], -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, w, -1)


def shift_mask(dims, win, shift):
    """(nW, N, N): 0 inside one region of the rolled grid, -100 across regions."""
    img = torch.zeros(1, *dims, 1)
    cnt = 0
    regions = [(slice(-k), slice(-k, -s), slice(-s, None)) for k, s in zip(win, shift, strict=True)]
    for d in regions[0]:
        for h in regions[1]:
            for w in regions[2]:
                img[:, d, h, w] = cnt
                cnt += 1
    m = windows(img, win).squeeze(-1)
    m = m[:, None, :] - m[:, :, None]
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def relative_index(window):
    """Index into the (2Wd-1)(2Wh-1)(2Ww-1) bias table for every pair of tokens of a window."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(k) for k in window], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel += torch.tensor(window) - 1
    return rel[..., 0] * (2 * window[1] - 1) * (2 * window[2] - 1) + rel[..., 1] * (
        2 * window[2] - 1) + rel[..., 2]


def official_forward(sd, x, depths, heads, window, patch):
    v = {k.removeprefix("backbone."): t for k, t in sd.items() if k.startswith("backbone.")}

    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], v[name + ".weight"], v[name + ".bias"])

    def lin(t, name, bias=True):
        return F.linear(t, v[name + ".weight"], v[name + ".bias"] if bias else None)

    _, _, d, h, w = x.shape
    x = F.pad(x, (0, -w % patch[2], 0, -h % patch[1], 0, -d % patch[0]))
    x = F.conv3d(x, v["patch_embed.proj.weight"], v["patch_embed.proj.bias"], stride=patch)
    x = ln(x.permute(0, 2, 3, 4, 1), "patch_embed.norm")
    index = relative_index(window)
    for s, depth in enumerate(depths):
        b, d, h, w, c = x.shape
        win, shift = fit_window((d, h, w), window, tuple(k // 2 for k in window))
        padded = tuple(math.ceil(n / k) * k for n, k in zip((d, h, w), win, strict=True))
        n = math.prod(win)
        for i in range(depth):
            p = f"layers.{s}.blocks.{i}."
            sh = shift if i % 2 else (0, 0, 0)
            y = ln(x, p + "norm1")
            y = F.pad(y, (0, 0, 0, padded[2] - w, 0, padded[1] - h, 0, padded[0] - d))
            if any(sh):
                y = torch.roll(y, shifts=tuple(-k for k in sh), dims=(1, 2, 3))
            y = windows(y, win)
            nh = heads[s]
            q, k, val = lin(y, p + "attn.qkv").reshape(-1, n, 3, nh, c // nh).permute(2, 0, 3, 1, 4)
            attn = (q * (c // nh) ** -0.5) @ k.transpose(-2, -1)
            bias = v[p + "attn.relative_position_bias_table"][index[:n, :n].reshape(-1)]
            attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1)[None]
            if any(sh):
                mask = shift_mask(padded, win, sh)
                attn = (attn.view(-1, mask.shape[0], nh, n, n) + mask[None, :, None]).view(-1, nh, n, n)
            y = lin((attn.softmax(-1) @ val).transpose(1, 2).reshape(-1, n, c), p + "attn.proj")
            y = unwindows(y, win, b, *padded)
            if any(sh):
                y = torch.roll(y, shifts=sh, dims=(1, 2, 3))
            x = x + y[:, :d, :h, :w]
            x = x + lin(F.gelu(lin(ln(x, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
        if s < len(depths) - 1:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
            x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2],
                           x[:, :, 1::2, 1::2]], -1)
            x = lin(ln(x, f"layers.{s}.downsample.norm"), f"layers.{s}.downsample.reduction", False)
    return ln(x, "norm").flatten(1, 3)


# two blocks per stage (the second shifted), windows that need padding and shrink in stage 2
ARCH = swin_arch(16, (2, 2), (2, 4), window=(4, 3, 3), patch=(2, 4, 4))


@pytest.mark.parametrize("frames, crop", [(8, 32), (6, 40)])
def test_tokens_are_the_official_forward(tmp_path, frames, crop):
    ref = create_extractor("test_swin3d", random_init=True, arch=ARCH, crop=crop)
    g = torch.Generator().manual_seed(0)
    tv = {k.removeprefix("backbone."): torch.randn(t.shape, generator=g) * 0.1
          if t.is_floating_point() else t for k, t in ref.state_dict().items()}
    official = official_swin_keys(tv, ARCH["depths"])
    torch.save({"meta": {}, "state_dict": official}, tmp_path / "official.pth")
    model = create_extractor("test_swin3d", weights=tmp_path / "official.pth", arch=ARCH, crop=crop)
    clip = torch.randn(2, 3, frames, crop, crop, generator=g)
    with torch.inference_mode():
        got = model({"frames": clip})
        want = official_forward(official, clip, ARCH["depths"], ARCH["num_heads"],
                                ARCH["window_size"], ARCH["patch_size"])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
