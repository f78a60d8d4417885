from typer.testing import CliRunner

from mmkd import registry
from mmkd.cli.app import app
from mmkd.errors import MmkdError
from mmkd.extract.extractors import get_spec

runner = CliRunner()


def _rows(*args: str) -> dict[str, list[str]]:
    res = runner.invoke(app, ["extractors", *args], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    return {cells[0]: cells for line in res.output.splitlines()
            if (cells := [c.strip() for c in line.strip("│ ").split("│")])[0] in registry.extractors}


def test_lists_every_registered_extractor_with_its_spec():
    rows = _rows("--all")
    # fine-tuned entries (NAME+ft-RUN) other tests registered in this process: long, may wrap
    assert {n for n in rows if "+ft-" not in n} == \
        {n for n in registry.extractors.list() if "+ft-" not in n}
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
