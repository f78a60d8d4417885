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


def test_init_size_small_takes_the_demos_sizes_and_keeps_the_datasets_data(tmp_path):
    res = runner.invoke(app, ["init", str(tmp_path / "small"), "--dataset", "custom",
                              "--size", "small", "--set", "data.modalities=[video,detection]"])
    assert res.exit_code == 0, res.output
    cfg, demo = C.load(tmp_path / "small" / C.CONFIG_FILE), C.run_preset("demo")
    assert cfg.data.dataset == "custom" and cfg.data.modalities == ["video", "detection"]
    assert (cfg.clip, cfg.extract) == (demo.clip, demo.extract)
    assert cfg.teacher.fusion == demo.teacher.fusion and cfg.student.train == demo.student.train
    assert cfg.teacher.extractors == cfg.student.extractors == C.SMALL_EXTRACTORS
    assert cfg.pretrain.train.lr_max == 1e-3
    assert cfg.eval == C.run_preset("custom").eval  # the demo's drops video; a custom run may lack it
    paper = runner.invoke(app, ["init", str(tmp_path / "paper"), "--dataset", "custom"])
    assert paper.exit_code == 0, paper.output
    cfg = C.load(tmp_path / "paper" / C.CONFIG_FILE)
    assert (cfg.clip.num_frames, cfg.extract.theta, cfg.teacher.extractors["video"]) == \
        (32, 300, "swin3d_b")
    bad = runner.invoke(app, ["init", str(tmp_path / "x"), "--dataset", "custom", "--size", "big"])
    assert bad.exit_code != 0 and "small, paper" in str(bad.exception)
