"""`mmkd cache info` on a narrow terminal: long extractor names are never cut."""

import io

import numpy as np
from rich.console import Console
from typer.testing import CliRunner

from mmkd.cache import Cache
from mmkd.cli import ui
from mmkd.cli.app import app
from mmkd.datasets.manifest import Sample, manifest_hash

LONG = "demo_swin3d_teacher_audio+ft-karmma-ft-audio+detection"


def test_cache_info_never_cuts_names_on_a_narrow_terminal(tmp_path, monkeypatch):
    samples = [Sample(sample_id=f"s{i}", video_id="v", split="train", labels={"verb": i % 2})
               for i in range(4)]
    cache = Cache.create(tmp_path / "cache.zarr", samples, {"verb": 2}, manifest_hash(samples),
                         shard_size=4)
    w = cache.feature_writer("audio", LONG, 2, 4, {"weights_sha256": "0" * 64})
    for unit in w.units():
        idx = np.arange(unit.start, unit.stop)
        w.write(idx, np.zeros((len(idx), 2, 4), np.float16), np.full(len(idx), 2),
                np.ones(len(idx), bool))
        w.finish_unit(unit)
    narrow = _info(tmp_path, 60, monkeypatch)
    assert "…" not in narrow
    assert f"  audio/{LONG}: Θ×D 2×4, done 4/4, present 4, failed 0," in narrow
    wide = _info(tmp_path, 200, monkeypatch)
    assert f"│ audio    │ {LONG} │ 2×4 │  4/4 │" in wide


def _info(tmp_path, columns: int, monkeypatch) -> str:
    """What `mmkd cache info` prints on a terminal `columns` wide (a console of that width, so
    the result does not depend on the console other tests left behind)."""
    monkeypatch.setattr(ui, "console", Console(file=io.StringIO(), width=columns))
    res = CliRunner().invoke(app, ["cache", "info", "--cache", str(tmp_path / "cache.zarr")])
    assert res.exit_code == 0, res.output
    return ui.console.file.getvalue()
