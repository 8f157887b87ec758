"""The runner's thread budget: kernels share the cores the grid's finished tasks left."""

from __future__ import annotations

import torch

from alhelpers import threads
from alhelpers.runner import tasks
from alhelpers.threads import THREAD_BUDGET_ENV, budget_threads, follow_thread_budget, write_thread_budget


def test_the_budget_rises_only_once_no_task_is_waiting():
    # two cores, two at a time: one thread each while a task waits or two run, both cores for the last
    assert [budget_threads(2, 2, left) for left in (5, 3, 2, 1, 0)] == [1, 1, 1, 2, 2]
    assert [budget_threads(16, 3, left) for left in (4, 3, 2, 1)] == [5, 5, 8, 16]
    assert budget_threads(1, 4, 1) == 1


def test_the_runner_writes_the_budget_as_tasks_finish(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(THREAD_BUDGET_ENV, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    seen = []
    with threads.thread_budget(jobs=2, tasks=5) as budget:
        path = budget.path
        import os

        assert os.environ[THREAD_BUDGET_ENV] == str(path)
        for _ in range(5):
            seen.append(int(path.read_text()))
            budget.finished()
        seen.append(int(path.read_text()))
    assert seen == [1, 1, 1, 1, 2, 2]  # five tasks: the fifth runs alone with both cores
    assert THREAD_BUDGET_ENV not in os.environ and not path.exists()


def test_a_thread_count_the_user_set_is_theirs(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with threads.thread_budget(jobs=2, tasks=5) as budget:
        assert budget is None


def test_a_kernel_follows_the_budget_file(tmp_path, monkeypatch):
    before = torch.get_num_threads()
    path = tmp_path / "threads"
    monkeypatch.delenv(THREAD_BUDGET_ENV, raising=False)
    assert follow_thread_budget() is None  # outside a runner: nothing changes
    assert torch.get_num_threads() == before
    monkeypatch.setenv(THREAD_BUDGET_ENV, str(path))
    try:
        assert follow_thread_budget() is None  # no file (the runner is gone): nothing changes
        write_thread_budget(path, 1)
        assert follow_thread_budget() == 1 and torch.get_num_threads() == 1
        write_thread_budget(path, 2)
        assert follow_thread_budget() == 2 and torch.get_num_threads() == 2
        path.write_text("garbage")
        assert follow_thread_budget() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_notebooks_side_by_side_leave_no_core_idle_at_the_end():
    from alhelpers.threads import spread_jobs

    # 5 seeds on 2 cores: 3 side by side (2.5 seeds' time), not 2 (the fifth alone: 3 seeds' time)
    assert spread_jobs(5, 2) == 3
    assert [spread_jobs(n, 2) for n in (1, 2, 3, 4, 6, 7, 24)] == [2, 2, 3, 2, 2, 4, 2]  # Track A's 24: 2
    assert spread_jobs(5, 16) == 16 and spread_jobs(40, 16) == 20


def test_the_runner_picks_the_jobs_when_none_are_given(tmp_path, monkeypatch, capsys):
    from alhelpers.layout import Layout
    from alhelpers.runner.tasks import Task, run_tasks

    monkeypatch.setattr(tasks.os, "cpu_count", lambda: 2)
    nb = Layout(tmp_path).notebooks
    todo = [Task("01_fetch.ipynb", nb / f"01_fetch_{s}.ipynb", {"SYSTEM": s, "OUT_DIR": str(tmp_path)})
            for s in ("C", "Si", "Ti-O")]
    res = run_tasks(todo, jobs=None)
    assert res.ok and len(res.done) == 3
    assert "3 notebooks to run (01_fetch × 3), 3 at a time" in capsys.readouterr().out
