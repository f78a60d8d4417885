"""`mmkd demo` building blocks: resumable stages and the findings read back from the report.

The full demo (generation + extraction of ~1,400 clips) takes minutes, so the end-to-end run is
`make demo`; here the stages' skip logic and the findings are checked on tiny inputs."""

import json

from typer.testing import CliRunner

from mmkd import demo_pipeline as P
from mmkd.cli.app import app
from mmkd.errors import MmkdError
from mmkd.eval.reports import Table, write_table


def test_init_is_kept_on_rerun_and_targets_cover_both_roles(tmp_path):
    paths = P.DemoPaths(tmp_path, "tiny")
    assert not P.data_ready(paths)
    created, cfg = P.init_run(paths, ["teacher.train.epochs=2", "teacher.train.warmup_epochs=1"])
    assert created and cfg.teacher.train.epochs == 2
    created, cfg2 = P.init_run(paths)
    assert not created and cfg2.teacher.train.epochs == 2  # the existing run config wins
    targets = [(t.modality, t.extractor) for t in P.extract_targets(cfg)]
    assert targets == [("video", "demo_swin3d_teacher"), ("video", "demo_swin3d_student"),
                       ("flow", "demo_swin3d_teacher"), ("flow", "demo_swin3d_student"),
                       ("audio", "demo_swin3d_teacher_audio"), ("audio", "demo_ast_student")]
    (paths.data).mkdir(parents=True)
    (paths.data / "demo.json").write_text(json.dumps({"scale": "tiny", "seed": 0}))
    assert P.data_ready(paths)
    assert not P.data_ready(P.DemoPaths(tmp_path, "small"))


def test_findings_answer_the_demo_questions(tmp_path):
    rows = [("KARMMA_T", 40.0, 10.0), ("Baseline", 38.0, 4.0), ("Baseline w/ δ", 36.0, 30.0),
            ("KARMMA_S", 39.0, 32.0)]
    write_table(Table("subsets_action", "t", ["method", "V+F+A", "F+A"],
                      [{"method": m, "V+F+A": a, "F+A": b} for m, a, b in rows],
                      notes=["Majority class: action 2.00"]), tmp_path)
    write_table(Table("robustness_action", "t", ["method", "V+F+A", "F+A", "kept (%)"],
                      [{"method": m, "V+F+A": a, "F+A": b, "kept (%)": 100 * b / a}
                       for m, a, b in rows]), tmp_path)
    lines = P.findings(tmp_path)
    assert "KARMMA_T 40.0%" in lines[0] and "Majority class" in lines[0]
    assert "Baseline 4.0% (keeps 11%)" in lines[1]
    assert lines[2] == "KARMMA_S beats Baseline w/ δ: +3.0 points with V+F+A, +2.0 points with F+A"


def test_demo_rejects_unknown_scale(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--scale", "huge"])
    assert isinstance(res.exception, MmkdError) and "tiny or small" in str(res.exception)
