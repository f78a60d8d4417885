"""mmkd.cli.ui: outside a terminal, progress comes as plain lines at intervals."""

import io

from rich.console import Console

from mmkd.cli import ui


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=120, highlight=False), out


def test_non_tty_prints_a_progress_line_per_interval(monkeypatch):
    console, out = _console(terminal=False)
    monkeypatch.setattr(ui, "console", console)
    clock = [1000.0]
    monkeypatch.setattr(ui.time, "monotonic", lambda: clock[0])
    with ui.progress_bar("extract video", total=1300, unit="clips") as advance:
        advance(100)  # the first call starts the interval: no line yet
        clock[0] += ui.LOG_EVERY_S - 1
        advance(100)
        clock[0] += 2
        advance(450)
        clock[0] += 1
        advance(10)  # within the next interval: no line
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("extract video: ")]
    assert len(lines) == 1, out.getvalue()
    assert lines[0].startswith("extract video: 650/1,300 (50 %)") and "elapsed" in lines[0]


def test_a_terminal_draws_the_bar_only():
    console, out = _console(terminal=True)
    bar = ui.LoggedProgress(console=console, log_every=None)
    with bar:
        task = bar.add_task("flow", total=4)
        bar.advance(task, 4)
    assert "flow: 4/4" not in out.getvalue()


def test_progress_line_without_a_total():
    bar = ui.LoggedProgress(console=_console(False)[0], log_every=None)
    task = bar.add_task("reading CSV", total=None, rate="12.0 rows/s")
    bar.advance(task, 2600)
    assert ui.progress_line(bar.tasks[0]).startswith("reading CSV: 2,600/?, 12.0 rows/s, elapsed")


def test_lines_only_outside_a_terminal_and_not_when_quiet(monkeypatch):
    for terminal, verbosity, want in ((False, 1, ui.LOG_EVERY_S), (True, 1, None),
                                      (False, 0, None)):
        monkeypatch.setattr(ui, "console", _console(terminal)[0])
        monkeypatch.setitem(ui.state, "verbosity", verbosity)
        assert ui.new_progress().log_every == want
