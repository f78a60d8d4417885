"""Faults a user causes (bad bytes, unwritable folders, a full disk) through the real entry
point `mmkd.cli.app.main`: one red line naming the file and the fix, exit code 2, no traceback.

Tests run as root here, and root ignores permission bits, so an unwritable folder is a path
under /sys (sysfs refuses new entries even to root: EPERM/EACCES, or EROFS where /sys is
mounted read-only); inside a run directory, which must also hold a real cache, the refused
write is injected (monkeypatch) at the call that creates the file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import extract_media as em
from helpers.epic_csv import pruning_epic
from helpers.train_cache import TEACHER, build_cache
from mmkd.cli import ui
from mmkd.cli.app import main

UNWRITABLE = Path("/sys/mmkd-test-unwritable")


def _refused(path: Path) -> bool:
    try:
        path.mkdir(parents=True)
    except OSError:
        return True
    path.rmdir()
    return False


needs_unwritable = pytest.mark.skipif(not _refused(UNWRITABLE),
                                      reason="no folder here refuses writes to this user")


@pytest.fixture
def mmkd(capsys, monkeypatch):
    """Run `mmkd ARGS` in-process; returns (exit code, stderr then stdout, whitespace joined)."""
    monkeypatch.setattr(ui.err_console, "width", 1000)
    monkeypatch.setattr(ui.console, "width", 1000)

    def run(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as ended:
            main([str(a) for a in args])
        out = capsys.readouterr()
        return ended.value.code, " ".join((out.err + out.out).split())

    return run


def test_non_utf8_csv_is_one_line_with_file_and_line(tmp_path, mmkd):
    ann = pruning_epic(tmp_path / "annotations")
    csv = ann / "EPIC_100_train.csv"
    lines = csv.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"open ", b"caf\xe9 ", 1)  # a Latin-1 byte on line 4
    csv.write_bytes(b"\n".join(lines))
    code, err = mmkd("manifest", "epic100", "--annotations", ann, "--out", tmp_path / "m")
    assert code == 2 and "Traceback" not in err
    assert f"error: {csv}:4: not UTF-8 (byte 0xe9 at column" in err and "save the file as UTF-8" in err


def test_config_file_missing_not_utf8_or_not_a_mapping(tmp_path, mmkd):
    run = tmp_path / "run"
    code, err = mmkd("init", run, "--dataset", "demo", "--config", tmp_path / "nope.yaml")
    assert code == 2 and f"{tmp_path / 'nope.yaml'}: config file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"data:\n  dataset: demo\nclip:\n  sampling: caf\xe9\n")
    code, err = mmkd("init", run, "--dataset", "demo", "--config", bad)
    assert code == 2 and f"{bad}:4: not UTF-8 (byte 0xe9 at column 16)" in err
    bad.write_text("- video\n- flow\n")
    code, err = mmkd("init", run, "--dataset", "demo", "--config", bad)
    assert code == 2 and f"{bad}: the top level is a list, not a mapping" in err
    assert not run.exists()


@needs_unwritable
def test_unwritable_output_folders(tmp_path, mmkd):
    ann = pruning_epic(tmp_path / "annotations")
    for args in (["init", UNWRITABLE / "run", "--dataset", "demo"],
                 ["manifest", "epic100", "--annotations", ann, "--out", UNWRITABLE / "m"],
                 ["demo-data", "--out", UNWRITABLE / "d", "--scale", "tiny", "--workers", "1"]):
        code, err = mmkd(*args)
        assert code == 2, (args, err)
        assert f"error: cannot write {UNWRITABLE}" in err and "check permissions" in err, err
        assert "Traceback" not in err


def _refuse_under(monkeypatch, target, name: str, folder: Path) -> None:
    """`target.name(path, ...)` raises EACCES for paths under `folder`, as a read-only dir does."""
    real = getattr(target, name)

    def guarded(path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(target, name, guarded)


@pytest.fixture
def extract_run(tmp_path, mmkd) -> Path:
    manifest = em.build_dataset(tmp_path / "data", n_videos=2)
    run = tmp_path / "run"
    code, err = mmkd("init", run, "--dataset", "demo", "--set", f"data.manifest_dir={manifest}",
                     "--set", "clip.num_frames=8", "--set", "extract.workers=0",
                     "--set", "teacher.extractors.audio=test_swin3d_audio",
                     "--set", "extract.theta=12")
    assert code == 0, err
    return run


EXTRACT = ["extract", "--modality", "audio", "--extractor", "test_swin3d_audio", "--random-init"]


def test_extract_into_a_read_only_run_dir(extract_run, mmkd, monkeypatch):
    from mmkd.cache import writer

    _refuse_under(monkeypatch, writer.os, "open", extract_run)
    code, err = mmkd(*EXTRACT, "--cache", extract_run)
    assert code == 2 and f"error: cannot write {extract_run}/" in err
    assert "(Permission denied); check permissions" in err


def test_extract_disk_full_names_the_shard_and_resumes(extract_run, mmkd, monkeypatch):
    from mmkd.cache import Cache, writer

    real = writer._write_all

    def half_then_full(fd, parts):
        os.write(fd, b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_write_all", half_then_full)
    code, err = mmkd(*EXTRACT, "--cache", extract_run)
    assert code == 2 and "Traceback" not in err
    assert f"error: cannot write {extract_run}/cache.zarr/audio/test_swin3d_audio/tokens/c/0/0/0: " \
           "no space left on device; free space and re-run the same command: it resumes" in err
    assert not list(extract_run.rglob("*.partial"))
    monkeypatch.setattr(writer, "_write_all", real)  # space freed
    code, err = mmkd(*EXTRACT, "--cache", extract_run)
    assert code == 0, err
    done = Cache.open(extract_run / "cache.zarr").array("audio", "test_swin3d_audio", "done")
    assert np.asarray(done[:]).all()


@pytest.fixture
def train_run(tmp_path, mmkd) -> Path:
    run = tmp_path / "run"
    code, err = mmkd("init", run, "--dataset", "demo", "--set", "teacher.train.epochs=2",
                     "--set", "teacher.train.warmup_epochs=1", "--set", "teacher.fusion.width=16",
                     "--set", "teacher.fusion.mlp_hidden=16")
    assert code == 0, err
    build_cache(run / "cache.zarr", n=24, theta=2, dim=8, features=dict(TEACHER))
    return run


def test_train_into_a_read_only_run_dir(train_run, mmkd, monkeypatch):
    _refuse_under(monkeypatch, Path, "mkdir", train_run / "teacher")
    code, err = mmkd("train", "teacher", "--cache", train_run)
    assert code == 2 and f"error: cannot write {train_run / 'teacher'} (Permission denied); " \
                          "check permissions" in err


def test_train_disk_full_on_checkpoint_then_resume(train_run, mmkd, monkeypatch):
    real = Path.write_bytes
    saves = []

    def full_on_second_last(self, data):
        if self.name.startswith(".last.safetensors"):
            saves.append(self)
            if len(saves) == 2:
                real(self, data[:10])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_on_second_last)
    code, err = mmkd("train", "teacher", "--cache", train_run)
    out = train_run / "teacher"
    assert code == 2 and "Traceback" not in err
    assert f"error: cannot write {out / 'last.safetensors'}: no space left on device; free space " \
           "and re-run the same command: it resumes where it stopped" in err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    monkeypatch.setattr(Path, "write_bytes", real)
    code, err = mmkd("train", "teacher", "--cache", train_run)
    assert code == 0, err
    assert "resumed from │ epoch 2, step 1" in err


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    from mmkd import config as C

    def broken(*_a, **_k):
        raise KeyError("a bug")

    monkeypatch.setattr(C, "run_preset", broken)
    with pytest.raises(KeyError):
        main(["init", str(tmp_path / "run"), "--dataset", "demo"])


def test_verbose_shows_the_traceback_and_the_line(tmp_path, mmkd):
    code, err = mmkd("-v", "init", tmp_path / "run", "--dataset", "demo", "--config",
                     tmp_path / "nope.yaml")
    assert code == 2 and "Traceback" in err and "config file not found" in err


def test_console_script_exit_code_and_one_line(tmp_path):
    mmkd = Path(sys.executable).with_name("mmkd")
    proc = subprocess.run([str(mmkd), "init", str(tmp_path / "r"), "--dataset", "demo",
                           "--config", str(tmp_path / "nope.yaml")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "1000"})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_restart_that_fails_on_the_cache_leaves_the_folder_as_it_was(train_run, mmkd):
    code, err = mmkd("train", "teacher", "--cache", train_run)
    assert code == 0, err
    out = train_run / "teacher"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    shard = next((train_run / "cache.zarr").glob("video/*/tokens/c/0/0/0"))
    shard.write_bytes(shard.read_bytes()[:100])  # a truncated shard: the first batch fails
    code, err = mmkd("train", "teacher", "--cache", train_run, "--restart",
                     "--set", "teacher.train.epochs=3")
    assert code == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_bad_config_lists_every_problem_in_one_error(tmp_path, mmkd):
    extra = tmp_path / "extra.yaml"
    extra.write_text("teacher:\n  train:\n    epochs: 2.7\n  extractor: {}\nmethods:\n  teacher:\n    alpha: -1\n")
    code, err = mmkd("init", tmp_path / "run", "--dataset", "epic100", "--config", extra,
                     "--set", "clip.num_frames=0", "--set", "eval.protocols=[subset]")
    assert code == 2 and "Traceback" not in err
    for problem in ("teacher.train.epochs: 2.7 is not a whole number (int)",
                    "teacher.extractor: unknown field", "clip.num_frames = 0: must be > 0",
                    "methods.teacher.alpha = -1.0: a loss weight must be >= 0",
                    "eval.protocols = 'subset': allowed: subsets, missing-rate"):
        assert problem in err, problem
    assert not (tmp_path / "run").exists()
