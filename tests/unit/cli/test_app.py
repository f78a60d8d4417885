from typer.testing import CliRunner

from mmkd import __version__
from mmkd import config as C
from mmkd.cli.app import app
from mmkd.errors import MmkdError

runner = CliRunner()


def test_version_and_help():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    assert runner.invoke(app, ["--help"]).exit_code == 0


def test_init_writes_resolved_config(tmp_path):
    res = runner.invoke(app, ["init", str(tmp_path / "run"), "--dataset", "ssv2",
                              "--set", "student.train.epochs=30"])
    assert res.exit_code == 0, res.output
    cfg = C.load(tmp_path / "run" / C.CONFIG_FILE)
    assert cfg.data.modalities == ["video", "flow", "detection"] and cfg.student.train.epochs == 30
    again = runner.invoke(app, ["init", str(tmp_path / "run"), "--dataset", "ssv2"])
    assert again.exit_code != 0


def test_init_with_a_config_starts_from_the_datasets_preset(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("student:\n  train:\n    epochs: 30\n")
    res = runner.invoke(app, ["init", str(tmp_path / "run"), "--dataset", "epic100",
                              "--config", str(extra)])
    assert res.exit_code == 0, res.output
    cfg = C.load(tmp_path / "run" / C.CONFIG_FILE)
    assert cfg.teacher.extractors == C.epic100_teacher().extractors  # not the demo's
    assert cfg.extract.theta == 300 and cfg.student.train.epochs == 30


def test_init_refuses_an_unknown_dataset(tmp_path):
    res = runner.invoke(app, ["init", str(tmp_path / "run"), "--dataset", "epic"])
    assert isinstance(res.exception, MmkdError)
    assert "--dataset 'epic': unknown dataset; use one of custom, demo, epic100, ssv2" in \
        str(res.exception)
    assert not (tmp_path / "run").exists()


def test_error_line_keeps_square_brackets(tmp_path, capsys):
    import pytest

    from mmkd.cli.app import main

    with pytest.raises(SystemExit) as exit_:
        main(["init", str(tmp_path / "run"), "--dataset", "demo", "--set", "data.x[bold]=1"])
    assert exit_.value.code == 2
    assert "data.x[bold]" in capsys.readouterr().err  # rich markup would eat "[bold]"
