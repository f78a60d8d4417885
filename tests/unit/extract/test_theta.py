import numpy as np
import pytest
import torch

from mmkd.extract.theta import n_out, theta_average, theta_groups


def loop_theta_average(tokens_KD: np.ndarray, theta: int) -> np.ndarray:
    """Θ-Average written as a direct loop: the reference."""
    k = len(tokens_KD)
    if k <= theta:
        return tokens_KD.copy()
    size = k // theta
    out = []
    for g in range(theta):
        lo = g * size
        hi = (g + 1) * size if g < theta - 1 else k  # the last group takes the k mod Θ rest
        out.append(tokens_KD[lo:hi].mean(axis=0))
    return np.stack(out)


def test_groups_785_into_300():
    sizes = theta_groups(785, 300)
    assert len(sizes) == 300
    assert sizes[:299] == [2] * 299
    assert sizes[-1] == 2 + 185 == 187
    assert sum(sizes) == 785


def test_785_into_300_matches_loop_and_group_means():
    x = torch.randn(3, 785, 16, dtype=torch.float64)
    y = theta_average(x, 300)
    assert y.shape == (3, 300, 16)
    assert torch.allclose(y[:, 0], x[:, 0:2].mean(1))
    assert torch.allclose(y[:, 298], x[:, 596:598].mean(1))
    assert torch.allclose(y[:, 299], x[:, 598:].mean(1))  # 187 tokens
    for b in range(3):
        np.testing.assert_allclose(y[b].numpy(), loop_theta_average(x[b].numpy(), 300))


@pytest.mark.parametrize("k", [1, 299, 300])
def test_k_at_most_theta_keeps_all(k):
    x = torch.randn(2, k, 4)
    y = theta_average(x, 300)
    assert y.shape == (2, k, 4) and torch.equal(y, x)
    assert n_out(k, 300) == k


def test_theta_zero_keeps_all():
    x = torch.randn(1, 50, 3)
    assert torch.equal(theta_average(x, 0), x) and n_out(50, 0) == 50


@pytest.mark.parametrize(("k", "theta"), [(301, 300), (599, 300), (784, 300), (1214, 300),
                                          (10, 3), (7, 2), (1000, 999)])
def test_against_loop(k, theta):
    rng = np.random.default_rng(k * 31 + theta)
    x = rng.normal(size=(2, k, 5))
    y = theta_average(torch.from_numpy(x), theta).numpy()
    assert y.shape == (2, n_out(k, theta), 5)
    for b in range(2):
        np.testing.assert_allclose(y[b], loop_theta_average(x[b], theta), rtol=1e-12)


def test_half_input_averages_in_float32():
    x = torch.full((1, 785, 2), 1000.0, dtype=torch.float16)
    x[0, 598:, 0] = 1001.0  # fp16 sums of 187 values of ~1000 would overflow/round badly
    y = theta_average(x, 300)
    assert y.dtype == torch.float16
    assert y[0, 299, 0].item() == 1001.0 and y[0, 0, 0].item() == 1000.0
