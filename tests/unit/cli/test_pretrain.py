"""`mmkd pretrain`'s summary and its hint for wiring the weights into the run."""

from pathlib import Path
from types import SimpleNamespace

from mmkd import config as C
from mmkd.cli import pretrain as cli
from mmkd.cli import ui


def test_hint_names_the_role_whose_extractor_was_trained(tmp_path):
    cfg = C.run_preset("demo")  # teacher demo_swin3d_teacher, student demo_swin3d_student
    w = tmp_path / "pretrained" / "video-demo_swin3d_student.safetensors"
    hint = cli._weights_hint(cfg, tmp_path, "video", "demo_swin3d_student", w)
    assert hint.startswith("--set student.weights.video=pretrained/video-demo_swin3d_student")
    assert "teacher.weights" not in hint
    cfg.student.extractors["video"] = "demo_swin3d_teacher"  # one extractor, both roles
    both = cli._weights_hint(cfg, tmp_path, "video", "demo_swin3d_teacher", w)
    assert "--set teacher.weights.video=" in both and "--set student.weights.video=" in both
    other = cli._weights_hint(cfg, tmp_path, "video", "swin3d_t", w)
    assert "--set teacher.extractors.video=swin3d_t --set teacher.weights.video=" in other


def test_summary_shows_every_heads_accuracy(capsys, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(ui, "console", Console(width=200, highlight=False))
    best = {"val_acc": 0.25, "val_acc_verb": 0.5, "val_acc_noun": 0.375, "train_acc": 0.9}
    res = SimpleNamespace(extractor="demo_swin3d_teacher", train_clips=8, val_clips=4,
                          weights=Path("w.safetensors"),
                          fit=SimpleNamespace(best=best, best_epoch=3))
    cli._summary([res], "video")
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "extractor" in line)
    assert "noun" in header and "verb" in header and "accuracy on val" in out
    row = next(line for line in out.splitlines() if "demo_swin3d_teacher" in line)
    assert ["25.0%", "37.5%", "50.0%"] == [c.strip() for c in row.split("│")[4:7]]
