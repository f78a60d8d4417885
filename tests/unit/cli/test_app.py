from typer.testing import CliRunner

from mmkd import __version__
from mmkd import config as C
from mmkd.cli.app import app

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
