"""The Something-Else box store: the JSON files converted once into one HDF5 file read per video.

The official box files are four JSON objects of about 1 GB each; `json.load` on one costs minutes
and several GB in every process that reads boxes. `index_boxes` streams them once (ijson, C
backend) into one HDF5 file; a decode worker then reads only the videos of its batch.

Layout (format `mmkd-boxes`, version 1):
    blobs               (bytes,) uint8   per video: zlib(JSON of its frames exactly as in the file)
    index/id            (V,) bytes       video ids, utf-8, sorted (binary search)
    index/offset        (V,) int64       where the video's blob starts in `blobs`
    index/nbytes        (V,) int32       its length
    index/n_frames      (V,) int32       annotated frames
    index/frame_stride  (V,) int32       most common gap between frame numbers
    index/source        (V,) int16       which input file it came from (attrs `sources`)
    attrs: format, version, sources (JSON: path, size, mtime_ns per input file), duplicates

A video in several inputs keeps the first one's frames (inputs in the order given). The store is
written under a temporary name and renamed into place, so readers never see a partial file; a
re-run whose inputs have the same paths, sizes and mtimes leaves the store as it is.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mmkd.datasets.boxes import BoxFrame, frame_stride, load_box_file, parse_video
from mmkd.datasets.manifest import Progress
from mmkd.errors import MmkdError

FORMAT, VERSION = "mmkd-boxes", 1
STORE_NAME = "boxes.h5"  # default store file name, next to the manifest it serves
STORE_SUFFIXES = (".h5", ".hdf5")
_FLUSH_BYTES = 16 << 20  # compressed blobs buffered before one write


@dataclass(frozen=True)
class IndexReport:
    path: Path
    videos: int
    duplicates: int  # videos found again in a later input (first kept)
    json_bytes: int
    store_bytes: int
    seconds: float
    skipped: bool  # the store was already up to date with its inputs


def is_store(path: str | Path) -> bool:
    return Path(path).suffix.lower() in STORE_SUFFIXES


def index_boxes(sources: list[str | Path], out: str | Path,
                progress: Progress | None = None) -> IndexReport:
    """Convert Something-Else JSON files into one store at `out` (skipped when up to date).

    `progress(n)` is called with the number of JSON bytes read.
    """
    t0 = time.perf_counter()
    files = [Path(s).absolute() for s in sources]
    if not files:
        raise MmkdError("no box files given; pass the Something-Else JSON files")
    for f in files:
        if is_store(f):
            raise MmkdError(f"{f}: already a box store; pass the Something-Else JSON files to "
                            "index, or use the store as it is")
        if not f.is_file():
            raise MmkdError(f"{f}: box file not found; check the path")
    fingerprint = [{"path": str(f), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns}
                   for f in files]
    out = Path(out).absolute()
    if not is_store(out):
        raise MmkdError(f"{out}: name the box store *.h5 (e.g. {out.with_suffix('.h5').name})")
    json_bytes = sum(fp["size"] for fp in fingerprint)
    if out.exists():
        info = _store_info(out)
        if info["version"] == VERSION and info["sources"] == fingerprint:
            return IndexReport(out, info["videos"], info["duplicates"], json_bytes,
                               out.stat().st_size, time.perf_counter() - t0, skipped=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        videos, duplicates = _build(files, fingerprint, tmp, progress)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return IndexReport(out, videos, duplicates, json_bytes, out.stat().st_size,
                       time.perf_counter() - t0, skipped=False)


def _build(files: list[Path], fingerprint: list[dict], tmp: Path,
           progress: Progress | None) -> tuple[int, int]:
    import h5py

    ids: list[bytes] = []
    offsets, nbytes, n_frames, strides, source = [], [], [], [], []
    seen: set[bytes] = set()
    duplicates, written = 0, 0
    buf = bytearray()
    with h5py.File(tmp, "w") as h5:
        blobs = h5.create_dataset("blobs", shape=(0,), maxshape=(None,), dtype="u1",
                                  chunks=(1 << 18,))

        def flush() -> None:
            n = blobs.shape[0]
            blobs.resize((n + len(buf),))
            blobs[n:] = np.frombuffer(buf, np.uint8)
            buf.clear()

        for si, path in enumerate(files):
            found = 0
            for key, frames in _stream_videos(path, progress):
                found += 1
                kb = key.encode()
                if kb in seen:
                    duplicates += 1
                    continue
                seen.add(kb)
                parsed = parse_video(path, key, frames)  # a bad video stops the build here
                blob = zlib.compress(json.dumps(frames, separators=(",", ":")).encode(), 1)
                ids.append(kb)
                offsets.append(written)
                nbytes.append(len(blob))
                n_frames.append(len(parsed))
                strides.append(frame_stride(parsed))
                source.append(si)
                buf += blob
                written += len(blob)
                if len(buf) >= _FLUSH_BYTES:
                    flush()
            if not found:
                raise MmkdError(f"{path}: no videos in this box file (an empty JSON object); "
                                "pass the Something-Else annotation files")
        if buf:
            flush()
        id_arr = np.array(ids, dtype=bytes)
        order = np.argsort(id_arr, kind="stable")
        idx = h5.create_group("index")
        idx["id"] = id_arr[order]
        for name, values, dtype in (("offset", offsets, np.int64), ("nbytes", nbytes, np.int32),
                                    ("n_frames", n_frames, np.int32),
                                    ("frame_stride", strides, np.int32),
                                    ("source", source, np.int16)):
            idx[name] = np.asarray(values, dtype)[order]
        h5.attrs.update({"format": FORMAT, "version": VERSION, "videos": len(ids),
                         "duplicates": duplicates, "sources": json.dumps(fingerprint)})
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    return len(ids), duplicates


class _CountingReader:
    """A binary file that reports the bytes read (progress, and where a parse error happened)."""

    def __init__(self, fh, progress: Progress | None):
        self.fh, self.progress, self.pos = fh, progress, 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.pos += len(data)
        if self.progress is not None and data:
            self.progress(len(data))
        return data


def _stream_videos(path: Path, progress: Progress | None) -> Iterator[tuple[str, list]]:
    """(video id, frames) of one box file, one video in memory at a time."""
    import ijson

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(256).lstrip()
        if not head.startswith(b"{"):
            raise MmkdError(f"{path}: expected a JSON object {{video_id: list of frames}} (the "
                            f"Something-Else layout) but it starts with {head[:24]!r}; pass the "
                            "Something-Else box files")
        fh.seek(0)
        reader = _CountingReader(fh, progress)
        try:
            yield from ijson.kvitems(reader, "", use_float=True)
        except ijson.JSONError as exc:
            msg = str(exc).splitlines()[0]
            raise MmkdError(f"{path}: not valid JSON near byte {reader.pos:,} of {size:,} "
                            f"({msg}); the file is truncated or damaged: re-download it") from None


def _attrs(h5, path: Path) -> dict:
    """The store's attributes; refuses a file that is not a box store."""
    attrs = h5.attrs
    if attrs.get("format") != FORMAT or "index" not in h5 or "blobs" not in h5:
        raise MmkdError(f"{path}: not a box store; build one with `mmkd boxes index` or pass "
                        "the Something-Else JSON files")
    return {"version": int(attrs["version"]), "videos": int(attrs["videos"]),
            "duplicates": int(attrs["duplicates"]), "sources": json.loads(attrs["sources"])}


def _store_info(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return _attrs(h5, path)
    except OSError as exc:
        raise MmkdError(f"{path}: not a readable box store ({exc}); delete it and index the "
                        "JSON files again") from None


class BoxStore:
    """Reads one video at a time. The HDF5 file is opened on first use in each process (after a
    fork the child opens its own handle; pickling keeps only the path), so DataLoader workers
    started by fork or forkserver share nothing but the file on disk. A store rebuilt in place
    (a new file renamed over the old one) is reopened on the next read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None  # (pid, inode, mtime_ns) of the open handle

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def _open(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            raise MmkdError(f"{self.path}: box store not found; build it with `mmkd boxes "
                            "index` or rebuild the manifest with --boxes") from None
        stamp = (os.getpid(), st.st_ino, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        import h5py

        try:
            h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise MmkdError(f"{self.path}: not a readable box store ({exc}); delete it and "
                            "index the JSON files again") from None
        self.info = _attrs(h5, self.path)
        if self.info["version"] != VERSION:
            h5.close()
            raise MmkdError(f"{self.path}: box store version {self.info['version']} is not "
                            f"{VERSION}; rebuild it with `mmkd boxes index`")
        idx = h5["index"]
        self._ids, self._offset, self._nbytes = idx["id"][:], idx["offset"][:], idx["nbytes"][:]
        self._h5, self._blobs, self._stamp = h5, h5["blobs"], stamp

    def keys(self) -> list[str]:
        self._open()
        return [k.decode() for k in self._ids.tolist()]

    def raw(self, key: str) -> list | None:
        """The video's frames exactly as in the JSON file; None when the store has none."""
        self._open()
        kb = key.encode()
        i = int(np.searchsorted(self._ids, kb))
        if i >= len(self._ids) or self._ids[i] != kb:
            return None
        start = int(self._offset[i])
        blob = self._blobs[start:start + int(self._nbytes[i])]
        return json.loads(zlib.decompress(blob.tobytes()))

    def get(self, key: str) -> tuple[BoxFrame, ...]:
        """The video's annotated frames, sorted by number; () when the store has none."""
        frames = self.raw(key)
        return () if frames is None else parse_video(self.path, key, frames)

    def summary(self) -> dict[str, tuple[int, int]]:
        """video id -> (annotated frames, frame stride), without reading any frames."""
        self._open()
        idx = self._h5["index"]
        return dict(zip(self.keys(), zip(idx["n_frames"][:].tolist(),
                                          idx["frame_stride"][:].tolist(), strict=True),
                        strict=True))


@lru_cache(maxsize=4)
def open_store(path: str) -> BoxStore:
    """One reader per store and process (it reopens itself in a forked child)."""
    return BoxStore(path)


def prepare_store(boxes: list[str | Path], store: str | Path,
                  progress: Progress | None = None) -> IndexReport:
    """The store a manifest points at: `boxes` itself when it is one store, else `store` indexed
    from the JSON files in `boxes` (skipped when up to date)."""
    paths = [Path(b).absolute() for b in boxes]
    given = [p for p in paths if is_store(p)]
    if not given:
        return index_boxes(paths, store, progress)
    if len(paths) > 1:
        raise MmkdError(f"{given[0]}: pass either one box store or the Something-Else JSON "
                        "files, not both")
    if not given[0].is_file():
        raise MmkdError(f"{given[0]}: box store not found; build it with `mmkd boxes index` or "
                        "pass the Something-Else JSON files")
    info = _store_info(given[0])
    return IndexReport(given[0], info["videos"], info["duplicates"],
                       sum(s["size"] for s in info["sources"]), given[0].stat().st_size, 0.0,
                       skipped=True)


def read_boxes(path: str | Path, key: str) -> tuple[BoxFrame, ...]:
    """The annotated frames of one video; an empty tuple when the file has none for it.

    `path` is a box store (`*.h5`, read one video at a time) or a JSON file (read whole once).
    """
    if is_store(path):
        return open_store(str(Path(path).absolute())).get(key)
    return load_box_file(str(Path(path).absolute())).get(key, ())
