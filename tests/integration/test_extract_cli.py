"""`mmkd extract` end to end through the real CLI on tiny generated media."""

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers import extract_media as em
from mmkd.cache import Cache
from mmkd.cli.app import app
from mmkd.errors import MmkdError

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    manifest = em.build_dataset(tmp_path / "data", n_videos=2)
    run = tmp_path / "run"
    res = runner.invoke(app, [
        "init", str(run), "--dataset", "demo", "--set", f"data.manifest_dir={manifest}",
        "--set", "clip.num_frames=8", "--set", "clip.sampling=k400", "--set", "extract.workers=1",
        "--set", "teacher.extractors.audio=test_swin3d_audio",
        "--set", "student.extractors.audio=test_ast", "--set", "extract.theta=12"])
    assert res.exit_code == 0, res.output
    return run


def invoke(*args: str):
    res = runner.invoke(app, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def test_teacher_and_student_extractors_by_default(run_dir):
    res = invoke("extract", "--modality", "audio", "--random-init", "--cache", str(run_dir))
    assert res.exit_code == 0, res.output
    assert "audio/test_swin3d_audio" in res.output and "audio/test_ast" in res.output
    assert "64→12×32" in res.output and "10→10×32" in res.output  # k → Θ × D per extractor
    cache = Cache.open(run_dir / "cache.zarr")
    assert sorted(cache.features()) == [("audio", "test_ast"), ("audio", "test_swin3d_audio")]
    doc = yaml.safe_load((run_dir / "extract-audio-test_ast.yaml").read_text())
    assert doc["provenance"]["weights_sha256"] == "random-init"
    assert doc["extractor"]["n_mels"] == 32 and doc["run"]["clip"]["num_frames"] == 8
    # a second run finds everything done: 4 clips, 0 written, 0 failed, 4 skipped
    res = invoke("extract", "--modality", "audio", "--random-init", "--cache", str(run_dir))
    assert re.search(r"audio/test_ast\s*│\s*4\s*│\s*0\s*│\s*0\s*│\s*4\s*│", res.output)


def test_weights_file_sha_and_failure_summary(run_dir, tmp_path):
    from mmkd.extract.extractors import create_extractor

    sd = {k.removeprefix("backbone."): v
          for k, v in create_extractor("test_swin3d", random_init=True).state_dict().items()}
    torch.save(sd, tmp_path / "w.pth")
    sha = hashlib.sha256((tmp_path / "w.pth").read_bytes()).hexdigest()
    flow = run_dir.parent / "data" / "media" / "P01" / "flow_frames" / "P01_02" / "v"
    good = (flow / (em.TEMPLATE % 9)).read_bytes()
    (flow / (em.TEMPLATE % 9)).unlink()
    cmd = ("extract", "--modality", "flow", "--extractor", "test_swin3d", "--weights",
           str(tmp_path / "w.pth"), "--batch-size", "3", "--cache", str(run_dir))
    res = invoke(*cmd)
    assert res.exit_code == 0, res.output
    assert "1 × missing or unreadable frame" in res.output and "--retry-failed" in res.output
    cache = Cache.open(run_dir / "cache.zarr")
    reader = cache.feature_reader("flow", "test_swin3d")
    assert reader.provenance["weights_sha256"] == sha
    out = torch.zeros(4, reader.theta, reader.dim)
    assert reader.read(np.arange(4), out).tolist() == [True, True, False, True]
    (flow / (em.TEMPLATE % 9)).write_bytes(good)
    res = invoke(*cmd, "--retry-failed")  # written 1, failed 0, skipped 3
    assert re.search(r"flow/test_swin3d\s*│\s*4\s*│\s*1\s*│\s*0\s*│\s*3\s*│", res.output)
    reader = Cache.open(run_dir / "cache.zarr").feature_reader("flow", "test_swin3d")
    assert reader.read(np.arange(4), out).all()


def test_user_errors(run_dir):
    flow = run_dir.parent / "data" / "media" / "P01" / "flow_frames" / "P01_01" / "u"
    (flow / (em.TEMPLATE % 9)).unlink()
    with pytest.raises(MmkdError, match="--strict: sample 'P01_01_0'.*frame_0000000009"):
        invoke("extract", "--modality", "flow", "--extractor", "test_swin3d", "--random-init",
               "--strict", "--cache", str(run_dir))
    with pytest.raises(MmkdError, match=r"teacher.weights.audio is not set"):
        invoke("extract", "--modality", "audio", "--cache", str(run_dir))
    with pytest.raises(MmkdError, match="--random-init"):
        invoke("extract", "--modality", "video", "--extractor", "test_swin3d", "--cache",
               str(run_dir))
    with pytest.raises(MmkdError, match="not in this run's data.modalities"):
        invoke("extract", "--modality", "detection", "--random-init", "--cache", str(run_dir))


@pytest.mark.slow
def test_dask_local_cluster(run_dir):
    res = invoke("extract", "--modality", "video", "--extractor", "test_swin3d", "--random-init",
                 "--dask", "local", "--set", "extract.shard_size=2", "--cache", str(run_dir))
    assert res.exit_code == 0, res.output
    cache = Cache.open(run_dir / "cache.zarr")
    reader = cache.feature_reader("video", "test_swin3d")
    out = torch.zeros(4, reader.theta, reader.dim)
    assert reader.read(np.arange(4), out).all() and out.abs().sum() > 0
