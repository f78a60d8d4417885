"""`mmkd slurm --array N ... -- COMMAND`: write an sbatch job-array script around a command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mmkd.cli import ui


def register(app: typer.Typer) -> None:
    app.command("slurm", context_settings={"allow_extra_args": True,
                                           "ignore_unknown_options": True})(slurm)


def slurm(
    ctx: typer.Context,
    array: Annotated[int, typer.Option(help="Number of array tasks N (task I runs --shard I/N).")],
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    time: Annotated[str | None, typer.Option(help="Time limit per task, e.g. 12:00:00.")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs per task.")] = None,
    cpus: Annotated[int | None, typer.Option(help="CPUs per task.")] = None,
    mem: Annotated[str | None, typer.Option(help="Memory per task, e.g. 32G.")] = None,
    job_name: Annotated[str, typer.Option(help="Job name.")] = "mmkd",
    max_parallel: Annotated[int | None, typer.Option(help="At most M tasks at once.")] = None,
    sbatch: Annotated[list[str] | None, typer.Option(
        help="Another #SBATCH option, e.g. --sbatch=--account=proj (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="The script to write.")] = Path("mmkd-array.sbatch"),
) -> None:
    """Write a ready sbatch array script: `mmkd slurm --array 8 -- mmkd extract --modality video`."""
    from mmkd.cache.slurm import SlurmOptions, sbatch_script

    opts = SlurmOptions(array=array, partition=partition, time=time, gpus=gpus, cpus=cpus,
                        mem=mem, job_name=job_name, max_parallel=max_parallel,
                        extra=list(sbatch or []))
    workdir = Path.cwd()
    text = sbatch_script(list(ctx.args), opts, workdir)
    (workdir / opts.log_dir).mkdir(parents=True, exist_ok=True)  # SLURM opens logs before start
    out.write_text(text)
    out.chmod(0o755)
    ui.console.print(f"wrote [bold]{out}[/bold]: {array} tasks, each `{' '.join(ctx.args)} "
                     f"--shard $SLURM_ARRAY_TASK_ID/{array}`; logs in {opts.log_dir}/")
    ui.console.print(f"submit with: [bold]sbatch {out}[/bold]")
