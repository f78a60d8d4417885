"""The extractors meant for small datasets: token shapes as declared, and they learn."""

import pytest
import torch

from helpers.extract_media import dummy_inputs
from mmkd.extract.extractors import create_extractor, get_spec

torch.set_num_threads(1)

SMALL = ["small_convnet", "small_convnet_audio", "small_stlt"]


@pytest.mark.parametrize("name", SMALL + ["test_convnet", "test_convnet_audio"])
def test_tokens_match_the_spec(name):
    model = create_extractor(name, random_init=True)
    with torch.inference_mode():
        y = model(dummy_inputs(name))
    spec = get_spec(name)
    assert y.shape == (2, spec.n_tokens(8), spec.dim) and torch.isfinite(y).all()
    assert spec.weights_source.startswith("random init")


@pytest.mark.parametrize(("name", "k"), [("small_convnet", 64), ("small_convnet_audio", 25),
                                         ("small_stlt", 8)])
def test_token_counts(name, k):
    assert get_spec(name).n_tokens(8) == k


@pytest.mark.parametrize("name", ["test_convnet", "test_convnet_audio", "small_stlt"])
def test_a_few_steps_reduce_the_loss(name):
    """Trained like `mmkd pretrain` trains it (mean token -> linear head): 20 steps on a batch
    of 8 with 2 classes lower the loss by 30 %."""
    torch.manual_seed(0)
    model = create_extractor(name, random_init=True).train().requires_grad_(True)
    head = torch.nn.Linear(model.spec.dim, 2)
    x = dummy_inputs(name, batch=8)
    y = torch.arange(8) % 2
    if "boxes" in x:  # layouts: class 1's boxes move right, class 0's left
        real = (x["categories"] != 0).unsqueeze(-1).clone()
        real[..., 0, :] = False  # the [CLS] box stays
        t = torch.linspace(0, 0.4, x["boxes"].shape[1])[None, :, None, None]
        step = torch.tensor([1.0, 0.0, 1.0, 0.0]) * t * (2 * y - 1)[:, None, None, None]
        x["boxes"] = torch.where(real, (x["boxes"] * 0.5 + step + 0.25).clamp(0, 1), x["boxes"])
    opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(head(model(x).mean(1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
