"""Result tables written three ways: Markdown (to read), CSV (to plot/diff), JSON (to reload).

Every protocol returns `Table`s; this module is the only place that formats them, so the three
files of a table always hold the same numbers. A `MeanStd` cell (seeds) becomes "m ± s" in
Markdown, two columns `<col>_mean`/`<col>_std` in CSV and {"mean", "std"} in JSON.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MeanStd:
    mean: float
    std: float
    n: int = 1


@dataclass
class Table:
    """One result table; `rows` map column name -> cell (str, int, float, MeanStd or None)."""

    name: str  # file stem: reports/<name>.{md,csv,json}
    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    digits: int = 2


def _md_cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, MeanStd):
        return f"{value.mean:.{digits}f} ± {value.std:.{digits}f}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def to_markdown(table: Table, heading_level: int = 2) -> str:
    lines = [f"{'#' * heading_level} {table.title}", ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(row.get(c), table.digits) for c in table.columns) + " |")
    if table.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in table.notes)
    return "\n".join(lines) + "\n"


def _csv_columns(table: Table) -> list[str]:
    out = []
    for col in table.columns:
        if any(isinstance(r.get(col), MeanStd) for r in table.rows):
            out += [f"{col}_mean", f"{col}_std"]
        else:
            out.append(col)
    return out


def _csv_row(table: Table, row: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for col in table.columns:
        value = row.get(col)
        if any(isinstance(r.get(col), MeanStd) for r in table.rows):
            out += [value.mean, value.std] if isinstance(value, MeanStd) else ["", ""]
        else:
            out.append("" if value is None else value)
    return out


def _json_cell(value: Any) -> Any:
    if isinstance(value, MeanStd):
        return {"mean": value.mean, "std": value.std, "n": value.n}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def to_json(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "title": table.title,
        "columns": table.columns,
        "rows": [{c: _json_cell(r.get(c)) for c in table.columns} for r in table.rows],
        "notes": table.notes,
    }


def write_table(table: Table, out_dir: str | Path) -> dict[str, Path]:
    """Write `<name>.md`, `<name>.csv` and `<name>.json`; returns the three paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {ext: out / f"{table.name}.{ext}" for ext in ("md", "csv", "json")}
    paths["md"].write_text(to_markdown(table, heading_level=1))
    with open(paths["csv"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(_csv_columns(table))
        for row in table.rows:
            writer.writerow(_csv_row(table, row))
    paths["json"].write_text(json.dumps(to_json(table), indent=2) + "\n")
    return paths


def read_table(path: str | Path) -> Table:
    """Reload a table written by `write_table` (from its JSON), e.g. to rebuild the report."""
    data = json.loads(Path(path).read_text())
    rows = [{c: MeanStd(v["mean"], v["std"], v.get("n", 1)) if isinstance(v, dict) else v
             for c, v in r.items()} for r in data["rows"]]
    return Table(name=data["name"], title=data["title"], columns=data["columns"], rows=rows,
                 notes=data.get("notes", []))


def write_report(out_dir: str | Path, title: str, tables: list[Table], plots: list[Path],
                 preamble: list[str] | None = None) -> Path:
    """`report.md`: every table plus the plots (relative links), with each table also on disk."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", ""]
    if preamble:
        parts += [*preamble, ""]
    for table in tables:
        write_table(table, out)
        parts.append(to_markdown(table))
        parts.append(f"Files: `{table.name}.md`, `{table.name}.csv`, `{table.name}.json`\n")
    for plot in plots:
        rel = Path(plot).relative_to(out) if Path(plot).is_relative_to(out) else Path(plot)
        parts.append(f"![{rel.stem}]({rel.as_posix()})\n")
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path
