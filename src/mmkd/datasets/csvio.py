"""Strict readers for annotation tables: every bad value is reported as `file:line: column`.

The official files are large and hand-made; a builder that fails with a bare `ValueError` on
row 40,000 is useless. Each parser here takes a `Cell` (where the value came from) so its error
names the file, the physical line, the column and the fix.
"""

from __future__ import annotations

import ast
import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mmkd.errors import MmkdError
from mmkd.files import not_utf8

_TIMESTAMP = re.compile(r"^(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)$")


@dataclass(frozen=True)
class Cell:
    """One value of a table and where it came from."""

    path: Path
    line: int
    column: str
    value: str

    def error(self, problem: str, fix: str) -> MmkdError:
        return MmkdError(f"{self.path}:{self.line}: column {self.column!r}: {problem}; {fix}")


@dataclass
class Row:
    """One record of a CSV file: its physical line number and its cells by column name."""

    path: Path
    line: int
    values: dict[str, str]

    def cell(self, column: str) -> Cell:
        return Cell(self.path, self.line, column, (self.values.get(column) or "").strip())

    def get(self, column: str) -> str:
        return (self.values.get(column) or "").strip()


def require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise MmkdError(f"{path}: {what} not found; {fix}")
    return path


def read_csv(path: str | Path, required: list[str]) -> tuple[list[str], Iterator[Row]]:
    """Header and rows of a CSV file; a missing required column stops at line 1 with the fix."""
    path = Path(path)
    fh = open(path, newline="", encoding="utf-8-sig")
    reader = csv.DictReader(fh)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except UnicodeDecodeError:
        fh.close()
        raise not_utf8(path) from None
    if not header:
        fh.close()
        raise MmkdError(f"{path}:1: the file is empty; expected a header with columns "
                        f"{', '.join(required)}")
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise MmkdError(f"{path}:1: column {missing[0]!r} is missing (header has "
                        f"{', '.join(header)}); add it: the file needs {', '.join(required)}")

    def rows() -> Iterator[Row]:
        with fh:
            try:
                for values in reader:
                    line = reader.line_num  # the physical line the record ends on (1 = header)
                    if None in values:
                        raise MmkdError(f"{path}:{line}: {len(header) + len(values[None])} values "
                                        f"for {len(header)} columns; quote values that contain "
                                        "commas")
                    yield Row(path, line, values)
            except UnicodeDecodeError:
                raise not_utf8(path) from None

    return header, rows()


def parse_timestamp(cell: Cell) -> float:
    """`HH:MM:SS.ss` (EPIC) → seconds."""
    m = _TIMESTAMP.match(cell.value)
    if not m:
        raise cell.error(f"{cell.value!r} is not a HH:MM:SS.ss timestamp",
                         "write it like 00:01:02.35")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def parse_seconds(cell: Cell) -> float:
    """Seconds as a number (`62.35`) or as `HH:MM:SS.ss`."""
    if ":" in cell.value:
        return parse_timestamp(cell)
    try:
        value = float(cell.value)
    except ValueError:
        raise cell.error(f"{cell.value!r} is not a time", "write seconds (62.35) or "
                         "HH:MM:SS.ss (00:01:02.35)") from None
    if not math.isfinite(value) or value < 0:
        raise cell.error(f"{cell.value!r} is not a time ≥ 0", "write seconds ≥ 0")
    return value


def parse_int(cell: Cell, lo: int | None = None, hi: int | None = None, what: str = "value",
              fix: str = "") -> int:
    """An integer, optionally within [lo, hi]."""
    try:
        value = int(cell.value)
    except ValueError:
        raise cell.error(f"{cell.value!r} is not an integer {what}",
                         fix or "write a whole number") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f"≥ {lo}"
        raise cell.error(f"{what} {value} is outside {span}", fix or f"use a value in {span}")
    return value


def parse_float(cell: Cell, what: str = "number") -> float:
    try:
        value = float(cell.value)
    except ValueError:
        raise cell.error(f"{cell.value!r} is not a {what}", "write a decimal number") from None
    if not math.isfinite(value):
        raise cell.error(f"{cell.value!r} is not a finite {what}", "write a decimal number")
    return value


def parse_list(cell: Cell) -> list:
    """A stringified Python list, as in EPIC's `all_nouns` / `instances` columns."""
    try:
        value = ast.literal_eval(cell.value)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list):
        raise cell.error(f"{cell.value[:60]!r} is not a list", "write it like ['plate', 'cup']")
    return value


def parse_bool(cell: Cell) -> bool:
    v = cell.value.lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise cell.error(f"{cell.value!r} is not a boolean", "write true or false")
