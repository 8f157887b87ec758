"""Threads per notebook kernel while a runner runs several side by side.

The local runner starts ``jobs`` kernels with ``cores // jobs`` threads each (more threads than
cores slow torch down many times over). When the grid's queue runs dry, fewer kernels are left
than cores; without help the last ones would go on with one thread each and a core would stand
idle (the last of five Track B seeds on two cores: a third of the study's time). So the runner
writes the threads each kernel may use now into a file named by :data:`THREAD_BUDGET_ENV`
(:func:`write_thread_budget`: ``cores // min(jobs, tasks not finished)``, which only rises once no
task is waiting), and the AL round driver (:func:`alhelpers.al.rounds.run_rounds`) calls
:func:`follow_thread_budget` before each round, which sets torch's intra-op threads to it.

Outside a runner (Colab, a notebook by hand, papermill alone) the variable is unset and nothing
changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alhelpers.files import write_text

__all__ = ["THREAD_BUDGET_ENV", "budget_threads", "follow_thread_budget", "spread_jobs", "write_thread_budget"]

#: The environment variable naming the file with the threads a kernel may use now.
THREAD_BUDGET_ENV = "ALHELPERS_THREAD_BUDGET"


def budget_threads(cores: int, jobs: int, unfinished: int) -> int:
    """Threads per kernel with ``unfinished`` tasks left (running or waiting) of a grid run
    ``jobs`` at a time on ``cores`` cores: ``cores // min(jobs, unfinished)``, at least 1."""
    return max(1, int(cores) // max(1, min(int(jobs), int(unfinished))))


def _makespan(n_tasks: int, cores: int, jobs: int) -> float:
    """Time to run ``n_tasks`` equal one-thread tasks ``jobs`` at a time on ``cores`` cores, in task
    lengths: a wave of ``k`` tasks shares the cores (``k / cores``), one core each at most."""
    left, total = n_tasks, 0.0
    while left > 0:
        k = min(jobs, left)
        total += max(1.0, k / cores)
        left -= k
    return total


def spread_jobs(n_tasks: int, cores: int) -> int:
    """How many notebooks a local runner runs side by side by default: as many as ``cores``, or
    a few more where that leaves no core idle at the end (at most ``2 × cores``, the fewest that
    do best). Five Track B seeds on two cores: three side by side (they share the cores, then
    the last two have one each: 2.5 seeds' time) instead of two (the fifth alone: 3)."""
    cores, n_tasks = max(1, int(cores)), max(1, int(n_tasks))
    options = range(cores, max(cores, min(n_tasks, 2 * cores)) + 1)
    return min(options, key=lambda jobs: (_makespan(n_tasks, cores, jobs), jobs))


def write_thread_budget(path: str | os.PathLike, threads: int) -> None:
    """Write the threads per kernel to ``path`` (atomically: a kernel never reads half a number)."""
    write_text(path, f"{int(threads)}\n")


def follow_thread_budget() -> int | None:
    """Set torch's threads to the runner's budget; the budget, or None outside a runner.

    Only where torch is already imported (a kernel that never uses it is left alone); a budget
    file that cannot be read (gone after the runner ended) changes nothing.
    """
    path = os.environ.get(THREAD_BUDGET_ENV)
    if not path:
        return None
    try:
        threads = int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
    if threads < 1:
        return None
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
