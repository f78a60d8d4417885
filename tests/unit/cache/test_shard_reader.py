"""The direct shard reader against zarr-python (the reference) on the same store."""

import numpy as np
import pytest
import torch

from helpers.cache_fill import DIM, PROVENANCE, THETA, fill_unit, make_cache
from mmkd.cache import Cache, shard_reader
from mmkd.cache.shard_format import aligned_empty
from mmkd.cache.shard_reader import ShardChecksumError, ShardIndexError
from mmkd.errors import MmkdError


@pytest.fixture
def filled(tmp_path):
    path = tmp_path / "cache.zarr"
    w = make_cache(path, n=23, shard_size=4).feature_writer(
        "video", "test_ext", THETA, DIM, PROVENANCE)
    for u in w.units():
        fill_unit(str(path), u.id)
    return Cache.open(path)


def test_aligned_empty_is_page_plus_64():
    a = aligned_empty((3, 5, 7), np.float16)
    assert a.ctypes.data % 4096 == 64 and a.shape == (3, 5, 7) and a.flags.c_contiguous


@pytest.mark.parametrize("in_ram", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_read_matches_zarr_python(filled, rng, in_ram, dtype):
    ref = filled.array("video", "test_ext", "tokens")
    present_ref = filled.array("video", "test_ext", "present")[:]
    r = filled.feature_reader("video", "test_ext", in_ram=in_ram)
    assert (r.theta, r.dim) == (THETA, DIM) and r.provenance["weights_sha256"] == "ab" * 32
    for _ in range(5):
        idx = rng.choice(filled.n, size=7, replace=False)
        out = torch.full((7, THETA, DIM), 123.0, dtype=dtype)
        present = r.read(idx, out)
        np.testing.assert_array_equal(present, present_ref[idx])
        np.testing.assert_array_equal(out.numpy(), ref.oindex[idx].astype(out.numpy().dtype))
        assert not out[~torch.from_numpy(present)].any()  # absent and failed samples are zeros
    assert r.read(np.array([], dtype=np.int64), torch.empty(0, THETA, DIM)).shape == (0,)


def test_read_refuses_wrong_out_and_unfinished_samples(filled, tmp_path):
    r = filled.feature_reader("video", "test_ext")
    with pytest.raises(MmkdError, match="expected a contiguous"):
        r.read(np.array([0, 1]), torch.empty(2, THETA + 1, DIM))
    c = make_cache(tmp_path / "half.zarr", n=23, shard_size=4)
    c.feature_writer("video", "test_ext", THETA, DIM, PROVENANCE)
    fill_unit(str(c.path), 0)
    half = c.feature_reader("video", "test_ext")
    half.read(np.array([0, 3]), torch.empty(2, THETA, DIM))
    with pytest.raises(MmkdError, match="not extracted yet.*s004.*mmkd extract --modality video"):
        half.read(np.array([0, 4]), torch.empty(2, THETA, DIM))


def test_truncated_shard_is_reported(filled):
    shard = filled.path / "video" / "test_ext" / "tokens" / "c" / "1" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-10])
    r = Cache.open(filled.path).feature_reader("video", "test_ext")
    r.read(np.array([0]), torch.empty(1, THETA, DIM))
    with pytest.raises(ShardIndexError, match=r"c/1/0/0.*checksum"):
        r.read(np.array([4]), torch.empty(1, THETA, DIM))


def flip_bit(cache: Cache, index: int, shard_size: int = 4) -> None:
    """One flipped bit inside sample `index`'s stored tokens (still a finite float16)."""
    shard, inner = divmod(index, shard_size)
    path = cache.path / "video" / "test_ext" / "tokens" / "c" / str(shard) / "0" / "0"
    data = bytearray(path.read_bytes())
    pairs = np.frombuffer(bytes(data[-(shard_size * 16 + 4):-4]), dtype="<u8").reshape(-1, 2)
    data[int(pairs[inner, 0]) + 10] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_flipped_bit_is_refused_naming_the_samples(filled, dtype):
    flip_bit(filled, 4)
    flip_bit(filled, 9)
    r = Cache.open(filled.path).feature_reader("video", "test_ext")
    ok = torch.empty(3, THETA, DIM, dtype=dtype)
    r.read(np.array([0, 5, 8]), ok)  # intact samples of the same shards still read
    ref = filled.array("video", "test_ext", "tokens")
    np.testing.assert_array_equal(ok.numpy(), ref.oindex[[0, 5, 8]].astype(ok.numpy().dtype))
    with pytest.raises(ShardChecksumError, match=r"2 samples fail their crc32c checksum "
                       r"\(s004, s009\) in .*c/1/0/0, .*c/2/0/0.*mmkd cache verify.*"
                       r"mmkd extract --modality video --extractor test_ext"):
        r.read(np.array([2, 4, 9]), torch.empty(3, THETA, DIM, dtype=dtype))
    with pytest.raises(ShardChecksumError, match="s004"):  # a failed chunk is checked again
        r.read(np.array([4]), torch.empty(1, THETA, DIM, dtype=dtype))
    with pytest.raises(ShardChecksumError, match="s004"):
        filled.feature_reader("video", "test_ext", in_ram=True)


def test_each_chunk_is_checked_once_per_reader(filled, monkeypatch):
    calls = []
    crc = shard_reader.google_crc32c.value
    monkeypatch.setattr(shard_reader.google_crc32c, "value", lambda b: calls.append(1) or crc(b))
    r = filled.feature_reader("video", "test_ext")
    out = torch.empty(2, THETA, DIM)
    r.read(np.array([4, 6]), out)
    first = len(calls)  # the shard index + two chunks
    r.read(np.array([4, 6]), out)
    assert first == 3 and len(calls) == first
