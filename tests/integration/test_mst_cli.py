"""`mmkd distill --method mst --modalities audio` end to end on a tiny real cache: three stages,
cached specialised-teacher logits, a resume inside stage 2, the summary, and `mmkd eval`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.train_cache import STUDENT, build_cache
from mmkd.cache import Cache  # noqa: E402
from mmkd.cli.app import app  # noqa: E402
from mmkd.errors import MmkdError  # noqa: E402
from mmkd.train.methods import mst  # noqa: E402

N = 40
FAST = ["--set", "student.train.epochs=2", "--set", "student.train.warmup_epochs=1",
        "--set", "student.train.batch_size=8", "--set", "student.fusion.width=16",
        "--set", "student.fusion.mlp_hidden=16", "--set", "methods.mst.stage1_epochs=1"]
runner = CliRunner()


@pytest.fixture()
def run_dir(tmp_path):
    run = tmp_path / "epic"
    res = runner.invoke(app, ["init", str(run), "--dataset", "demo"])
    assert res.exit_code == 0, res.output
    build_cache(run / "cache.zarr", n=N, theta=3, dim=10, features=dict(STUDENT))
    return run


def test_mst_needs_one_target_modality(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir)
    res = runner.invoke(app, ["distill", "--method", "mst", *FAST])
    assert isinstance(res.exception, MmkdError) and "exactly one" in str(res.exception)
    res = runner.invoke(app, ["distill", "--method", "mst", "--modalities", "audio", *FAST,
                              "--set", "methods.mst.top_k=7"])
    assert isinstance(res.exception, MmkdError) and "only 6 specialised" in str(res.exception)


def test_three_stages_resume_inside_stage2_summary_and_eval(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir)
    out = run_dir / "students" / "mst-audio"
    calls = {"n": 0}
    step = mst.MstSpecialise.training_step

    def dies_at_third_step(self, batch, epoch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # a kill inside stage 2, after two saved steps
        return step(self, batch, epoch)

    monkeypatch.setattr(mst.MstSpecialise, "training_step", dies_at_third_step)
    cmd = ["distill", "--method", "mst", "--modalities", "audio", "--checkpoint-every", "1",
           *FAST]
    res = runner.invoke(app, cmd)
    assert res.exit_code != 0 and calls["n"] == 3
    members = run_dir / "mst-members"
    assert (members / "done.json").exists() and not (out / "stage2" / "done.json").exists()
    stage1_mtime = (members / "last.safetensors").stat().st_mtime_ns

    calls["n"] = -100  # no more kills; count the steps the resumed stage 2 runs
    res = runner.invoke(app, cmd)
    assert res.exit_code == 0, res.output
    steps_per_epoch = -(-(N * 3 // 5) // 8)  # 24 train samples, batch 8
    assert calls["n"] + 100 == steps_per_epoch - 2  # stage 2 continued after its saved steps
    assert (members / "last.safetensors").stat().st_mtime_ns == stage1_mtime
    assert "done earlier, skipped" in res.output and "stage 1/3" in res.output

    # the specialised teachers' logits are in the cache: 3 bases (all, video, flow) × 2 layers
    cache = Cache.open(run_dir / "cache.zarr")
    ids = [f"mst-audio-{j}" for j in range(1, 7)]
    assert [t for t in cache.teachers() if t.startswith("mst-")] == ids
    prov = cache.teacher_provenance("mst-audio-1")
    assert (prov["base"], prov["layer"], prov["target"]) == ("all", "fusion", "audio")
    assert cache.teacher_logits("mst-audio-6", "verb").shape == (N, 3)
    assert not np.allclose(cache.teacher_logits("mst-audio-1", "noun"),
                           cache.teacher_logits("mst-audio-2", "noun"))

    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "mst" and meta["modalities"] == ["audio"]
    assert list(meta["model"]["modalities"]) == ["audio"]
    summary = json.loads((out / "mst_summary.json").read_text())
    assert summary["members"] == {"all": ["video", "flow", "audio"], "video": ["video"],
                                  "flow": ["flow"], "audio": ["audio"]}
    chosen = [t["chosen"] for t in summary["teachers"].values()]
    assert sum(chosen) == 2 * 24  # k = 1: one teacher per training sample per epoch
    assert set(summary["teacher_logits_s"]) == {"train", "val", "test"}
    assert "chosen" in res.output and "mst-audio-1" in res.output

    # a config change after a finished stage 2 is refused, naming --restart
    res = runner.invoke(app, [*cmd, "--set", "methods.mst.top_k=2"])
    assert isinstance(res.exception, MmkdError) and "--restart" in str(res.exception)

    # another target reuses the members: stage 1 is skipped, its teachers are its own
    res = runner.invoke(app, ["distill", "--method", "mst", "--modalities", "video", *FAST])
    assert res.exit_code == 0, res.output
    assert "stage 1/3: collaborative initialisation: done earlier" in res.output
    assert (members / "last.safetensors").stat().st_mtime_ns == stage1_mtime
    prov = Cache.open(run_dir / "cache.zarr").teacher_provenance("mst-video-3")
    assert (prov["base"], prov["layer"]) == ("flow", "fusion")

    res = runner.invoke(app, ["eval", "--protocol", "subsets,missing-rate"])
    assert res.exit_code == 0, res.output
    table = json.loads((run_dir / "reports" / "subsets.json").read_text())
    rows = [r for r in table["rows"] if r["method"].startswith("MST-Distill")]
    assert sorted((r["method"], r["modalities"]) for r in rows) == [("MST-Distill (A)", "A"),
                                                                    ("MST-Distill (V)", "V")]
    assert any("evaluated on their one modality" in n for n in table["notes"])
    rate = json.loads((run_dir / "reports" / "missing_rate_action.json").read_text())
    assert any(r["method"] == "MST-Distill (A)" for r in rate["rows"])
    assert any("evaluated on their one modality" in n for n in rate["notes"])
