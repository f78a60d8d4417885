"""`mmkd cache info` and `mmkd cache verify`: what a cache holds, and whether all of it reads.

verify reads every shard file of every feature group whole and checks, per sample marked done:
the shard index checksum, the chunk's offset/size, the chunk's own crc32c, finite values, zero
padding past `n_tokens`. A truncated or corrupted shard names every sample it holds, so the
user knows exactly what to re-extract (`mmkd cache verify` prints the command).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from mmkd.cache.shard_format import EMPTY, ShardLayout
from mmkd.cache.store import Cache

CORRUPT_REASON = "corrupted in the cache (found by mmkd cache verify); extract it again"


@dataclass
class GroupInfo:
    modality: str
    extractor: str
    n: int
    done: int
    present: int
    failures: int
    theta: int
    dim: int
    bytes_on_disk: int
    files: int
    provenance: dict[str, Any]


@dataclass
class CacheInfo:
    path: Path
    n: int
    heads: dict[str, int]
    splits: dict[str, int]
    manifest_hash: str
    shard_size: int
    groups: list[GroupInfo]
    teachers: list[str]
    bytes_on_disk: int
    files: int


def _disk_usage(path: Path) -> tuple[int, int]:
    """(bytes allocated, number of files) under `path`."""
    total, files = 0, 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_blocks * 512
            files += 1
    return total, files


def cache_info(cache: Cache) -> CacheInfo:
    groups = []
    for mod, ext in cache.features():
        done = np.asarray(cache.array(mod, ext, "done")[:], dtype=bool)
        present = np.asarray(cache.array(mod, ext, "present")[:], dtype=bool) & done
        failure = np.array(cache.array(mod, ext, "failure")[:].tolist(), dtype=str)
        prov = cache.feature_provenance(mod, ext)
        size, files = _disk_usage(cache.group_path(mod, ext))
        groups.append(GroupInfo(mod, ext, cache.n, int(done.sum()), int(present.sum()),
                                int((failure != "").sum()), prov["theta"], prov["dim"], size,
                                files, prov))
    splits, counts = np.unique(cache.splits, return_counts=True)
    size, files = _disk_usage(cache.path)
    return CacheInfo(cache.path, cache.n, cache.heads,
                     {str(s): int(c) for s, c in zip(splits, counts, strict=True)},
                     cache.manifest_hash, cache.shard_size, groups, cache.teachers(), size, files)


@dataclass
class Problem:
    group: str  # "video/swin3d_b" or "teachers/<id>"
    where: str  # the file, relative to the store
    what: str
    sample_ids: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    checked: int = 0  # samples read and checked
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_samples(self) -> dict[str, list[str]]:
        """group -> sample ids to extract (or train) again."""
        out: dict[str, list[str]] = {}
        for p in self.problems:
            if p.sample_ids:
                out.setdefault(p.group, []).extend(p.sample_ids)
        return out


def mark_failed(cache: Cache, report: VerifyReport) -> dict[str, int]:
    """Store every bad sample of `report` as failed (zero tokens, present=False, the reason in the
    failures table) so that `mmkd extract --retry-failed` extracts it again. Each touched unit is
    rewritten whole, as extraction does: run it while no extraction writes these groups."""
    row = {sid: i for i, sid in enumerate(cache.sample_ids)}
    marked: dict[str, int] = {}
    for group, ids in report.bad_samples().items():
        if group.startswith("teachers/"):  # logits are retrained, not re-extracted
            continue
        mod, ext = group.split("/")
        prov = cache.feature_provenance(mod, ext)
        writer = cache.feature_writer(mod, ext, prov["theta"], prov["dim"], prov)
        bad = sorted({row[sid] for sid in ids})
        for i in bad:
            writer.fail(i, CORRUPT_REASON)
        for unit in {writer.unit_of(i) for i in bad}:
            writer.finish_unit(unit)
        marked[group] = len(bad)
    return marked


def verify(cache: Cache, progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Check every done sample of every feature group and every teacher's logits and
    features."""
    report = VerifyReport()
    for mod, ext in cache.features():
        _verify_group(cache, mod, ext, report, progress)
    for teacher in cache.teachers():
        outputs = [("logits", h) for h in cache.heads] + \
            [(kind, m) for kind in ("features", "kv")
             for m in cache.teacher_feature_modalities(teacher, kind)]
        for kind, name in outputs:
            where = f"teachers/{teacher}/{kind}/{name}"
            if not (cache.path / where / "zarr.json").exists():
                continue
            try:
                values = cache.teacher_logits(teacher, name) if kind == "logits" \
                    else cache.teacher_features(teacher, name, kind)
            except Exception as exc:  # any decode failure is a finding, not a crash
                report.problems.append(Problem(f"teachers/{teacher}", where,
                                               f"unreadable ({exc})"))
                continue
            if not np.isfinite(values).all():
                rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
                report.problems.append(Problem(f"teachers/{teacher}", where,
                                               f"non-finite {kind}",
                                               [cache.sample_ids[i] for i in rows]))
    return report


def _verify_group(cache: Cache, mod: str, ext: str, report: VerifyReport,
                  progress: Callable[[int], None] | None) -> None:
    group = cache.group_path(mod, ext)
    lay = ShardLayout.from_metadata(group / "tokens" / "zarr.json")
    done = np.asarray(cache.array(mod, ext, "done")[:], dtype=bool)
    present = np.asarray(cache.array(mod, ext, "present")[:], dtype=bool)
    n_tokens = np.asarray(cache.array(mod, ext, "n_tokens")[:], dtype=np.int64)
    for stale in group.rglob("*.partial"):  # harmless; removed when its unit is redone
        report.warnings.append(f"{stale.relative_to(cache.path)}: temporary file left by a "
                               "killed writer")
    for shard in range(-(-cache.n // lay.shard_size)):
        start = shard * lay.shard_size
        rows = np.arange(start, min(cache.n, start + lay.shard_size))
        want = rows[done[rows] & present[rows]]
        if want.size == 0:
            continue
        path = group / "tokens" / "c" / str(shard) / "0" / "0"
        where = f"{mod}/{ext}/tokens/c/{shard}/0/0"
        ids = [cache.sample_ids[i] for i in want]
        data = path.read_bytes() if path.exists() else None
        problem = _shard_problem(data, lay)
        if problem:
            report.problems.append(Problem(f"{mod}/{ext}", where, problem, ids))
        else:
            _verify_chunks(cache, data, lay, want, start, n_tokens, where, report)
        report.checked += want.size
        if progress:
            progress(int(want.size))


def _shard_problem(data: bytes | None, lay: ShardLayout) -> str | None:
    if data is None:
        return "shard file missing"
    if len(data) < lay.index_nbytes:
        return f"truncated ({len(data)} bytes, shorter than its index)"
    index = data[-lay.index_nbytes:] if lay.index_at_end else data[:lay.index_nbytes]
    if google_crc32c.value(index[:-4]) != int.from_bytes(index[-4:], "little"):
        return "shard index checksum mismatch (truncated or corrupted file)"
    return None


def _verify_chunks(cache: Cache, data: bytes, lay: ShardLayout, want: np.ndarray, start: int,
                   n_tokens: np.ndarray, where: str, report: VerifyReport) -> None:
    index = data[-lay.index_nbytes:] if lay.index_at_end else data[:lay.index_nbytes]
    pairs = np.frombuffer(index[:-4], dtype="<u8").reshape(lay.shard_size, 2)
    bad: dict[str, list[str]] = {}
    for i in want.tolist():
        off, nbytes = (int(x) for x in pairs[i - start])
        what = None
        if pairs[i - start, 0] == EMPTY:
            what = "marked done but absent from its shard"
        elif nbytes != lay.stored_nbytes or off + nbytes > len(data):
            what = f"chunk of {nbytes} bytes at {off}: wrong shape or past the end of the file"
        else:
            chunk = data[off:off + nbytes]
            payload = chunk[:lay.chunk_nbytes]
            tokens_KD = np.frombuffer(payload, dtype="<f2").reshape(lay.theta, lay.dim)
            if lay.inner_crc and google_crc32c.value(payload) != int.from_bytes(chunk[-4:],
                                                                                  "little"):
                what = "chunk checksum mismatch (corrupted bytes)"
            elif not np.isfinite(tokens_KD).all():
                what = "non-finite values"
            elif not 0 <= n_tokens[i] <= lay.theta or tokens_KD[n_tokens[i]:].any():
                what = f"n_tokens={n_tokens[i]} does not match the zero padding"
        if what:
            bad.setdefault(what, []).append(cache.sample_ids[i])
    for what, ids in bad.items():
        report.problems.append(Problem(where.rsplit("/tokens/", 1)[0], where, what, ids))
