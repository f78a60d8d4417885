import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mmkd import registry
from mmkd.cli import ui
from mmkd.cli.app import app
from mmkd.errors import MmkdError
from mmkd.extract.extractors import get_spec

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """A 400-column console: no row wraps, whatever console other tests left behind."""
    monkeypatch.setattr(ui, "console", Console(file=io.StringIO(), width=400))


def _rows(*args: str) -> dict[str, list[str]]:
    ui.console.file.seek(0)
    ui.console.file.truncate()
    res = runner.invoke(app, ["extractors", *args])
    assert res.exit_code == 0, res.output
    return {cells[0]: cells for line in ui.console.file.getvalue().splitlines()
            if (cells := [c.strip() for c in line.strip("│ ").split("│")])[0] in registry.extractors}


def test_lists_every_registered_extractor_with_its_spec():
    rows = _rows("--all")
    assert set(rows) == set(registry.extractors.list())
    for name, (_, family, mods, dim, kind, source) in rows.items():
        s = get_spec(name)
        assert (family, mods, int(dim), kind) == (s.family, ", ".join(s.modalities), s.dim,
                                                  s.input_kind)
        assert source == (s.weights_source or "–")


def test_modality_filter_and_test_variants_hidden_by_default():
    audio = _rows("--modality", "audio")
    assert "ast_tiny" in audio and "swin3d_b_audio" in audio and "swin3d_b" not in audio
    assert not any(n.startswith("test_") for n in audio)
    res = runner.invoke(app, ["extractors", "--modality", "smell"])
    assert isinstance(res.exception, MmkdError) and "allowed: video" in str(res.exception)
