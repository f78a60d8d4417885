import numpy as np
import torch

from mmkd.eval.ablations import PAPER_THETAS
from mmkd.eval.token_variants import plan_token_variants, token_transform


def _by_name(variants):
    return {v.name: v for v in variants}


def test_theta_300_cache_allows_only_what_it_holds():
    v = _by_name(plan_token_variants(PAPER_THETAS, held=300, k_raw=784))
    assert not v["none"].possible and "--theta 0" in v["none"].status
    assert not v["theta-500"].possible
    assert v["theta-300"].possible and v["theta-300"].status == "exact"
    assert not v["random-300"].possible
    assert v["theta-100"].possible and v["theta-100"].status.startswith("approximate")
    assert v["random-100"].possible and "cached" in v["random-100"].status


def test_raw_token_cache_makes_every_variant_exact():
    v = _by_name(plan_token_variants(PAPER_THETAS, held=784, k_raw=784))
    assert all(x.possible and x.status == "exact" for x in v.values())
    assert v["none"].target == 784
    assert [n for n in v] == ["none", "theta-500", "random-500", "theta-300", "random-300",
                              "theta-100", "random-100"]


def test_token_transforms():
    x = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1)
    batch = {"index": torch.tensor([3, 7]), "tokens": {"video": x}}
    avg = token_transform(plan_token_variants(["2"], 6, 6)[0], seed=0, train=False)(batch, 0)
    assert avg["tokens"]["video"][0, :, 0].tolist() == [1.0, 4.0]  # means of 0..2 and 3..5
    rnd = plan_token_variants(["3"], 6, 6)[1]
    ev = token_transform(rnd, seed=0, train=False)
    a, b = ev(batch, 0)["tokens"]["video"], ev(batch, 5)["tokens"]["video"]
    assert a.shape == (2, 3, 1) and torch.equal(a, b)  # evaluation draw is fixed
    kept = a[0, :, 0].numpy()
    assert np.all(np.diff(kept) > 0) and set(kept) <= set(range(6))  # original order kept
    tr = token_transform(rnd, seed=0, train=True)
    draws = {tuple(tr(batch, e)["tokens"]["video"][0, :, 0].tolist()) for e in range(8)}
    assert len(draws) > 1  # a fresh draw per training epoch
