"""`mmkd demo` building blocks: resumable stages and the findings read back from the report.

The full demo (generation + extraction of ~1,400 clips) takes minutes, so the end-to-end run is
`make demo`; here the stages' skip logic and the findings are checked on tiny inputs."""

import json
import re

from typer.testing import CliRunner

from mmkd.cli.app import app
from mmkd.demo import pipeline as P
from mmkd.errors import MmkdError
from mmkd.eval.reports import MeanStd, Table, write_table


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
    # the pretrain stage's outputs are the extract stage's weights; the audio stays random
    assert cfg.teacher.weights == {
        "video": "pretrained/video-demo_swin3d_teacher.safetensors",
        "flow": "pretrained/flow-demo_swin3d_teacher.safetensors"}
    assert set(cfg.student.weights) == {"video", "flow"}
    # an override of an extractor is followed by its weights file (wired after the overrides)
    _, other = P.init_run(P.DemoPaths(tmp_path / "other", "tiny"),
                          ["teacher.extractors.flow=demo_swin3d_student"])
    assert other.teacher.weights["flow"] == "pretrained/flow-demo_swin3d_student.safetensors"
    assert P.pretrain_pending(paths, cfg) == ["video", "flow"]
    for role in (cfg.teacher, cfg.student):
        for m in ("video",):
            (paths.run / role.weights[m]).parent.mkdir(parents=True, exist_ok=True)
            (paths.run / role.weights[m]).write_bytes(b"")
    assert P.pretrain_pending(paths, cfg) == ["flow"]
    # KARMMA_S trains after the teacher (it needs its logits); the rest runs side by side, one
    # job per student seed, in two rounds of equal size on the demo's two workers
    rounds = P.train_rounds([0, 1, 2])
    assert sorted(sum(rounds, []), key=str) == sorted(
        [("teacher", None), *[(m, s) for m in P.STUDENT_METHODS for s in (0, 1, 2)]], key=str)
    assert [len(r) for r in rounds] == [6, 4]
    assert ("teacher", None) in rounds[0] and all(n != "karmma" for n, _ in rounds[0])
    (paths.data).mkdir(parents=True)
    (paths.data / "demo.json").write_text(json.dumps({"scale": "tiny", "seed": 0}))
    assert P.data_ready(paths)
    assert not P.data_ready(P.DemoPaths(tmp_path, "small"))


def test_findings_answer_the_demo_questions(tmp_path):
    rows = [("KARMMA_T", 40.0, 10.0), ("Baseline", MeanStd(38.0, 1.0, 3), MeanStd(4.0, 0.5, 3)),
            ("Baseline w/ δ", MeanStd(36.0, 2.0, 3), MeanStd(30.0, 1.0, 3)),
            ("KARMMA_S", MeanStd(39.0, 1.5, 3), MeanStd(32.0, 2.5, 3))]
    write_table(Table("subsets_action", "t", ["method", "V+F+A", "F+A"],
                      [{"method": m, "V+F+A": a, "F+A": b} for m, a, b in rows],
                      notes=["Majority class: action 2.00"]), tmp_path)
    write_table(Table("robustness_action", "t", ["method", "V+F+A", "F+A", "kept (%)"],
                      [{"method": "KARMMA_T", "V+F+A": 40.0, "F+A": 10.0, "kept (%)": 25.0},
                       {"method": "Baseline", "V+F+A": MeanStd(38.0, 1.0, 3),
                        "F+A": MeanStd(4.0, 0.5, 3), "kept (%)": MeanStd(10.5, 1.2, 3)}]),
                tmp_path)
    compare = Table("compare_karmma_vs_baseline-delta", "t",
                    ["modalities", "KARMMA_S (%)", "Baseline w/ δ (%)", "difference (points)",
                     "95% CI low", "95% CI high", "A > B", "seeds A > B", "seeds (A, B)"],
                    [{"modalities": "V+F+A", "difference (points)": 3.0, "95% CI low": 0.5,
                      "95% CI high": 5.5, "A > B": "yes", "seeds A > B": "3/3"},
                     {"modalities": "F+A", "difference (points)": 2.0, "95% CI low": -1.0,
                      "95% CI high": 5.0, "A > B": "not shown", "seeds A > B": "2/3"}])
    write_table(compare, tmp_path)
    lines = P.findings(tmp_path)
    assert "KARMMA_T 40.0%" in lines[0] and "KARMMA_S 39.0 ± 1.5%" in lines[0]
    assert "Majority class" in lines[0]
    assert "Baseline 4.0 ± 0.5% (keeps 10 ± 1%)" in lines[1]
    assert lines[2] == ("KARMMA_S partly beats Baseline w/ δ: +3.0 points with V+F+A (95% CI "
                        "[+0.5, +5.5], ahead in 3/3 seeds); +2.0 points with F+A (95% CI "
                        "[-1.0, +5.0], ahead in 2/3 seeds)")
    compare.rows[0].update({"95% CI low": -0.5, "A > B": "not shown"})
    assert P.verdict(compare).startswith("KARMMA_S does not beat (an interval includes 0) ")


def test_findings_name_the_dropped_modality(tmp_path):
    write_table(Table("subsets_action", "t", ["method", "V+F+A", "V+F"],
                      [{"method": "KARMMA_S", "V+F+A": 40.0, "V+F": 30.0}]), tmp_path)
    write_table(Table("robustness_action", "t", ["method", "V+F+A", "V+F", "kept (%)"],
                      [{"method": "KARMMA_S", "V+F+A": 40.0, "V+F": 30.0, "kept (%)": 75.0}]),
                tmp_path)
    assert P.findings(tmp_path)[1] == "without audio (V+F): KARMMA_S 30.0% (keeps 75%)"


def test_demo_rejects_unknown_scale(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--scale", "huge"])
    assert isinstance(res.exception, MmkdError) and "tiny or small" in str(res.exception)


def test_demo_runs_end_to_end_and_a_rerun_only_reports(tmp_path, demo_tiny):
    """The whole `mmkd demo` at tiny scale with one epoch per stage: pretrain, extract and train
    jobs side by side, eval and the findings; a second run skips or resumes every stage."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "data").symlink_to(demo_tiny)  # the session's generated tiny dataset
    sets = ["pretrain.train.epochs=1", "teacher.train.epochs=1", "student.train.epochs=1",
            "pretrain.train.warmup_epochs=0", "teacher.train.warmup_epochs=0",
            "student.train.warmup_epochs=0", "eval.seeds=[0]", "eval.missing_rates=[0.0,0.5]"]
    args = ["demo", "--out", str(out), "--scale", "tiny", "--seeds", "0,1",
            *[a for s in sets for a in ("--set", s)]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = out / "run"
    for m in ("video", "flow"):
        for role in ("teacher", "student"):
            assert (run / "pretrained" / f"{m}-demo_swin3d_{role}.safetensors").exists()
    assert (run / "teacher" / "best.safetensors").exists()
    for m in ("karmma", "baseline", "baseline-delta"):
        for s in (0, 1):
            assert (run / "students" / m / f"seed-{s}" / "best.safetensors").exists()
    report = (run / "reports" / "report.md").read_text()
    assert "KARMMA_S" in report and "Baseline w/ δ" in report and " ± " in report
    text = " ".join(res.output.split())
    assert "without video (F+A)" in text and "time per stage" in text
    assert re.search(r"KARMMA_S [a-z ()0-9]+ Baseline w/ δ: [+-]\d+\.\d points with V\+F\+A "
                     r"\(95% CI \[[+-]\d+\.\d, [+-]\d+\.\d\], ahead in \d/2 seeds\); .* with F\+A",
                     text), text

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert "video, flow already pretrained" in text
    assert len(re.findall(r"0 new, (\d+) already done", text)) == 6  # every extraction skipped
    for d in ("teacher", "students/karmma/seed-1"):  # finished trainings resume as done
        assert len((run / d / "metrics.jsonl").read_text().splitlines()) == 1
