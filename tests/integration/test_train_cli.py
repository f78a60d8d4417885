"""`mmkd train teacher` and `mmkd distill` end to end on a tiny real cache, as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers.train_cache import STUDENT, TEACHER, build_cache, fill, samples
from mmkd.cache import Cache
from mmkd.cli.app import app
from mmkd.errors import MmkdError

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


def test_a_flipped_bit_in_the_cache_stops_training(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert runner.invoke(app, ["init", str(run), "--dataset", "demo"]).exit_code == 0
    cache = build_cache(run / "cache.zarr", n=20, theta=2, dim=4, features=dict(TEACHER))
    shard = cache.group_path("audio", TEACHER["audio"]) / "tokens" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    offset = int(np.frombuffer(bytes(data[-(16 * 16 + 4):-4]), dtype="<u8")[2])  # sample 1
    data[offset + 3] ^= 0x40  # an exponent bit: the value changes a lot, stays finite
    shard.write_bytes(bytes(data))
    monkeypatch.chdir(run)
    res = runner.invoke(app, ["train", "teacher", *FAST])
    assert isinstance(res.exception, MmkdError), res.output
    msg = str(res.exception)
    assert "s0001" in msg and "crc32c" in msg and "mmkd cache verify" in msg


def test_named_unimodal_teacher_with_features_then_kd_and_dml_in_eval(run_dir, monkeypatch):
    """Several teachers per run; kd distils from a named one; kd and dml show in `mmkd eval`."""
    monkeypatch.chdir(run_dir)
    res = runner.invoke(app, ["train", "teacher", "--name", "audio_t", "--modalities", "audio",
                              "--features", *FAST])
    assert res.exit_code == 0, res.output
    tdir = run_dir / "teachers" / "audio_t"
    assert list(json.loads((tdir / "meta.json").read_text())["features"]) == ["audio"]
    cache = Cache.open(run_dir / "cache.zarr")
    assert "audio_t" in cache.teachers()
    z = cache.teacher_features("audio_t", "audio")
    assert z.shape == (N, 32) and z.dtype == np.float16 and np.abs(z).sum() > 0
    with pytest.raises(MmkdError, match="--name audio_t --features"):
        cache.teacher_features("audio_t", "video")

    res = runner.invoke(app, ["distill", "--method", "kd", "--set", "methods.kd.teacher=audio_t",
                              "--set", "methods.kd.temperature=2", *FAST])
    assert res.exit_code == 0, res.output
    meta = json.loads((run_dir / "students" / "kd" / "meta.json").read_text())
    assert meta["method_config"] == {"temperature": 2.0, "ce_weight": 0.1, "kd_weight": 0.9,
                                     "teacher": "audio_t"}
    assert meta["teacher_provenance"]["features"] == {"audio": TEACHER["audio"]}
    res = runner.invoke(app, ["distill", "--method", "dml", *FAST])
    assert res.exit_code == 0, res.output
    last = load_file(str(run_dir / "students" / "dml" / "last.safetensors"))
    assert any(k.startswith("peer.") for k in last)  # the peer trains and resumes with the task
    assert not any(k.startswith("peer.") for k in load_file(
        str(run_dir / "students" / "dml" / "best.safetensors")))

    res = runner.invoke(app, ["eval", "--protocol", "subsets", "--models", "kd,dml"])
    assert res.exit_code == 0, res.output
    rows = json.loads((run_dir / "reports" / "subsets.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"KD", "DML"}
    res = runner.invoke(app, ["train", "teacher", "--name", "../x", *FAST])
    assert isinstance(res.exception, MmkdError) and not (run_dir / "x").exists()
    res = runner.invoke(app, ["distill", "--method", "teacher", *FAST])
    assert isinstance(res.exception, MmkdError) and "dml" in str(res.exception)


def test_dcat_from_a_unimodal_source_teacher_then_eval(run_dir, monkeypatch):
    """`train teacher --modalities audio --name audio --kv`, then a D-CAT student on video with
    `--set methods.dcat.source=audio`; a source whose attention differs is one clear error."""
    monkeypatch.chdir(run_dir)
    res = runner.invoke(app, ["train", "teacher", "--name", "audio", "--modalities", "audio",
                              "--kv", *FAST, "--set", "teacher.fusion.width=64"])
    assert res.exit_code == 0, res.output
    cache = Cache.open(run_dir / "cache.zarr")
    kv = cache.teacher_features("audio", "audio", "kv").astype(np.float32)
    present = cache.array("audio", TEACHER["audio"], "present")[:]
    assert kv.shape == (N, 8 * 8 * 8)  # 8 heads of 64 / 8 dims
    np.testing.assert_allclose(np.linalg.norm(kv[present], axis=1), 1, atol=1e-2)
    assert not kv[~present].any()  # audio missing: nothing to align

    res = runner.invoke(app, ["distill", "--method", "dcat", "--modalities", "video",
                              "--set", "methods.dcat.source=audio", *FAST])
    assert res.exit_code == 0, res.output
    meta = json.loads((run_dir / "students" / "dcat-video" / "meta.json").read_text())
    assert meta["modalities"] == ["video"] and meta["method_config"] == {
        "source": "audio", "teacher": "", "ca_weight": 1.0, "masked": True}
    assert meta["teacher_provenance"]["features"] == {"audio": TEACHER["audio"]}
    epochs = (run_dir / "students" / "dcat-video" / "metrics.jsonl").read_text().splitlines()
    assert "loss_ca" in epochs[-1]
    res = runner.invoke(app, ["distill", "--method", "kd", "--modalities", "video",
                              "--set", "methods.kd.teacher=audio", *FAST])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", "--protocol", "subsets", "--models", "dcat-video,kd-video"])
    assert res.exit_code == 0, res.output
    rows = json.loads((run_dir / "reports" / "subsets.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"D-CAT (V)", "KD (V)"}
    (table,) = (run_dir / "reports").glob("unimodal_*.json")
    rows = json.loads(table.read_text())["rows"]
    assert [r["method"] for r in rows] == ["D-CAT", "KD"] and all(r["V"] >= 0 for r in rows)

    res = runner.invoke(app, ["train", "teacher", "--name", "audio32", "--modalities", "audio",
                              "--kv", *FAST])  # width 32: 8 heads of 4 dims
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["distill", "--method", "dcat", "--modalities", "flow", "--set",
                              "methods.dcat.source=audio", "--set", "methods.dcat.teacher=audio32",
                              *FAST])
    assert isinstance(res.exception, MmkdError) and \
        "--set teacher.fusion.width=64 --set teacher.fusion.heads=8" in str(res.exception)
    res = runner.invoke(app, ["distill", "--method", "dcat", "--modalities", "flow", "--set",
                              "methods.dcat.source=video", *FAST])  # no teacher `video`
    assert isinstance(res.exception, MmkdError) and "--name video --kv" in str(res.exception)
