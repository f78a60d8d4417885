"""Extraction from real containers through `mmkd manifest custom`: H.264 mp4, H.264 mkv with Opus
audio, VP9 webm muxed live (no duration: decord refuses it, PyAV reads it) and mov, each with
its audio track, written by the test with PyAV; video and audio both come from the one file."""

import csv
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import extract_media as em
from mmkd.cache import Cache
from mmkd.cli.app import app

runner = CliRunner()


def invoke(*args: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm", "mov"])
def test_extract_video_and_audio_from_one_container(tmp_path, ext):
    em.write_av(tmp_path / "media" / f"clip.{ext}", 36, fps=12)  # 3 s
    rows = [["seg", "clip", "train", "0.5", "2.5", f"clip.{ext}", f"clip.{ext}", "0", "1"],
            ["whole", "clip", "val", "", "", f"clip.{ext}", f"clip.{ext}", "1", "0"]]
    with open(tmp_path / "data.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["sample_id", "video_id", "split", "start_s", "stop_s", "video",
                                   "audio", "label_verb", "label_noun"], *rows])
    invoke("manifest", "custom", "--csv", tmp_path / "data.csv", "--media-root",
           tmp_path / "media", "--out", tmp_path / "manifest")
    run = tmp_path / "run"
    invoke("init", run, "--dataset", "custom", "--set", f"data.manifest_dir={tmp_path / 'manifest'}",
           "--set", "clip.num_frames=8", "--set", "extract.workers=0", "--set", "extract.theta=4")
    for modality, extractor in (("video", "test_swin3d"), ("audio", "test_ast")):
        out = invoke("extract", "--modality", modality, "--extractor", extractor, "--random-init",
                     "--strict", "--cache", run)
        # clips 2, written 2, failed 0 (and --strict stops on a failure)
        assert re.search(rf"{modality}/{extractor}\s*│\s*2\s*│\s*2\s*│\s*0\s*│", out), out
        reader = Cache.open(run / "cache.zarr").feature_reader(modality, extractor)
        tokens = torch.zeros(2, reader.theta, reader.dim)
        assert reader.read(np.arange(2), tokens).tolist() == [True, True]
        assert torch.isfinite(tokens).all() and tokens.abs().sum() > 0
