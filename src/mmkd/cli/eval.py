"""`mmkd eval`: the paper's evaluation protocols on a run's trained models → RUN_DIR/reports/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from mmkd import config as C
from mmkd.cli import ui
from mmkd.errors import MmkdError
from mmkd.rundir import Run, find_run

ALL = C.PROTOCOLS


def parse_protocols(values: list[str] | None, default: list[str]) -> list[str]:
    """`--protocol a,b --protocol c` or `all`; validated against the known protocols."""
    items = [p.strip() for v in (values or default) for p in v.split(",") if p.strip()]
    if "all" in items:
        return list(ALL)
    bad = [p for p in items if p not in ALL]
    if bad:
        raise MmkdError(f"--protocol {','.join(bad)}: use {', '.join(ALL)} or all")
    return [p for p in ALL if p in items]


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _subset(text: str, modalities: list[str]) -> tuple[str, ...]:
    from mmkd.subsets import parse_subset

    return parse_subset(text, modalities)


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def run_eval(run: Run, protocols: list[str], models: list[str] | None = None,
             split: str | None = None, device: str | None = None, batch_size: int = 64,
             efficiency_sizes: str = "paper", efficiency_devices: list[str] | None = None,
             ablations: list[str] | None = None, ablation_epochs: int | None = None,
             thetas: list[str] | None = None, token_modalities: list[str] | None = None,
             robustness_drop: str | None = None,
             compare: list[tuple[str, str, list[str]]] | None = None) -> Path:
    """Run the protocols with a progress bar per stage; returns the report path. `compare`:
    (A, B, subsets) whose difference is also tabled, from the same predictions."""
    import torch

    from mmkd.cache import Cache
    from mmkd.eval import ablations as AB
    from mmkd.eval import runner

    cfg = run.cfg
    split = split or cfg.eval.split
    device = _device(device)
    reports = run.reports_dir
    reports.mkdir(parents=True, exist_ok=True)
    tables, preamble = [], [f"Run: `{run.dir}`; evaluated split: `{split}`; device: {device}."]
    acc = [p for p in protocols if p in runner.ACCURACY_PROTOCOLS]
    if acc:
        cache = Cache.open(run.cache_path, mode="r")
        refs = runner.discover_models(run.dir, models)
        data = runner.split_data(cache, list(cfg.data.heads), split, run.manifest_dir)
        n_cond = len(data.indices) * sum(len(r.runs) for r in refs)
        with ui.progress_bar(f"eval {'+'.join(acc)} ({len(refs)} models)", total=n_cond,
                             unit="samples") as advance:
            evaluated = runner.evaluate_models(cache, refs, data, acc, cfg.eval.missing_rates,
                                               cfg.eval.seeds, device, batch_size, advance)
        dropped = (_robustness_drop(run, cache, refs, robustness_drop, device, batch_size)
                   if "subsets" in acc else None)
        new, _ = runner.accuracy_tables(evaluated, list(cfg.data.modalities), data, acc,
                                        cfg.eval.missing_rates, cfg.eval.seeds, reports, dropped)
        tables += new
        by_name = {e.name: e for e in evaluated}
        mods = list(cfg.data.modalities)
        for a, b, subsets in compare or []:
            if a in by_name and b in by_name:
                tables.append(runner.compare_table(
                    by_name[a], by_name[b], [_subset(s, mods) for s in subsets] or [tuple(mods)],
                    data.labels, split))
    if "efficiency" in protocols:
        devices = efficiency_devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        heads = None
        if efficiency_sizes == "run":
            heads = Cache.open(run.cache_path, mode="r").heads
        configs, what = runner.efficiency_configs(cfg, efficiency_sizes, devices, heads)
        with ui.progress_bar(f"efficiency ({efficiency_sizes} sizes)", total=len(configs),
                             unit="configs") as advance:
            new, _ = runner.efficiency_results(configs, what, reports, advance)
        tables += new
    if "ablations" in protocols:
        ctx = AB.AblationContext(run.dir, run.cache_path, cfg, split, device, ablation_epochs)
        which = ablations or ["tokens", "strategies"]
        if "tokens" in which:
            mods = token_modalities or ([m for m in ("video", "audio") if m in cfg.data.modalities]
                                        if {"video", "audio"} <= set(cfg.data.modalities)
                                        else list(cfg.data.modalities))
            with ui.progress_bar("ablation: token reduction", total=None,
                                 unit="models") as advance:
                tables.append(AB.run_token_ablation(ctx, mods, thetas or AB.PAPER_THETAS,
                                                    progress=advance))
        if "strategies" in which:
            with ui.progress_bar("ablation: missing-modality strategies",
                                 total=len(AB.STRATEGY_ROWS), unit="models") as advance:
                tables += AB.run_strategy_ablation(ctx, progress=advance)
    report = runner_report(reports, tables, preamble)
    _summary(tables, report)
    return report


def _robustness_drop(run: Run, cache, refs: list, drop: str | None, device: str,
                     batch_size: int) -> tuple[str, str] | None:
    """The modality the robustness table drops, and how it was chosen: --robustness-drop (or
    eval.robustness_drop), else the teacher's strongest single modality on val."""
    from mmkd.eval import runner

    mods = list(run.cfg.data.modalities)
    drop = drop or run.cfg.eval.robustness_drop
    if drop:
        if drop not in mods:
            raise MmkdError(f"--robustness-drop {drop}: not a modality of this run "
                            f"({', '.join(mods)})")
        return drop, f"Dropped: {drop} (chosen with --robustness-drop or eval.robustness_drop)."
    if len(mods) < 2:
        return None
    ref = next((r for r in refs if r.name == "teacher"), refs[0])
    ui.info(f"robustness: finding {ref.label}'s strongest single modality on val")
    return runner.strongest_modality(cache, ref, list(run.cfg.data.heads), device, batch_size)


def run_compare(run: Run, a: str, b: str, subsets: list[str] | None = None,
                split: str | None = None, device: str | None = None, batch_size: int = 64,
                n_boot: int = 2000):
    """Evaluate models `a` and `b` (every seed) and write their comparison table into the
    report; returns the table. `subsets`: "F+A"-style labels (default: all modalities)."""
    from mmkd.cache import Cache
    from mmkd.eval import runner
    if a == b:
        raise MmkdError(f"mmkd compare {a} {b}: name two different models")
    cfg = run.cfg
    split = split or cfg.eval.split
    mods = list(cfg.data.modalities)
    wanted = [_subset(s, mods) for s in subsets] if subsets else [tuple(mods)]
    cache = Cache.open(run.cache_path, mode="r")
    refs = runner.discover_models(run.dir, [a, b])
    data = runner.split_data(cache, list(cfg.data.heads), split, run.manifest_dir)
    with ui.progress_bar(f"evaluate {a} and {b}", unit="samples",
                         total=len(data.indices) * sum(len(r.runs) for r in refs)) as advance:
        ev = runner.evaluate_models(cache, refs, data, ["subsets"], [], [], _device(device),
                                    batch_size, advance)
    table = runner.compare_table(ev[0], ev[1], wanted, data.labels, split, n_boot)
    runner_report(run.reports_dir, [table], [f"Run: `{run.dir}`; evaluated split: `{split}`."])
    return table


def runner_report(reports: Path, tables: list, preamble: list[str]) -> Path:
    from mmkd.eval import runner

    return runner.write_reports(reports, tables, "mmkd evaluation report", preamble)


TEXT_COLUMNS = ("method", "model", "modalities", "device", "measured as")
# the first column's header when a table is printed with its methods as columns
TRANSPOSED_HEADER = {"missing_rate_": "missing rate", "subsets_": "modalities"}


def _summary(tables: list, report: Path) -> None:
    """Print the headline tables (the compact ones) and where everything is."""
    for t in tables:
        if not t.rows and t.notes:  # a table that could not be computed says why
            ui.info(f"[yellow]{t.title}[/yellow]: {' '.join(t.notes)}")
            continue
        if not (t.name.startswith(("subsets_", "robustness_", "missing_rate_", "compare_"))
                or t.name in (
                "efficiency", "ablation_tokens", "ablation_strategies")):
            continue
        rich = _rich_table(t, transpose=t.name.startswith("missing_rate_"))
        if not ui.fits(rich) and t.name.startswith("subsets_"):
            rich = _rich_table(t, transpose=True)  # 15 subsets fit as rows, not as columns
        ui.console.print(rich)
    ui.info(f"report: [bold]{report}[/bold] (tables as .md/.csv/.json and plots next to it)")


def _rich_table(t, transpose: bool) -> RichTable:
    """`t` for the terminal: text wraps instead of being cut; with `transpose`, one column per
    method; a legend of the modality letters under tables that use them."""
    from mmkd.subsets import LETTERS

    used = "".join(t.columns) + "".join(str(r.get(c, "")) for r in t.rows for c in TEXT_COLUMNS)
    legend = ", ".join(f"{letter} {m}" for m, letter in LETTERS.items()
                       if f"{letter}+" in used or f"+{letter}" in used or f"({letter})" in used)
    rich = RichTable(title=t.title, title_justify="left", caption=legend or None,
                     caption_justify="left")
    if transpose:
        header = next((h for p, h in TRANSPOSED_HEADER.items() if t.name.startswith(p)), "")
        rich.add_column(header, overflow="fold")
        for r in t.rows:
            rich.add_column(str(r[t.columns[0]]), justify="right", overflow="fold")
        for c in t.columns[1:]:
            rich.add_row(c, *[_cell(r.get(c)) for r in t.rows])
        return rich
    for c in t.columns:
        text = c in TEXT_COLUMNS
        rich.add_column(c, justify="left" if text else "right", overflow="fold", no_wrap=not text)
    for r in t.rows:
        rich.add_row(*[_cell(r.get(c)) for c in t.columns])
    return rich


def _cell(v: object) -> str:
    from mmkd.eval.reports import MeanStd

    if v is None:
        return "–"
    if isinstance(v, MeanStd):
        return f"{v.mean:.1f} ± {v.std:.1f}"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        cache: Annotated[Path | None, typer.Option(
            "--cache", help="The run directory (or its cache.zarr); default: the current "
                            "directory.")] = None,
        protocol: Annotated[list[str] | None, typer.Option(
            "--protocol", help="subsets, missing-rate, efficiency, ablations or all (repeatable "
                               "or comma-separated; default: eval.protocols of mmkd.yaml).")] = None,
        models: Annotated[str | None, typer.Option(
            help="Comma-separated: teacher and/or students/ folder names (karmma, baseline, "
                 "baseline-delta, ...); default: every trained model.")] = None,
        split: Annotated[str | None, typer.Option(help="Split to evaluate (default eval.split).")] = None,
        device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")] = None,
        batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 64,
        efficiency_sizes: Annotated[str, typer.Option(
            help="paper: the paper's extractors at 32×224×224 (Fig. 5); run: this run's own.")] = "paper",
        efficiency_devices: Annotated[str | None, typer.Option(
            help="Comma-separated devices for efficiency (default: cpu, and cuda if available).")] = None,
        ablation: Annotated[str | None, typer.Option(
            help="Comma-separated: tokens (Tab. 4), strategies (Tab. B.1); default both.")] = None,
        ablation_epochs: Annotated[int | None, typer.Option(
            help="Epochs per ablation model (default: the recipe's).")] = None,
        thetas: Annotated[str, typer.Option(
            help="Token counts for the token ablation ('none' = all tokens).")] = "none,500,300,100",
        token_modalities: Annotated[str | None, typer.Option(
            help="Modalities of the token-ablation teacher (paper: video,audio).")] = None,
        robustness_drop: Annotated[str | None, typer.Option(
            help="The modality the robustness (kept %) table drops (default "
                 "eval.robustness_drop, else the teacher's strongest single modality on "
                 "val).")] = None,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override: a.b=c.")] = None,
    ) -> None:
        """Evaluate the run's models: Table 1 subsets, Fig. 4 missing rates, Fig. 5 efficiency,
        Tab. 4 / B.1 ablations; tables and plots go to RUN_DIR/reports/."""
        run = find_run(cache, set_ or [])
        protocols = parse_protocols(protocol, run.cfg.eval.protocols)
        run_eval(run, protocols, models=_csv(models), split=split, device=device,
                 batch_size=batch_size, efficiency_sizes=efficiency_sizes,
                 efficiency_devices=_csv(efficiency_devices), ablations=_csv(ablation),
                 ablation_epochs=ablation_epochs, thetas=_csv(thetas),
                 token_modalities=_csv(token_modalities), robustness_drop=robustness_drop)

    @app.command("compare")
    def compare_cmd(
        a: Annotated[str, typer.Argument(help="Model A: teacher or a students/ folder name.")],
        b: Annotated[str, typer.Argument(help="Model B, the reference.")],
        subset: Annotated[str | None, typer.Option(
            help="Comma-separated modality subsets at inference, e.g. V+F+A,F+A "
                 "(default: all modalities).")] = None,
        cache: Annotated[Path | None, typer.Option(
            "--cache", help="The run directory (or its cache.zarr); default: the current "
                            "directory.")] = None,
        split: Annotated[str | None, typer.Option(help="Split to evaluate (default eval.split).")] = None,
        device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")] = None,
        batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 64,
        n_boot: Annotated[int, typer.Option(help="Bootstrap replicates.", min=100)] = 2000,
        set_: Annotated[list[str] | None, typer.Option("--set", help="Override: a.b=c.")] = None,
    ) -> None:
        """Is A better than B? Accuracy difference A − B with a 95 % interval from a paired
        bootstrap over test samples and training seeds, and in how many seeds A > B; the table
        goes to RUN_DIR/reports/compare_A_vs_B.{md,csv,json}."""
        run = find_run(cache, set_ or [])
        table = run_compare(run, a, b, _csv(subset), split=split, device=device,
                            batch_size=batch_size, n_boot=n_boot)
        _summary([table], run.reports_dir / "report.md")
