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


UNI_LABELS = {"verb": np.array([0, 1, 2, 1]), "noun": np.array([1, 1, 0, 2])}


def _unimodal(name: str, label: str, mods: list[str], right: int) -> P.EvaluatedModel:
    """A model whose predictions are right on the first `right` samples (both heads)."""
    preds = {h: np.where(np.arange(4) < right, y, (y + 1) % 3) for h, y in UNI_LABELS.items()}
    return P.EvaluatedModel(name, label, mods, {0: {P.subset_key(tuple(mods)): preds}})


def test_unimodal_table_puts_each_method_in_its_target_modalitys_column():
    models = [_unimodal("dcat-video", "D-CAT (V)", ["video"], 3),
              _unimodal("dcat-audio", "D-CAT (A)", ["audio"], 1),
              _unimodal("karmma-video", "KARMMA_S (V)", ["video"], 2),
              _unimodal("karmma", "KARMMA_S", ["video", "flow", "audio"], 4)]  # not unimodal
    t = P.unimodal_table(models, ["video", "flow", "audio"], UNI_LABELS, "test")
    assert t.name == "unimodal_action" and t.columns == ["method", "V", "F", "A"]
    assert t.rows == [{"method": "D-CAT", "V": 75.0, "F": None, "A": 25.0},
                      {"method": "KARMMA_S", "V": 50.0, "F": None, "A": None}]
    assert P.unimodal_table(models[3:], ["video", "flow", "audio"], UNI_LABELS, "test") is None
