"""The box store: streamed conversion (round trip = json.load), skip/rebuild, lazy per-process
reads (fork and forkserver workers), and one clear error per bad input."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mmkd.datasets import box_store
from mmkd.datasets.box_store import BoxStore, index_boxes, open_store, prepare_store, read_boxes
from mmkd.datasets.boxes import load_box_file
from mmkd.errors import MmkdError

EXCERPT = Path(__file__).parents[2] / "fixtures" / "something_else_excerpt.json"  # real file's first frames


def _frame(rng: np.random.Generator, vid: str, n: int) -> dict:
    labels = [{"box2d": {"x1": float(rng.uniform(0, 100)), "y1": int(rng.integers(0, 50)),
                         "x2": float(rng.uniform(100, 427)), "y2": 239.5},
               "gt_annotation": f"object {j}", "category": ["mug", "tasse à café", "lid"][j],
               "standard_category": f"{j:04d}"} for j in range(int(rng.integers(0, 3)))]
    labels.append({"box2d": {"x1": 0, "y1": 1e-3, "x2": 1.5e2, "y2": 200.25},
                   "gt_annotation": "object hand", "category": "hand", "standard_category": "hand"})
    return {"url": f"https://example.org/{vid}/{n:04d}.jpg", "name": f"{vid}/{n:04d}.jpg",
            "nr_instances": len(labels), "gt_placeholders": ["mug"], "labels": labels}


def _box_file(path: Path, videos: dict[str, list[int]], seed: int = 0) -> Path:
    """The official layout: {video_id: [frame, ...]}, frames in file order (not sorted)."""
    rng = np.random.default_rng(seed)
    path.write_text(json.dumps({vid: [_frame(rng, vid, n) for n in numbers]
                                for vid, numbers in videos.items()}, indent=1))
    return path


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    return [_box_file(tmp_path / "part1.json", {"7": [1, 2, 3, 4], "40": [3, 1, 5, 7, 9],
                                                "1000": [2]}),
            _box_file(tmp_path / "part2.json", {"40": [1], "8": [1, 3, 5, 7], "9": []}, seed=1),
            EXCERPT]


def test_round_trip_equals_json_load(tmp_path, parts):
    report = index_boxes(parts, tmp_path / "boxes.h5")
    expected: dict[str, list] = {}
    for p in parts:  # a video in several files keeps the first file's frames
        for key, frames in json.loads(p.read_text()).items():
            expected.setdefault(key, frames)
    store = BoxStore(report.path)
    assert (report.videos, report.duplicates, report.skipped) == (len(expected), 1, False)
    assert sorted(store.keys()) == sorted(expected) == store.keys()
    for key, frames in expected.items():
        assert store.raw(key) == frames  # every field, value and type, in file order
        source = next(p for p in parts if key in json.loads(p.read_text()))
        assert store.get(key) == load_box_file(str(source))[key] == read_boxes(report.path, key)
    assert store.raw("41") is None and store.get("41") == ()
    summary = store.summary()
    assert summary["40"] == (5, 2) and summary["8"] == (4, 2) and summary["9"] == (0, 1)
    assert summary["13201"] == (3, 1)


def test_rerun_skips_and_changed_input_rebuilds(tmp_path, parts):
    out = tmp_path / "boxes.h5"
    first = index_boxes(parts, out)
    inode = out.stat().st_ino
    again = index_boxes(parts, out)
    assert again.skipped and out.stat().st_ino == inode and again.videos == first.videos
    _box_file(parts[1], {"8": [1, 2]}, seed=2)  # new content: size and mtime change
    rebuilt = index_boxes(parts, out)
    assert not rebuilt.skipped and rebuilt.videos == first.videos - 1  # "9" is gone
    assert BoxStore(out).summary()["8"] == (2, 1)
    reader = open_store(str(out))
    assert reader.raw("8") == json.loads(parts[1].read_text())["8"]
    _box_file(parts[1], {"8": [4, 5, 6]}, seed=3)
    index_boxes(parts, out)  # rebuilt under the open reader: it reads the new file
    assert reader.raw("8") == json.loads(parts[1].read_text())["8"] and reader.get("8")[0].frame == 4
    assert index_boxes(parts[:1], out).videos == 3  # other inputs: rebuilt, not skipped
    assert reader.raw("8") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boxes.h5", "part1.json", "part2.json"]
    given = prepare_store([out], tmp_path / "unused.h5")
    assert given.path == out and given.skipped and not (tmp_path / "unused.h5").exists()


def _read_in_worker(args: tuple[str, list[str]]) -> tuple[int, int | None, int | None, list]:
    path, keys = args
    store = open_store(path)  # under fork: the parent's cached reader, handle open in the parent
    opened_by = store._stamp and store._stamp[0]
    frames = [store.raw(k) for k in keys]
    return os.getpid(), opened_by, store._stamp[0], frames


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_workers_open_the_store_lazily(tmp_path, parts, method):
    path = str(index_boxes(parts, tmp_path / "boxes.h5").path)
    store = open_store(path)
    keys = store.keys()
    expected = [store.raw(k) for k in keys]  # the parent holds an open handle
    assert pickle.loads(pickle.dumps(store)).__dict__ == {"path": store.path, "_stamp": None}
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map(_read_in_worker, [(path, keys), (path, keys[::-1])])
    for pid, opened_by, now, _ in results:
        assert pid != os.getpid() and now == pid  # each worker reads through its own handle
        assert opened_by == (os.getpid() if method == "fork" else None)
    assert results[0][3] == expected and results[1][3] == expected[::-1]
    assert [store.raw(k) for k in keys] == expected  # the parent's handle still works


def _truncated(path: Path) -> Path:
    text = _box_file(path, {"7": [1, 2], "8": [1]}).read_text()
    path.write_text(text[: len(text) // 2])
    return path


@pytest.mark.parametrize("write, problem", [
    (_truncated, r"not valid JSON near byte [\d,]+ of [\d,]+ \(parse error: premature EOF\); "
                 "the file is truncated or damaged: re-download it"),
    (lambda p: p.write_text('[{"name": "1/0001.jpg"}]') and p,
     r"expected a JSON object \{video_id: list of frames\} \(the Something-Else layout\) but it "
     r"starts with b'\[\{\"name\""),
    (lambda p: p.write_text('{"Putting something": "0"}') and p,
     r"video 'Putting something': expected a list of frames \(the Something-Else layout is"),
    (lambda p: p.write_text('{"3": [{"name": "first.jpg", "labels": []}]}') and p,
     r"video '3', frame 0: field 'name' 'first.jpg' has no frame number"),
    (lambda p: p.write_text(' {}\n') and p, r"no videos in this box file"),
])
def test_bad_input_names_the_file_and_leaves_nothing(tmp_path, write, problem):
    src = write(tmp_path / "bad.json")
    with pytest.raises(MmkdError, match=problem) as exc:
        index_boxes([src], tmp_path / "out" / "boxes.h5")
    assert str(exc.value).startswith(str(src))
    assert list((tmp_path / "out").iterdir()) == []  # no store, no partial file


def test_refuses_other_files_as_a_store(tmp_path, parts):
    with pytest.raises(MmkdError, match=r"boxes.json: name the box store \*.h5"):
        index_boxes(parts, tmp_path / "boxes.json")
    other = tmp_path / "audio.h5"
    import h5py

    with h5py.File(other, "w") as f:
        f["P01_01"] = np.zeros(3)
    with pytest.raises(MmkdError, match="audio.h5: not a box store; build one with"):
        index_boxes(parts, other)  # never overwrites a file that is not a store
    with pytest.raises(MmkdError, match="audio.h5: not a box store"):
        read_boxes(other, "7")
    with pytest.raises(MmkdError, match="pass either one box store or the Something-Else JSON"):
        prepare_store([other, parts[0]], tmp_path / "b.h5")
    with pytest.raises(MmkdError, match="missing.h5: box store not found"):
        BoxStore(tmp_path / "missing.h5").keys()
    assert box_store.is_store(tmp_path / "x.HDF5") and not box_store.is_store(parts[0])
