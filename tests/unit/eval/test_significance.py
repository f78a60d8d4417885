"""The paired bootstrap: a known difference is found, identical or equally good models are not
told apart, and seeds widen the interval."""

import numpy as np
import pytest

from mmkd.errors import MmkdError
from mmkd.eval.significance import paired_bootstrap

N = 400


def _model(rng, acc: float, seeds=(0, 1, 2)) -> dict[int, np.ndarray]:
    return {s: rng.random(N) < acc for s in seeds}


def test_a_known_difference_is_found():
    rng = np.random.default_rng(0)
    a, b = _model(rng, 0.70), _model(rng, 0.50)
    d = paired_bootstrap(a, b, n_boot=1000)
    assert d.diff == pytest.approx(100 * (np.mean([v.mean() for v in a.values()])
                                          - np.mean([v.mean() for v in b.values()])))
    assert d.low > 0 and d.significant
    assert d.low < 20 < d.high  # the true difference, 20 points, lies in the interval
    assert (d.wins, d.shared, d.n_samples) == (3, 3, N)
    flipped = paired_bootstrap(b, a, n_boot=1000)
    assert flipped.high < 0 and flipped.wins == 0


def test_identical_models_give_an_interval_containing_zero():
    rng = np.random.default_rng(1)
    a = _model(rng, 0.6)
    d = paired_bootstrap(a, dict(a), n_boot=500)
    assert d.low <= 0 <= d.high and not d.significant
    assert d.diff == 0 and d.wins == 0


def test_equally_good_independent_models_are_not_told_apart():
    rng = np.random.default_rng(2)
    d = paired_bootstrap(_model(rng, 0.6), _model(rng, 0.6), n_boot=1000)
    assert d.low < 0 < d.high


def test_pairing_by_sample_narrows_the_interval():
    """B = A with 5 % of the samples flipped wrong: paired, the difference is tight around 5."""
    rng = np.random.default_rng(3)
    a = _model(rng, 0.6, seeds=(0,))
    right = np.flatnonzero(a[0])
    b_0 = a[0].copy()
    b_0[right[: N // 20]] = False
    d = paired_bootstrap(a, {0: b_0}, n_boot=1000)
    assert d.diff == pytest.approx(100 * (N // 20) / N)
    assert d.low > 2 and d.high < 8  # unpaired, the interval would be ~±7 points wide


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(4)
    base = rng.random(N) < 0.6
    b = {0: base, 1: base, 2: base}
    # three seeds far apart (45, 60, 75 %): their spread must enter the interval
    a_three = {s: rng.random(N) < p for s, p in enumerate((0.45, 0.6, 0.75))}
    narrow = paired_bootstrap({1: a_three[1]}, b, n_boot=1000)
    wide = paired_bootstrap(a_three, b, n_boot=1000)
    assert (wide.high - wide.low) > 1.5 * (narrow.high - narrow.low)


def test_bad_input_is_refused():
    with pytest.raises(MmkdError, match="at least one"):
        paired_bootstrap({}, {0: np.ones(3, bool)})
    with pytest.raises(MmkdError, match="same"):
        paired_bootstrap({0: np.ones(3, bool)}, {0: np.ones(4, bool)})
