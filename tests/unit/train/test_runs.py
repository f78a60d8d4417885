"""Training seeds of the one run builder: parsing, the per-seed plan and finding trained seeds."""

import json

import pytest

from mmkd import config as C
from mmkd.errors import MmkdError
from mmkd.train.runs import parse_seeds, seed_plan, seeded_runs


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3, 0-2,1") == [3, 0, 1, 2]
    for bad in ("", "a", "-1", "2-0", "1,,2"):
        with pytest.raises(MmkdError, match="--seeds"):
            parse_seeds(bad)


def test_seed_plan_sets_the_role_seed_only(tmp_path):
    cfg = C.run_preset("demo")
    assert seed_plan(cfg, "student", tmp_path, None) == [(cfg, tmp_path)]
    plan = seed_plan(cfg, "student", tmp_path, [0, 5])
    assert [d for _, d in plan] == [tmp_path / "seed-0", tmp_path / "seed-5"]
    assert [c.student.train.seed for c, _ in plan] == [0, 5]
    assert all(c.teacher.train.seed == cfg.teacher.train.seed for c, _ in plan)
    assert cfg.student.train.seed == C.run_preset("demo").student.train.seed  # not mutated


def _run(d, seed, kind="student"):
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"kind": kind,
                                             "config": {kind: {"train": {"seed": seed}}}}))


def test_seeded_runs_finds_seed_folders_and_a_single_run(tmp_path):
    assert seeded_runs(tmp_path / "none") == {}
    _run(tmp_path / "m" / "seed-2", 2)
    _run(tmp_path / "m" / "seed-1", 1)
    (tmp_path / "m" / "seed-3").mkdir()  # not trained yet: no meta.json
    assert seeded_runs(tmp_path / "m") == {1: tmp_path / "m" / "seed-1",
                                          2: tmp_path / "m" / "seed-2"}
    _run(tmp_path / "t", 7, kind="teacher")  # a single run counts as the seed it trained with
    assert seeded_runs(tmp_path / "t") == {7: tmp_path / "t"}
    _run(tmp_path / "t" / "seed-7", 7, kind="teacher")
    with pytest.raises(MmkdError, match="seed 7 is trained twice"):
        seeded_runs(tmp_path / "t")


def test_run_name_of_a_seed_folder_keeps_the_model_name(tmp_path):
    from mmkd.train.runs import run_name

    assert run_name(tmp_path / "karmma-ft-audio") == "karmma-ft-audio"
    assert run_name(tmp_path / "karmma-ft-audio" / "seed-1") == "karmma-ft-audio-seed-1"
