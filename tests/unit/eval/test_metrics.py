import numpy as np
import pytest

from mmkd.errors import MmkdError
from mmkd.eval import metrics


def test_two_heads_action_needs_both_right():
    labels = {"verb": np.array([0, 1, 2, 3]), "noun": np.array([5, 5, 6, 7])}
    preds = {"verb": np.array([0, 1, 0, 3]), "noun": np.array([5, 4, 6, 7])}
    # verb right: 1,1,0,1 -> 75 %; noun right: 1,0,1,1 -> 75 %; both: 1,0,0,1 -> 50 %
    acc = metrics.accuracy(preds, labels)
    assert acc == {"verb": 75.0, "noun": 75.0, "action": 50.0}
    assert metrics.metric_names(["verb", "noun"]) == ["verb", "noun", "action"]
    assert metrics.primary_metric(["verb", "noun"]) == "action"


def test_one_head_is_plain_top1():
    acc = metrics.accuracy({"action": np.array([1, 2, 3])}, {"action": np.array([1, 0, 3])})
    assert list(acc) == ["action"]
    assert acc["action"] == pytest.approx(200 / 3)
    assert metrics.metric_names(["action"]) == ["action"]
    assert metrics.primary_metric(["label"]) == "label"


def test_seen_unseen_breakdown():
    labels = {"verb": np.array([0, 0, 0, 0, 0]), "noun": np.array([1, 1, 1, 1, 1])}
    preds = {"verb": np.array([0, 0, 1, 0, 0]), "noun": np.array([1, 2, 1, 1, 2])}
    unseen = np.array([False, False, False, True, True])
    groups = metrics.accuracy_by_group(preds, labels, unseen)
    assert groups["all"]["action"] == pytest.approx(40.0)  # samples 0 and 3
    assert groups["seen"] == pytest.approx({"verb": 200 / 3, "noun": 200 / 3, "action": 100 / 3})
    assert groups["unseen"] == pytest.approx({"verb": 100.0, "noun": 50.0, "action": 50.0})
    assert list(metrics.accuracy_by_group(preds, labels)) == ["all"]


def test_empty_group_is_nan_and_mismatch_is_an_error():
    acc = metrics.accuracy({"a": np.array([1])}, {"a": np.array([1])}, where=np.array([False]))
    assert np.isnan(acc["a"])
    with pytest.raises(MmkdError, match="noun"):
        metrics.accuracy({"verb": np.array([1])}, {"verb": np.array([1]), "noun": np.array([1])})
    with pytest.raises(MmkdError, match="2 predictions for 1 labels"):
        metrics.accuracy({"a": np.array([1, 2])}, {"a": np.array([1])})


def test_mean_std_uses_sample_std():
    assert metrics.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert metrics.mean_std([4.0]) == (4.0, 0.0)
