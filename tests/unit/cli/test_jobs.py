"""mmkd.cli.jobs: side-by-side jobs in worker processes with their progress forwarded."""

import subprocess
import sys

from mmkd.cli import jobs, ui
from mmkd.train.loop import TrainEvent

HELPER = '''
import os, pathlib, time
from mmkd.errors import MmkdError

def square(x, report):
    """Waits (up to 60 s) until two processes have started a job: they run side by side."""
    here = pathlib.Path(__file__).parent
    (here / f"started-{os.getpid()}").touch()
    t0 = time.time()
    while len(list(here.glob("started-*"))) < 2 and time.time() - t0 < 60:
        time.sleep(0.05)
    report.phase("squaring")
    report.start(2)
    report.advance(2)
    return x * x, os.getpid()

def fail(report):
    raise MmkdError("job failed on purpose")
'''

SCRIPT = '''
import sys
sys.path.insert(0, sys.argv[1])
import torch
from jobhelp import fail, square
from mmkd.cli.jobs import Job, run_jobs
from mmkd.errors import MmkdError

out = run_jobs([Job("a", square, (3,)), Job("b", square, (4,)), Job("c", square, (5,))], workers=2)
import os
pids = {r[1] for r in out}
print("results", [r[0] for r in out], "in this process", os.getpid() in pids, "processes", len(pids))
try:
    run_jobs([Job("ok", square, (2,)), Job("bad", fail)], workers=2)
except MmkdError as exc:
    print("raised", exc)
'''


def test_jobs_run_in_worker_processes_and_raise_the_first_failure(tmp_path):
    (tmp_path / "jobhelp.py").write_text(HELPER)
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "results [9, 16, 25]" in res.stdout
    assert "in this process False" in res.stdout and "processes 2" in res.stdout
    assert "raised job failed on purpose" in res.stdout


def test_bar_reporter_draws_each_kind_of_callback():
    with ui.new_progress("info", disable=True) as bar:
        rep = jobs.BarReporter(bar, "pretrain")
        rep.phase("decode")
        rep.start(10)
        rep.advance(4)
        task = bar.tasks[rep.task]
        assert (task.description, task.total, task.completed) == ("pretrain: decode", 10, 4)
        rep.event(TrainEvent("train", 2, 5, 7, 20, loss=0.5, acc=0.25))
        rep.event(TrainEvent("epoch", 2, 5, 8, 20))  # epoch summaries are not drawn
        task = bar.tasks[rep.task]
        assert (task.description, task.total, task.completed) == ("pretrain epoch 2/5", 20, 7)
        assert task.fields["info"] == "loss 0.500  acc 25.0%"
