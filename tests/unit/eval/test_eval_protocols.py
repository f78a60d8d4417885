"""Accuracy tables built from evaluated models: the single-modality students side by side."""

import numpy as np

from mmkd.eval.protocols import EvaluatedModel, subset_key, unimodal_table

LABELS = {"verb": np.array([0, 1, 2, 1]), "noun": np.array([1, 1, 0, 2])}


def model(name: str, label: str, mods: list[str], right: int) -> EvaluatedModel:
    """A model whose predictions are right on the first `right` samples (both heads)."""
    preds = {h: np.where(np.arange(4) < right, y, (y + 1) % 3) for h, y in LABELS.items()}
    return EvaluatedModel(name, label, mods, {subset_key(tuple(mods)): preds})


def test_unimodal_table_puts_each_method_in_its_target_modalitys_column():
    models = [model("dcat-video", "D-CAT (V)", ["video"], 3),
              model("dcat-audio", "D-CAT (A)", ["audio"], 1),
              model("karmma-video", "KARMMA_S (V)", ["video"], 2),
              model("karmma", "KARMMA_S", ["video", "flow", "audio"], 4)]  # not unimodal
    t = unimodal_table(models, ["video", "flow", "audio"], LABELS, "test")
    assert t.name == "unimodal_action" and t.columns == ["method", "V", "F", "A"]
    assert t.rows == [{"method": "D-CAT", "V": 75.0, "F": None, "A": 25.0},
                      {"method": "KARMMA_S", "V": 50.0, "F": None, "A": None}]
    assert unimodal_table(models[3:], ["video", "flow", "audio"], LABELS, "test") is None
