import pytest

from mmkd import config as C
from mmkd.errors import ConfigError, MmkdError


def test_paper_presets_match_method_md():
    t, s = C.epic100_teacher(), C.epic100_student()
    assert (t.fusion.width, t.fusion.layers, t.fusion.heads, t.fusion.attn_dropout) == (768, 2, 8, 0.3)
    assert (s.fusion.width, s.fusion.layers, s.fusion.attn_dropout) == (384, 1, 0.0)
    assert (t.train.batch_size, t.train.weight_decay, t.train.grad_clip, t.train.lr_max) == (32, 0.05, 1.0, 5e-4)
    assert (s.train.batch_size, s.train.weight_decay, s.train.grad_clip, s.train.lr_max) == (6, 0.01, 2.0, 1e-4)
    assert s.train.modality_dropout == 0.5
    assert C.ssv2_teacher().extractors["detection"] == "stlt_l12"
    assert C.ssv2_student().extractors["detection"] == "stlt_l9"
    for name in ("epic100", "ssv2", "demo", "custom"):
        C.run_preset(name).validate()


def test_overrides_are_typed():
    cfg = C.apply_overrides(C.run_preset("epic100"), [
        "student.train.lr_max=2e-4", "data.modalities=[video,audio]", "extract.strict=true",
        "teacher.extractors.video=swin3d_t",
    ])
    assert cfg.student.train.lr_max == pytest.approx(2e-4)
    assert cfg.data.modalities == ["video", "audio"]
    assert cfg.extract.strict is True
    assert cfg.teacher.extractors["video"] == "swin3d_t"
    added = C.apply_overrides(cfg, ["teacher.extractors.detection=stlt_l12"])
    assert added.teacher.extractors["detection"] == "stlt_l12"


def test_unknown_override_names_the_field():
    with pytest.raises(ConfigError, match="unknown field 'lr'"):
        C.apply_overrides(C.RunConfig(), ["student.train.lr=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        C.apply_overrides(C.RunConfig(), ["student.train.lr_max"])


def test_validate_reports_every_problem_at_once():
    cfg = C.run_preset("epic100")
    cfg.data.modalities = ["video", "smell"]
    cfg.student.fusion.width = 100
    cfg.teacher.train.lr_min = 1.0
    with pytest.raises(ConfigError) as exc:
        cfg.validate()
    msgs = "\n".join(exc.value.problems)
    assert len(exc.value.problems) >= 3
    assert "smell" in msgs and "student.fusion.width = 100" in msgs and "teacher.train.lr_min" in msgs


def test_yaml_roundtrip(tmp_path):
    cfg = C.run_preset("ssv2")
    cfg.student.train.epochs = 7
    path = C.save(cfg, tmp_path / "mmkd.yaml")
    back = C.load(path, ["eval.seeds=[4,5,6]"])
    assert back.student.train.epochs == 7 and back.data.heads == ["action"]
    assert back.eval.seeds == [4, 5, 6]
    assert back.teacher.extractors == cfg.teacher.extractors


def test_bad_value_type_is_reported(tmp_path):
    (tmp_path / "mmkd.yaml").write_text("extract:\n  batch_size: lots\n")
    with pytest.raises(ConfigError, match="extract.batch_size: 'lots' is not a valid int"):
        C.load(tmp_path / "mmkd.yaml")


def test_load_reports_unknown_keys_type_and_range_errors_together(tmp_path):
    (tmp_path / "mmkd.yaml").write_text(
        "extract:\n  batch_size: lots\n  theta: -1\nteacher:\n  train:\n    epoch: 3\n"
        "    lr_max: 0.1\n    lr_min: 1.0\nclip:\n  num_frames: 0\n")
    with pytest.raises(ConfigError) as exc:
        C.load(tmp_path / "mmkd.yaml", ["student.train.epochs=2.7", "student.train.lr=1"])
    msgs = "\n".join(exc.value.problems)
    for expected in ("extract.batch_size: 'lots' is not a valid int",
                     "teacher.train.epoch: unknown field",
                     "student.train.epochs: 2.7 is not a whole number (int)",
                     "--set student.train.lr: unknown field 'lr'",
                     "extract.theta = -1: must be >= 0", "clip.num_frames = 0: must be > 0",
                     "teacher.train.lr_min = 1.0: must be in (0, lr_max=0.1]"):
        assert expected in msgs, expected
    assert len(exc.value.problems) == 7  # a field with a type error is not also range-checked


def test_a_float_for_an_int_field_is_an_error_not_truncated():
    with pytest.raises(ConfigError, match=r"teacher.train.epochs: 2.7 is not a whole number"):
        C.apply_overrides(C.run_preset("demo"), ["teacher.train.epochs=2.7"])
    with pytest.raises(ConfigError, match=r"extract.strict: 'maybe' is not a valid bool"):
        C.apply_overrides(C.run_preset("demo"), ["extract.strict=maybe"])
    assert C.apply_overrides(C.run_preset("demo"), ["teacher.train.epochs=3.0"]).teacher.train.epochs == 3


def test_unknown_names_and_negative_loss_weights_list_the_allowed_values():
    cfg = C.run_preset("epic100")
    cfg.data.dataset = "epic"
    cfg.teacher.extractors["video"] = "swin3d_x"
    cfg.student.extractors["audio"] = "demo_ast_student+ft-karmma-ft-audio"  # fine-tuned: fine
    cfg.eval.protocols = ["subsets", "missing_rate"]
    cfg.methods = {"karmma": {"gamma": -0.1}}
    with pytest.raises(ConfigError) as exc:
        cfg.validate()
    msgs = exc.value.problems
    assert len(msgs) == 4
    assert msgs[0].startswith("data.dataset = 'epic': allowed: custom, demo, epic100, ssv2")
    assert any(m.startswith("teacher.extractors.video = 'swin3d_x': allowed: ") and "swin3d_b"
               in m for m in msgs)
    assert "eval.protocols = 'missing_rate': allowed: subsets, missing-rate, efficiency, " \
           "ablations, all" in msgs
    assert "methods.karmma.gamma = -0.1: a loss weight must be >= 0" in msgs
    with pytest.raises(ConfigError) as exc:  # commands that only read the cache skip the registries
        cfg.validate(extractors=False)
    assert len(exc.value.problems) == 2 and "swin3d_x" not in str(exc.value)
    assert "gamma" not in str(exc.value)


def test_load_takes_the_preset_of_the_given_dataset(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("student:\n  train:\n    epochs: 30\n")
    cfg = C.load(extra, dataset="epic100")
    assert cfg.data.dataset == "epic100" and cfg.extract.theta == 300
    assert cfg.teacher.extractors == C.epic100_teacher().extractors
    assert cfg.student.train.epochs == 30
    extra.write_text("data:\n  dataset: ssv2\n")
    with pytest.raises(MmkdError, match="data.dataset is 'ssv2' but --dataset is 'epic100'"):
        C.load(extra, dataset="epic100")


def test_cmpt_presets_are_table_6_of_the_paper():
    PRESETS, TrainConfig = C.PRESETS, C.TrainConfig

    av = PRESETS["cmpt_audio_video"]().train
    assert (av.lr_max, av.epochs, av.batch_size, av.warmup_epochs) == (5e-5, 100, 4, 5)
    assert (av.schedule, av.poly_power, av.warmup_factor) == ("poly", 0.9, 0.1)
    assert (av.adam_eps, av.weight_decay) == (1e-8, 0.02)
    it = PRESETS["cmpt_image_text"]().train
    assert (it.lr_max, it.epochs, it.batch_size, it.schedule) == (1e-3, 10, 8, "poly")
    assert TrainConfig().schedule == "cosine"  # what every other recipe keeps


def test_schedule_fields_are_validated():
    cfg = C.RunConfig()
    cfg.student.train.schedule = "step"
    cfg.student.train.warmup_factor = 0
    with pytest.raises(ConfigError) as exc:
        cfg.validate(extractors=False)
    text = "\n".join(exc.value.problems)
    assert "student.train.schedule" in text and "allowed: cosine, poly" in text
    assert "student.train.warmup_factor" in text


def test_a_train_recipe_replaces_student_train_and_the_overrides_stay_on_top():
    cfg = C.with_train_recipe(C.run_preset("demo"), "cmpt_audio_video",
                              ["student.train.epochs=6"])
    assert (cfg.student.train.schedule, cfg.student.train.lr_max) == ("poly", 5e-5)
    assert cfg.student.train.epochs == 6
    assert cfg.teacher.train == C.run_preset("demo").teacher.train
    with pytest.raises(MmkdError, match="--recipe cmpt_x: no such preset"):
        C.with_train_recipe(cfg, "cmpt_x")
