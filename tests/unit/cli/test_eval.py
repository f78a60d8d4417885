"""`mmkd eval`'s console tables on narrow terminals: nothing cut, modality letters explained."""

import io

import pytest
from rich.console import Console

from mmkd import subsets as masks
from mmkd.cli import eval as cli
from mmkd.cli import ui
from mmkd.eval.reports import Table

MODS = ["video", "flow", "audio", "detection"]
METHODS = ("KARMMA_T", "KARMMA_S", "Baseline w/ δ")


def _print(monkeypatch, width: int, tables: list[Table]) -> list[str]:
    monkeypatch.setattr(ui, "console", Console(file=io.StringIO(), width=width, highlight=False))
    cli._summary(tables, "reports/report.md")
    return ui.console.file.getvalue().splitlines()


@pytest.mark.parametrize("width", [60, 80, 200])
def test_subsets_table_fits_any_width_with_a_legend(monkeypatch, width):
    cols = [masks.subset_label(s) for s in masks.modality_subsets(MODS)]  # 15 subsets
    rows = [{"method": m, **{c: 10.0 + i + j / 10 for i, c in enumerate(cols)}}
            for j, m in enumerate(METHODS)]
    lines = _print(monkeypatch, width, [Table("subsets_action", "Action accuracy", ["method", *cols],
                                              rows)])
    text = "\n".join(lines)
    assert "…" not in text and max(map(len, lines)) <= width
    assert "V video, F flow, A audio, D detection" in text
    cells = [c.strip() for ln in lines for c in ln.split("│")]
    for j in range(len(METHODS)):
        for i in range(len(cols)):
            assert f"{10.0 + i + j / 10:.2f}" in cells  # every number whole
    if width < 200:  # methods become the columns, subsets the rows
        assert all(c in cells for c in cols)


def test_no_legend_without_modality_letters(monkeypatch):
    lines = _print(monkeypatch, 100, [Table("ablation_tokens", "Tokens", ["token reduction", "action"],
                                            [{"token reduction": "Θ-Average", "action": 1.0}])])
    assert not any("V video" in ln for ln in lines)
