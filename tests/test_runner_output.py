"""What the study runner says while it runs: k of N, elapsed and time left per finished notebook,
"still running" heartbeats, no kernel noise at shutdown, and a help text for every flag."""

from __future__ import annotations

import argparse
import re
import threading
import time
from pathlib import Path

# papermill (3 s) and alhelpers.run (torch, sklearn: 4 s) are imported at collection, not in a test
import papermill  # noqa: F401
import pytest

from alhelpers.cli import build_verify_parser
from alhelpers.run import build_parser
from alhelpers.runner import tasks
from alhelpers.runner import progress as runner_progress
from alhelpers.runner.progress import (
    due_heartbeats,
    estimate_left,
    format_duration,
    format_time_left,
    heartbeat_line,
    progress_line,
)
from alhelpers.runner.tasks import Task, TaskError, run_tasks

# --- the pure pieces ------------------------------------------------------------------------------


def test_durations_and_time_left_read_like_a_person_would_say_them():
    assert [format_duration(s) for s in (0.04, 41.23, 59.9, 60.0, 125.0, 3599.4, 3720.0)] == [
        "0.0 s", "41.2 s", "59.9 s", "1 min 00 s", "2 min 05 s", "59 min 59 s", "1 h 02 min"]
    assert [format_time_left(s) for s in (1, 14.1, 26, 57, 58, 80, 370, 3599, 4800)] == [
        "about 5 s left", "about 15 s left", "about 25 s left", "about 55 s left", "about 1 min left",
        "about 1 min left", "about 6 min left", "about 1 h 00 min left", "about 1 h 20 min left"]


def test_time_left_is_the_mean_per_notebook_kind_times_the_tasks_left_over_the_jobs():
    durations = {"03_active_learning.ipynb": [40.0, 44.0], "06_cross_database.ipynb": [100.0]}
    # 03: 3 left × 42 s; 06: 1 × 100 s; 04 (none finished): 1 × the overall mean 184/3 s; 2 at a time
    left = estimate_left(durations, {"03_active_learning.ipynb": 3, "06_cross_database.ipynb": 1,
                                     "04_statistics.ipynb": 1}, parallel=2)
    assert left == pytest.approx((3 * 42 + 100 + 184 / 3) / 2)
    assert estimate_left({}, {"03_active_learning.ipynb": 5}, parallel=2) is None  # nothing finished yet
    assert estimate_left({"a": []}, {"a": 5}, parallel=2) is None
    # one task left runs alone, whatever the jobs
    assert estimate_left({"a": [30.0]}, {"a": 1}, parallel=4) == pytest.approx(30.0)
    assert estimate_left({"a": [30.0]}, {"a": 0}, parallel=4) == 0.0
    # tasks in flight have done part of their work already (at most the mean each)
    assert estimate_left({"a": [10.0]}, {"a": 3}, parallel=2, running={"a": [4.0]}) == pytest.approx(13.0)
    assert estimate_left({"a": [10.0]}, {"a": 3}, parallel=2, running={"a": [4.0, 12.0]}) == pytest.approx(8.0)


@pytest.mark.parametrize(("queued", "left"), [(False, "about 5 s left"), (True, "about 10 s left")])
def test_progress_counts_the_tasks_in_flight_unless_they_may_be_queued(tmp_path, queued, left):
    now = [100.0]
    a, b, c = _tasks(tmp_path, ["a", "b", "c"])
    progress = runner_progress.Progress([a, b, c], parallel=2, queued=queued, clock=lambda: now[0])
    progress.started(a)
    progress.started(b)
    now[0] = 110.0
    # b has run its mean 10 s: 10 s of work left (c's), 5 s over two jobs; on Dask b may still
    # be queued: 20 s of work, 10 s over two
    assert progress.finished(a, 10.0, "10.0 s") == f"[run] 1/3 a: 10.0 s · elapsed 10.0 s · {left}"
    assert [label for _, label, _ in progress.in_flight()] == ["b"]


def test_the_progress_line():
    assert progress_line(3, 24, "03_active_learning_C_magpie_seed0", "41.2 s", 125.0, 370.0) == (
        "[run] 3/24 03_active_learning_C_magpie_seed0: 41.2 s · elapsed 2 min 05 s · about 6 min left")
    # before any estimate, and after the last task: no time left
    assert progress_line(1, 2, "x", "FAILED (ValueError: bad)", 3.0, None) == (
        "[run] 1/2 x: FAILED (ValueError: bad) · elapsed 3.0 s")
    assert progress_line(2, 2, "x", "4.0 s", 7.0, 0.0) == "[run] 2/2 x: 4.0 s · elapsed 7.0 s"


def test_heartbeats_are_due_once_per_interval_of_each_task():
    said: dict[Path, int] = {}
    flight = [(Path("a"), "a", 0.0), (Path("b"), "b", 50.0)]
    assert due_heartbeats(flight, 59.0, 60.0, said) == []
    assert due_heartbeats(flight, 61.0, 60.0, said) == [("a", 61.0)]
    assert due_heartbeats(flight, 70.0, 60.0, said) == []  # a: said for this interval
    assert due_heartbeats(flight, 121.0, 60.0, said) == [("a", 121.0), ("b", 71.0)]
    assert heartbeat_line(["06_cross_database_C_magpie"], 120.0) == (
        "[run] 06_cross_database_C_magpie: still running (2 min 00 s)")
    assert heartbeat_line(["a", "b", "c", "d", "e"], 61.0, queued=True) == (
        "[run] 5 tasks still running or queued (1 min 01 s): a, b, c and 2 more")


# --- run_tasks with quick fake notebooks ----------------------------------------------------------

FAKE_S = 10.0  # the seconds each fake notebook says it took (the real ones return their own)


def _tasks(tmp_path: Path, labels, notebook: str = "03_active_learning.ipynb") -> list[Task]:
    return [Task(notebook, tmp_path / "notebooks" / f"{label}.ipynb", {"OUT_DIR": str(tmp_path)})
            for label in labels]


def _fake(sleep: dict[str, float] | None = None, fail: tuple[str, ...] = ()):
    """An ``execute_task``: sleeps (0.02 s unless ``sleep`` names the label), writes an executed
    notebook without records, returns ``(records, seconds)`` like the real one, or raises
    :class:`TaskError` for a label in ``fail``."""

    def run(task: Task) -> tuple[dict, float]:
        time.sleep((sleep or {}).get(task.label, 0.02))
        if task.label in fail:
            raise TaskError(f"ValueError: {task.label} is broken")
        task.output.parent.mkdir(parents=True, exist_ok=True)
        task.output.write_text('{"cells": [], "metadata": {}}')
        return {}, FAKE_S

    return run


def _lines(text: str, pattern: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(pattern, line)]


def test_every_finished_task_says_k_of_n_elapsed_and_time_left(tmp_path, monkeypatch, capsys):
    ts = _tasks(tmp_path, ["a0", "a1", "a2", "a3"])
    # a0 finished before: skipped, and not counted in N
    _fake()(ts[0])
    monkeypatch.setattr(tasks, "task_status", lambda t: (t.label == "a0", "not run yet"))
    monkeypatch.setattr(tasks, "execute_task", _fake(fail=("a2",)))
    res = run_tasks(ts, jobs=1)
    out = capsys.readouterr().out
    assert "[run] 1 finished task(s) skipped" in out
    assert "[run] 3 notebooks to run (03_active_learning × 3), 1 at a time" in out
    lines = _lines(out, r"^\[run\] \d+/\d+ ")
    assert [line.split(" · ")[0] for line in lines] == [
        "[run] 1/3 a1: 10.0 s", "[run] 2/3 a2: FAILED (ValueError: a2 is broken)", "[run] 3/3 a3: 10.0 s"]
    assert all(re.search(r" · elapsed \d+\.\d s", line) for line in lines)
    assert lines[0].endswith("about 20 s left")  # 2 left × 10 s, one at a time
    assert lines[1].endswith("about 10 s left")  # the failure says nothing about its time
    assert "left" not in lines[2]
    assert [f.label for f in res.failures] == ["a2"] and [t.label for t in res.done] == ["a0", "a1", "a3"]


def test_k_of_n_side_by_side(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tasks, "_execute_task_in_thread", _fake())
    run_tasks(_tasks(tmp_path, [f"b{i}" for i in range(4)]), jobs=2)
    out = capsys.readouterr().out
    assert "[run] 4 notebooks to run (03_active_learning × 4), 2 at a time" in out
    lines = _lines(out, r"^\[run\] \d/4 b\d: 10\.0 s · elapsed ")
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert sorted(line.split()[2] for line in lines) == ["b0:", "b1:", "b2:", "b3:"]
    # 3 left × 10 s, 2 at a time: 15 s; 2 × 10 / 2: 10 s; the last one alone: 10 s
    assert [line.rsplit(" · ", 1)[-1] for line in lines[:3]] == [
        "about 15 s left", "about 10 s left", "about 10 s left"]
    assert "left" not in lines[3]


def _heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "alhelpers-runner-heartbeat"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_slow_notebook_says_it_is_still_running_and_fast_ones_do_not(tmp_path, monkeypatch, capsys, jobs):
    fake = _fake(sleep={"slow": 0.75})
    monkeypatch.setattr(tasks, "execute_task", fake)
    monkeypatch.setattr(tasks, "_execute_task_in_thread", fake)
    run_tasks(_tasks(tmp_path, ["fast0", "slow", "fast1"]), jobs=jobs, heartbeat_s=0.2)
    out = capsys.readouterr().out
    beats = _lines(out, "still running")
    assert len(beats) >= 2, out  # after 0.2 s and 0.4 s at least (0.6 s too, unless the machine is busy)
    assert all(re.fullmatch(r"\[run\] slow: still running \(0\.\d s\)", line) for line in beats), beats
    assert not _heartbeat_threads()  # stopped with the run


def test_the_heartbeat_stops_when_the_run_is_interrupted(tmp_path, monkeypatch, capsys):
    def interrupted(task):
        time.sleep(0.3)
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "execute_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_tasks(_tasks(tmp_path, ["c0"]), heartbeat_s=0.1)
    out = capsys.readouterr().out
    assert "[run] c0: running" in out and _lines(out, r"c0: still running")
    assert not _heartbeat_threads()


def test_k_of_n_and_heartbeats_on_dask(tmp_path, monkeypatch, capsys):
    distributed = pytest.importorskip("distributed")
    # an in-process cluster runs the monkeypatched function (worker processes would import the real one)
    monkeypatch.setattr(tasks, "execute_task", _fake(sleep={"d0": 0.6, "d1": 0.6, "d2": 0.6}))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1,
                            dashboard_address=None) as client:
        run_tasks(_tasks(tmp_path, ["d0", "d1", "d2"]), client=client, heartbeat_s=0.25)
    out = capsys.readouterr().out
    assert "[run] 3 notebooks to run (03_active_learning × 3), on Dask" in out
    lines = _lines(out, r"^\[run\] \d/3 d\d: 10\.0 s")
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert lines[0].endswith("about 20 s left")  # the cluster's one thread: 2 × 10 s
    beats = _lines(out, "still running or queued")
    # submitted together: one line for those due together, e.g. "[run] 3 tasks still running or
    # queued (0.2 s): d0, d1, d2"; "[run] d2: still running or queued (1.2 s)" for the last
    assert beats and all(re.fullmatch(r"\[run\] (\d tasks still running or queued \(\d\.\d s\): d\d, d\d.*"
                                      r"|d\d: still running or queued \(\d\.\d s\))", line)
                         for line in beats), beats


# --- kernel noise ---------------------------------------------------------------------------------

#: A notebook whose kernel reports a SIGINT after its last cell: it keeps the cell's SIGINT handler
#: (ipykernel puts its own back after each message), as a kernel busy with a message when the
#: runner shuts it down would log ``KeyboardInterrupt caught in kernel``.
_SIGINT_NOTEBOOK = {
    "cells": [
        {"id": "params", "cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
         "outputs": [], "source": "OUT_DIR = ''"},
        {"id": "sigint", "cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": (
            "import os, signal\n"
            "k = get_ipython().kernel\n"
            "k.pre_handler_hook = k.post_handler_hook = lambda: None\n"
            "signal.signal(signal.SIGINT, lambda *a: os.write(2, b'kernel got SIGINT\\n'))")},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.fixture
def sigint_notebook(tmp_path, monkeypatch) -> Task:
    import json

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    (nbdir / "sigint.ipynb").write_text(json.dumps(_SIGINT_NOTEBOOK))
    monkeypatch.setattr(tasks, "NOTEBOOKS", nbdir)
    return Task("sigint.ipynb", tmp_path / "out" / "notebooks" / "sigint.ipynb", {"OUT_DIR": str(tmp_path / "out")})


def test_the_runner_shuts_kernels_down_without_interrupting_them(sigint_notebook, capfd):
    # jupyter_client interrupts a kernel before shutting it down; a kernel busy with a message
    # then printed "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." now and then, at
    # random. The runner's kernels get no SIGINT: the line cannot come, not even once.
    tasks.execute(sigint_notebook)
    err = capfd.readouterr().err
    assert err.count("kernel got SIGINT") == 0 and "KeyboardInterrupt" not in err, err


def test_the_stock_kernel_manager_does_interrupt_them(sigint_notebook, capfd, monkeypatch):
    # the check above can see an interrupt: with jupyter_client's own manager the kernel gets one
    # (asked to shut down gracefully, so that it lives to print it: the runner kills its kernels
    # once their last cell has run, and a killed kernel may go before its handler writes)
    from jupyter_client import AsyncKernelManager

    monkeypatch.setattr(tasks, "_kernel_manager_class", lambda: AsyncKernelManager)
    monkeypatch.setattr(tasks, "KERNEL_SHUTDOWN", "graceful")
    tasks.execute(sigint_notebook)
    assert capfd.readouterr().err.count("kernel got SIGINT") == 1


# --- flags ----------------------------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser, name: str = "") -> list[tuple[str, argparse.Action]]:
    """(subcommand path, action) of every option of ``parser`` and its subcommands, -h excepted."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, p in action.choices.items():
                out += _options(p, f"{name} {sub}".strip())
        elif not isinstance(action, argparse._HelpAction):
            out.append((name, action))
    return out


def test_every_runner_flag_says_what_it_does_and_its_default():
    options = _options(build_parser())
    assert {name for name, _ in options} == {"study", "potentials"}
    assert len(options) > 40
    for name, action in options:
        flag = f"{name} {'/'.join(action.option_strings)}"
        assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, flag
        assert "default" in action.help, flag


def test_the_data_recipe_flags_have_help():
    parser, _ = build_verify_parser("prog", None, build="build it", out="folder (default: here)", verify="check it")
    options = _options(parser)
    assert {"/".join(a.option_strings) for _, a in options} == {"--out", "--root"}
    for _, action in options:
        assert action.help and action.help != argparse.SUPPRESS and "default: here" in action.help


def test_the_cross_database_notebooks_start_early_each_beside_an_active_learning_one():
    from alhelpers.runner.study import interleave

    cross, al = ["c1", "c2"], ["a1", "a2", "a3", "a4"]
    assert interleave(cross, al) == ["c1", "a1", "c2", "a2", "a3", "a4"]
    assert interleave(cross, al[:1]) == ["c1", "a1", "c2"] and interleave([], al) == al and interleave(cross, []) == cross
