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


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def run_eval(run: Run, protocols: list[str], models: list[str] | None = None,
             split: str | None = None, device: str | None = None, batch_size: int = 64,
             efficiency_sizes: str = "paper", efficiency_devices: list[str] | None = None,
             ablations: list[str] | None = None, ablation_epochs: int | None = None,
             thetas: list[str] | None = None, token_modalities: list[str] | None = None
             ) -> Path:
    """Run the protocols with a progress bar per stage; returns the report path."""
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
        n_cond = len(data.indices) * len(refs)
        with ui.progress_bar(f"eval {'+'.join(acc)} ({len(refs)} models)", total=n_cond,
                             unit="samples") as advance:
            evaluated = runner.evaluate_models(cache, refs, data, acc, cfg.eval.missing_rates,
                                               cfg.eval.seeds, device, batch_size, advance)
        new, _ = runner.accuracy_tables(evaluated, list(cfg.data.modalities), data, acc,
                                        cfg.eval.missing_rates, cfg.eval.seeds, reports)
        tables += new
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


def runner_report(reports: Path, tables: list, preamble: list[str]) -> Path:
    from mmkd.eval import runner

    return runner.write_reports(reports, tables, "mmkd evaluation report", preamble)


def _summary(tables: list, report: Path) -> None:
    """Print the headline tables (the compact ones) and where everything is."""
    from mmkd.eval.reports import MeanStd

    def cell(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, MeanStd):
            return f"{v.mean:.1f} ± {v.std:.1f}"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    for t in tables:
        if not (t.name.startswith(("subsets_", "robustness_", "missing_rate_")) or t.name in (
                "efficiency", "ablation_tokens", "ablation_strategies")):
            continue
        rich = RichTable(title=t.title, title_justify="left")
        if t.name.startswith("missing_rate_"):  # methods as columns: 10 rates fit the terminal
            rich.add_column("missing rate")
            for r in t.rows:
                rich.add_column(str(r["method"]), justify="right")
            for c in t.columns[1:]:
                rich.add_row(c, *[cell(r.get(c)) for r in t.rows])
        else:
            for c in t.columns:
                rich.add_column(c, justify="left" if c in ("method", "model", "modalities")
                                else "right")
            for r in t.rows:
                rich.add_row(*[cell(r.get(c)) for c in t.columns])
        ui.console.print(rich)
    ui.info(f"report: [bold]{report}[/bold] (tables as .md/.csv/.json and plots next to it)")


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
                 token_modalities=_csv(token_modalities))
