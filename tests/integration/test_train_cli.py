"""`mmkd train teacher` and `mmkd distill` end to end on a tiny real cache, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "train"))
from train_cache_fixture import STUDENT, TEACHER, build_cache, fill, samples  # noqa: E402

from mmkd.cache import Cache  # noqa: E402
from mmkd.cli.app import app  # noqa: E402
from mmkd.errors import MmkdError  # noqa: E402

N = 60
FAST = ["--set", "teacher.train.epochs=2", "--set", "student.train.epochs=2",
        "--set", "teacher.train.warmup_epochs=1", "--set", "student.train.warmup_epochs=1",
        "--set", "teacher.fusion.width=32", "--set", "teacher.fusion.mlp_hidden=32"]
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "epic"
    res = runner.invoke(app, ["init", str(run), "--dataset", "demo"])
    assert res.exit_code == 0, res.output
    cache = build_cache(run / "cache.zarr", n=N, theta=4, dim=12, features=dict(TEACHER))
    for j, (m, e) in enumerate(sorted(STUDENT.items())):
        fill(cache, m, e, samples(N), theta=3, dim=10, seed=40 + j)
    return run


def test_distill_before_teacher_points_to_train_teacher(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir)
    res = runner.invoke(app, ["distill", *FAST])
    assert isinstance(res.exception, MmkdError)
    assert "mmkd train teacher" in str(res.exception)


def test_train_teacher_then_distill_in_the_run_dir(run_dir, monkeypatch):
    monkeypatch.chdir(run_dir)
    res = runner.invoke(app, ["train", "teacher", *FAST])
    assert res.exit_code == 0, res.output
    tdir = run_dir / "teacher"
    for name in ("best.safetensors", "last.safetensors", "meta.json", "metrics.jsonl",
                 "config.yaml"):
        assert (tdir / name).exists(), name
    meta = json.loads((tdir / "meta.json").read_text())
    assert meta["features"] == TEACHER and meta["selected_by"] == "val_acc"
    assert meta["feature_provenance"]["video"]["extractor"] == TEACHER["video"]
    assert meta["config"]["teacher"]["train"]["epochs"] == 2
    assert "teacher logits" in res.output

    # the cached logits are the best checkpoint's predictions for every sample
    from mmkd.train.checkpoint import load_model
    from mmkd.train.stage2 import predict_cache
    cache = Cache.open(run_dir / "cache.zarr")
    model, _ = load_model(tdir)
    want = predict_cache(model, cache, TEACHER, torch.device("cpu")).logits
    for head, c in cache.heads.items():
        got = cache.teacher_logits("teacher", head)
        assert got.shape == (N, c)
        np.testing.assert_allclose(got, want[head], rtol=1e-5, atol=1e-6)

    res = runner.invoke(app, ["distill", *FAST])  # exactly as the user types it
    assert res.exit_code == 0, res.output
    sdir = run_dir / "students" / "karmma"
    meta = json.loads((sdir / "meta.json").read_text())
    assert meta["method"] == "karmma" and meta["model"]["missing_strategy"] == "B5"
    assert meta["features"] == STUDENT and meta["model"]["width"] == 64
    assert meta["teacher_provenance"]["epoch"] >= 1
    assert len((sdir / "metrics.jsonl").read_text().splitlines()) == 2


def test_distill_from_elsewhere_unimodal_baseline(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["distill", "--cache", str(run_dir), "--method", "baseline",
                              "--modalities", "video", *FAST])
    assert res.exit_code == 0, res.output
    meta = json.loads((run_dir / "students" / "baseline-video" / "meta.json").read_text())
    assert list(meta["model"]["modalities"]) == ["video"]
    assert meta["model"]["missing_strategy"] == "none"
    res = runner.invoke(app, ["distill", "--cache", str(run_dir), "--modalities", "depth"])
    assert isinstance(res.exception, MmkdError) and "subset of data.modalities" in str(
        res.exception)


def test_missing_modality_names_the_extract_command(tmp_path):
    run = tmp_path / "run"
    assert runner.invoke(app, ["init", str(run), "--dataset", "demo"]).exit_code == 0
    build_cache(run / "cache.zarr", n=20, theta=2, dim=4,
                features={m: e for m, e in STUDENT.items() if m != "audio"})
    proc = subprocess.run([str(Path(sys.executable).parent / "mmkd"), "distill", "--cache",
                           str(run), "--method", "baseline"], capture_output=True, text=True)
    assert proc.returncode == 2
    msg = " ".join(proc.stderr.split())
    assert "'audio'" in msg and "mmkd extract --modality audio --extractor demo_ast_student" in msg
