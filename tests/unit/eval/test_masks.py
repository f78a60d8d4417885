import numpy as np
import pytest

from mmkd.eval import masks


def test_subset_keep_rows():
    keep = masks.subset_keep(["video", "flow", "audio"], ("flow", "audio"), 4)
    assert keep.shape == (4, 3)
    assert (keep == np.array([False, True, True])).all()


def test_rate_zero_keeps_everything():
    assert masks.missing_rate_keep(100, 3, 0.0, seed=0).all()


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_at_least_one_modality_is_kept(rate):
    keep = masks.missing_rate_keep(5000, 3, rate, seed=1)
    assert keep.any(axis=1).all()
    assert not keep.all() or rate == 0


def test_drop_rate_matches_the_conditional_distribution():
    # P(drop one modality | not all dropped) = (p - p^M) / (1 - p^M)
    p, m, n = 0.5, 3, 60000
    keep = masks.missing_rate_keep(n, m, p, seed=2)
    expected = (p - p**m) / (1 - p**m)
    assert (~keep).mean() == pytest.approx(expected, abs=0.01)


def test_seeds_differ_and_repeat():
    a = masks.missing_rate_keep(200, 3, 0.3, seed=0)
    assert (a == masks.missing_rate_keep(200, 3, 0.3, seed=0)).all()
    assert (a != masks.missing_rate_keep(200, 3, 0.3, seed=1)).any()
    with pytest.raises(ValueError):
        masks.missing_rate_keep(10, 3, 1.0, seed=0)
