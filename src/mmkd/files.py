"""Reading the user's text files and writing outputs: content hashes, atomic writes, and the
failures a user can fix (a non-UTF-8 byte, a full disk) turned into one error that names the file.

Why here: a bare UnicodeDecodeError names neither the file nor the line, and an OSError from
`write()` names no file at all. An atomic write goes to a hidden temporary file next to the
target and is renamed over it, so a reader (or a resumed run after a kill) sees either the old
file or the whole new one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mmkd.errors import MmkdError


class DiskFullError(MmkdError):
    """No space left while writing `path`; the unfinished file was removed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"cannot write {path}: no space left on device; free space and re-run "
                         "the same command: it resumes where it stopped")


def not_utf8(path: str | Path) -> MmkdError:
    """`file:line: not UTF-8 ...` for the first line of `path` that does not decode."""
    path = Path(path)
    for line_no, line in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return MmkdError(f"{path}:{line_no}: not UTF-8 (byte 0x{line[exc.start]:02x} at "
                             f"column {exc.start + 1}); save the file as UTF-8")
    return MmkdError(f"{path}: not UTF-8; save the file as UTF-8")


def read_text(path: str | Path) -> str:
    """The file's text as UTF-8 (a leading BOM is dropped)."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise not_utf8(path) from None


@contextmanager
def published(final: Path, tmp: Path) -> Iterator[Path]:
    """Write `tmp` inside the block; on success rename it to `final`, on failure remove it.

    A full disk becomes DiskFullError naming `final`, so the user knows what to free and that
    nothing half-written is left."""
    try:
        yield tmp
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise DiskFullError(final) from exc
        raise
    os.replace(tmp, final)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tmp_for(path: Path) -> Path:
    """The hidden temporary name next to `path` that `published` renames into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str]) -> Path:
    """Tensors (moved to CPU, made contiguous) as safetensors, atomically. Serialised in memory
    and written by Python, so a full or read-only disk is an OSError naming the file
    (safetensors' own writer raises an opaque SafetensorError). Keep `metadata` to one entry
    where the file's sha256 is recorded: safetensors writes several in hash-map order, so the
    bytes would differ between identical writes."""
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    with published(path, tmp_for(path)) as tmp:
        tmp.write_bytes(data)
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    with published(path, tmp_for(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
