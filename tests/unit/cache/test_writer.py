"""Shard-aligned units, buffering, failures and resume (including a real SIGKILL mid-run)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import cache_fill
from helpers.cache_fill import (
    DIM,
    PROVENANCE,
    THETA,
    fill_all,
    fill_unit,
    make_cache,
    sample_tokens,
    store_bytes,
)
from mmkd.cache import Cache, parse_shard
from mmkd.errors import MmkdError

FILL_SCRIPT = Path(cache_fill.__file__)  # run as a script: one racing writer process


def test_units_are_shard_aligned_and_split_between_workers(tmp_path):
    w = make_cache(tmp_path / "c.zarr", n=23, shard_size=4).feature_writer(
        "video", "test_ext", THETA, DIM, PROVENANCE)
    units = w.units()
    assert [(u.start, u.stop) for u in units][-2:] == [(16, 20), (20, 23)]
    parts = [w.units(shard=(i, 3)) for i in range(3)]
    assert sorted(u.id for p in parts for u in p) == [u.id for u in units]
    assert [u.id for u in parts[1]] == [1, 4]
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(MmkdError, match="--shard"):
            parse_shard(bad)


def test_write_finish_pending_and_failures(tmp_path):
    c = make_cache(tmp_path / "c.zarr", n=10, shard_size=4)
    w = c.feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    u0 = w.units()[0]
    assert w.pending(u0).tolist() == [0, 1, 2, 3]
    tokens = np.stack([sample_tokens(i)[0] for i in (0, 1)])
    tokens[1, 3:] = 9  # garbage past n_tokens must be stored as zeros
    w.write(np.array([0, 1]), tokens, np.array([6, 3]), np.array([True, True]))
    w.fail(2, "corrupt video")
    assert w.pending(u0).tolist() == [0, 1, 2, 3]  # buffered, not published
    assert w.finish_unit(u0) == 3
    assert w.pending(u0).tolist() == [3]
    arr = c.array("video", "test_ext", "tokens")
    assert np.array_equal(arr[0], tokens[0]) and not arr[1][3:].any()
    assert c.array("video", "test_ext", "n_tokens")[:4].tolist() == [6, 3, 0, 0]
    assert c.array("video", "test_ext", "present")[:4].tolist() == [True, True, False, False]
    assert c.failures() == [{"modality": "video", "extractor": "test_ext", "sample_id": "s002",
                             "reason": "corrupt video"}]
    # a later run finishes the unit: the samples done before are kept, not lost
    w2 = Cache.open(c.path, "r+").feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    t3, n3, _ = sample_tokens(3)
    w2.write([3], t3[None], [n3], [True])
    assert w2.finish_unit(u0) == 1
    assert np.array_equal(arr[0], tokens[0]) and np.array_equal(arr[3], t3)
    assert c.array("video", "test_ext", "done")[:4].all() and len(c.failures()) == 1


def test_write_rejects_bad_shapes_and_non_finite(tmp_path):
    w = make_cache(tmp_path / "c.zarr", n=10).feature_writer(
        "video", "test_ext", THETA, DIM, PROVENANCE)
    with pytest.raises(MmkdError, match="expected tokens"):
        w.write([0], np.zeros((1, THETA + 1, DIM), np.float16), [1], [True])
    bad = np.zeros((1, THETA, DIM), np.float16)
    bad[0, 0, 0] = np.nan
    with pytest.raises(MmkdError, match="s000.*non-finite"):
        w.write([0], bad, [2], [True])
    with pytest.raises(MmkdError, match="outside"):
        w.write([10], np.zeros((1, THETA, DIM), np.float16), [1], [True])


def test_resume_after_sigkill_is_identical_to_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref" / "cache.zarr"
    make_cache(ref, n=23, shard_size=4)
    fill_all(ref)

    path = tmp_path / "killed" / "cache.zarr"
    make_cache(path, n=23, shard_size=4)
    script = FILL_SCRIPT
    proc = subprocess.Popen([sys.executable, str(script), str(path), "0.05"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("unit 0 done")
    assert proc.stdout.readline().startswith("unit 1 done")
    os.kill(proc.pid, signal.SIGKILL)  # mid-unit 2 (each unit takes ~0.2 s)
    proc.wait()
    c = Cache.open(path)
    done = c.array("video", "test_ext", "done")[:]
    assert done[:8].all() and not done[12:].any()  # at most the unit in progress is lost
    subprocess.run([sys.executable, str(script), str(path)], check=True, capture_output=True)
    assert store_bytes(path) == store_bytes(ref)
    assert c.array("video", "test_ext", "done")[:].all()
    assert len(c.failures()) == len(Cache.open(ref).failures()) == 2


def test_rewriting_a_unit_never_carries_corrupted_bytes_over(tmp_path):
    path = tmp_path / "c.zarr"
    w = make_cache(path).feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    for u in w.units():
        fill_unit(str(path), u.id)
    shard = path / "video" / "test_ext" / "tokens" / "c" / "1" / "0" / "0"
    data = bytearray(shard.read_bytes())
    pairs = np.frombuffer(bytes(data[-(4 * 16 + 4):-4]), dtype="<u8").reshape(4, 2)
    data[int(pairs[0, 0]) + 3] ^= 0x01  # sample 4
    shard.write_bytes(bytes(data))
    w = Cache.open(path, mode="r+").feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    w.fail(6, "retried and failed again")  # unit 1 is rewritten, keeping samples 4, 5, 7
    with pytest.raises(MmkdError, match=r"c/1/0/0: a sample kept in this unit is corrupted.*"
                       "cache verify --mark-failed"):
        w.finish_unit(w.unit_of(6))
    w.fail(4, "corrupted")  # the bad sample itself redone: the rest is carried over intact
    w.finish_unit(w.unit_of(4))
    assert Cache.open(path).array("video", "test_ext", "failure")[4] == "corrupted"
