"""Raw flow formats: Middlebury .flo bytes and round trips."""

import numpy as np
import pytest

from mmkd.errors import MmkdError
from mmkd.flow import io


def test_flo_header_and_roundtrip(tmp_path, rng):
    flow = rng.normal(0, 5, (7, 11, 2)).astype(np.float32)
    path = tmp_path / "a.flo"
    io.write_flo(path, flow)
    raw = path.read_bytes()
    assert raw[:4] == b"PIEH"
    assert np.frombuffer(raw[4:12], "<i4").tolist() == [11, 7]  # width, then height
    assert len(raw) == 12 + 7 * 11 * 2 * 4
    assert np.frombuffer(raw[12:20], "<f4").tolist() == flow[0, 0].tolist()  # u, v interleaved
    np.testing.assert_array_equal(io.read_flo(path), flow)


def test_flo_rejects_other_files(tmp_path):
    bad = tmp_path / "b.flo"
    bad.write_bytes(b"JUNKJUNKJUNK")
    with pytest.raises(MmkdError, match="not a .flo"):
        io.read_flo(bad)
    short = tmp_path / "c.flo"
    io.write_flo(short, np.zeros((4, 4, 2), np.float32))
    short.write_bytes(short.read_bytes()[:-8])
    with pytest.raises(MmkdError, match="truncated"):
        io.read_flo(short)


def test_raw_writers_next_to_jpegs(tmp_path, rng):
    flow = rng.normal(0, 3, (5, 6, 2)).astype(np.float32)
    for fmt in io.RAW_FORMATS:
        d = tmp_path / fmt
        io.make_video_dirs(d, fmt)
        io.write_flow_jpegs(d, 3, flow)
        io.write_raw(d, 3, flow, fmt)
        assert (d / "u" / "frame_0000000003.jpg").is_file()
        assert (d / "v" / "frame_0000000003.jpg").is_file()
    np.testing.assert_array_equal(np.load(tmp_path / "npy" / "raw" / "frame_0000000003.npy"), flow)
    np.testing.assert_array_equal(io.read_flo(tmp_path / "flo" / "raw" / "frame_0000000003.flo"),
                                  flow)
