"""`mmkd pretrain` then `mmkd extract` through the real CLI, on the tiny built-in dataset."""

import torch
from typer.testing import CliRunner

from mmkd.cache import Cache
from mmkd.cli.app import app
from mmkd.extract.extractors.weights import sha256_file


def run_cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return "".join(res.output.split())  # rich wraps long lines anywhere


def test_pretrained_weights_feed_extract_through_the_run_config(tmp_path, demo_tiny):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    sets = ["data.modalities=[video]", "teacher.extractors.video=test_swin3d",
            "student.extractors.video=test_swin3d", "extract.workers=0",
            "pretrain.train.warmup_epochs=0"]
    run_cli("init", str(run), "--dataset", "demo", "--annotations", str(demo_tiny / "annotations"),
            "--media-root", str(demo_tiny / "media"), *[a for s in sets for a in ("--set", s)])
    run_cli("manifest", "epic100", "--annotations", str(demo_tiny / "annotations"),
            "--media-root", str(demo_tiny / "media"), "--out", str(run / "manifest"))

    text = run_cli("pretrain", "--modality", "video", "--epochs", "2", "--workers", "1",
                   "--cache", str(run))
    weights = run / "pretrained" / "video-test_swin3d.safetensors"
    assert weights.exists() and "97/11" in text  # train/val clips of the tiny Epic-Kitchens*
    assert "--setteacher.weights.video=pretrained/video-test_swin3d.safetensors" in text

    # the weights enter the cache through mmkd.yaml, with their sha256 as provenance
    run_cli("extract", "--modality", "video", "--cache", str(run),
            "--set", "teacher.weights.video=pretrained/video-test_swin3d.safetensors",
            "--set", "student.weights.video=pretrained/video-test_swin3d.safetensors")
    reader = Cache.open(run / "cache.zarr").feature_reader("video", "test_swin3d")
    assert reader.provenance["weights_sha256"] == sha256_file(weights)

    # a re-run resumes the finished training; the re-exported file is byte-identical
    again = run_cli("pretrain", "--modality", "video", "--epochs", "2", "--workers", "0",
                    "--stream", "--cache", str(run))
    assert "97/11" in again and sha256_file(weights) == reader.provenance["weights_sha256"]
