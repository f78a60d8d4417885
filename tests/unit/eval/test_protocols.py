"""Tables over training seeds: one run stays a number, several become mean ± std per cell."""

import numpy as np
import pytest

from mmkd.eval import protocols as P
from mmkd.eval.reports import MeanStd

MODS = ["video", "audio"]
LABELS = {"verb": np.array([0, 1, 2, 3])}


def _preds(key_rights: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    """Per condition key, predictions with the first k of 4 samples right."""
    def first(k):
        return {"verb": np.where(np.arange(4) < k, LABELS["verb"], 9)}
    return {key: first(k) for key, k in key_rights.items()}


def _model(name, runs):
    return P.EvaluatedModel(name, name.upper(), MODS, runs)


FULL, REST = P.subset_key(("video", "audio")), P.subset_key(("audio",))


def test_cells_are_mean_std_over_training_seeds():
    seeded = _model("s", {0: _preds({FULL: 4, REST: 2}), 1: _preds({FULL: 2, REST: 2})})
    single = _model("one", {0: _preds({FULL: 3, REST: 1})})
    pivot = P.subsets_pivot([seeded, single], MODS, LABELS, "test")
    cell = pivot.rows[0]["V+A"]
    assert cell == MeanStd(75.0, pytest.approx(np.std([100, 50], ddof=1)), 2)
    assert pivot.rows[1]["V+A"] == 75.0  # one run: a plain number
    robust = P.robustness_table([seeded, single], MODS, LABELS, "test", dropped="video")
    kept = robust.rows[0]["kept (%)"]
    assert kept.mean == pytest.approx((50 + 100) / 2) and kept.n == 2  # per seed, then mean
    assert robust.rows[1]["kept (%)"] == pytest.approx(100 / 3)


def test_missing_rate_over_training_seeds_averages_each_seeds_masks_first():
    k = [P.rate_key(0.5, s) for s in (0, 1)]
    seeded = _model("s", {0: _preds({k[0]: 4, k[1]: 2}), 1: _preds({k[0]: 2, k[1]: 0})})
    single = _model("one", {0: _preds({k[0]: 4, k[1]: 2})})
    long, _ = P.missing_rate_results([seeded, single], LABELS, [0.5], [0, 1])
    by = {r["method"]: r["verb"] for r in long.rows}
    # seeds' means over masks: 75 and 25 -> 50 ± 35.4 over 2 training seeds
    assert by["S"].mean == pytest.approx(50) and by["S"].n == 2
    assert by["S"].std == pytest.approx(np.std([75, 25], ddof=1))
    assert by["ONE"] == MeanStd(75.0, pytest.approx(np.std([100, 50], ddof=1)), 2)  # over masks
    pivot = P.missing_rate_pivot(long, "verb", 2)
    assert pivot.columns == ["method", "50%"] and pivot.rows[0]["50%"].n == 2
