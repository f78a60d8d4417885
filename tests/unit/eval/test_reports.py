import csv
import json

from mmkd.eval import plots, reports
from mmkd.eval.reports import MeanStd, Table


def _table():
    return Table(name="demo", title="Demo | table", columns=["method", "acc", "rate"],
                 rows=[{"method": "karmma", "acc": 42.123, "rate": MeanStd(40.0, 1.5, 3)},
                       {"method": "base|line", "acc": None, "rate": MeanStd(10.0, 0.25, 3)}],
                 notes=["a note"])


def test_markdown_csv_json_hold_the_same_numbers(tmp_path):
    paths = reports.write_table(_table(), tmp_path)
    md = paths["md"].read_text()
    assert "| karmma | 42.12 | 40.00 ± 1.50 |" in md
    assert "| base\\|line | – | 10.00 ± 0.25 |" in md
    assert "- a note" in md
    rows = list(csv.reader(paths["csv"].open()))
    assert rows[0] == ["method", "acc", "rate_mean", "rate_std"]
    assert rows[1] == ["karmma", "42.123", "40.0", "1.5"]
    assert rows[2] == ["base|line", "", "10.0", "0.25"]
    data = json.loads(paths["json"].read_text())
    assert data["rows"][0]["rate"] == {"mean": 40.0, "std": 1.5, "n": 3}
    assert data["rows"][1]["acc"] is None
    back = reports.read_table(paths["json"])
    assert back.rows[0]["rate"] == MeanStd(40.0, 1.5, 3)
    assert back.columns == ["method", "acc", "rate"]


def test_report_links_tables_and_plots(tmp_path):
    png = plots.plot_missing_rate(
        [plots.Curve("KARMMA_S", [0.0, 0.5], [50.0, 40.0], [0.0, 2.0]),
         plots.Curve("Baseline", [0.0, 0.5], [52.0, 20.0], [0.0, 3.0])],
        metric="action", out_path=tmp_path / "missing_rate.png", chance=1.0)
    bars = plots.plot_efficiency(["V+F+A", "V"], {"GFLOPs": {"teacher": [10.0, 4.0],
                                                            "student": [5.0, None]}},
                                 tmp_path / "eff.png", title="efficiency")
    for p in (png, bars):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = reports.write_report(tmp_path, "Results", [_table()], [png, bars], ["pre"])
    text = report.read_text()
    assert "![missing_rate](missing_rate.png)" in text and "![eff](eff.png)" in text
    assert (tmp_path / "demo.csv").exists()
    assert text.index("pre") < text.index("Demo")


def test_nan_cells(tmp_path):
    t = Table(name="n", title="n", columns=["x"], rows=[{"x": float("nan")}])
    paths = reports.write_table(t, tmp_path)
    assert "| nan |" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["rows"][0]["x"] is None
