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

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from alhelpers.files import write_text

__all__ = ["THREAD_BUDGET_ENV", "ThreadBudget", "budget_threads", "follow_thread_budget", "kernel_threads",
           "spread_jobs", "thread_budget", "write_thread_budget"]

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


# --------------------------------------------------------------------------- the runner's side

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@contextlib.contextmanager
def kernel_threads(jobs: int) -> Iterator[int]:
    """Notebook kernels started inside get ``cores // jobs`` threads each (OMP/MKL/OpenBLAS), so
    that ``jobs`` kernels side by side never ask for more threads than there are cores; torch
    slows down many times over when they do (two processes of two threads each on two cores made a
    Track B training epoch 5× slower: 0.89 s against 0.17 s for one, while two of one thread each
    took 0.21 s). A value the user set is kept."""
    n = budget_threads(os.cpu_count() or 1, jobs, jobs)
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k in _THREAD_VARS:
        os.environ.setdefault(k, str(n))
    try:
        yield n
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ThreadBudget:
    """The threads each kernel of a local pool may use now: written to a temporary file the
    kernels are told of (:data:`THREAD_BUDGET_ENV`), raised as the grid's last tasks leave cores
    idle."""

    def __init__(self, folder: Path, jobs: int, tasks: int) -> None:
        self.path, self.jobs, self.unfinished = folder / "threads", jobs, tasks
        self.cores = os.cpu_count() or 1
        self.threads = budget_threads(self.cores, jobs, tasks)
        write_thread_budget(self.path, self.threads)

    def finished(self) -> None:
        """One task ended: once none is waiting, the kernels still running share its cores."""
        self.unfinished -= 1
        threads = budget_threads(self.cores, self.jobs, self.unfinished)
        if threads != self.threads:
            self.threads = threads
            write_thread_budget(self.path, threads)


@contextlib.contextmanager
def thread_budget(jobs: int, tasks: int) -> Iterator[ThreadBudget | None]:
    """Kernels started inside follow a :class:`ThreadBudget` (None, and nothing changed, when the
    user set ``OMP_NUM_THREADS``: their threads are theirs)."""
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get(THREAD_BUDGET_ENV):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="alhelpers-threads-") as folder:
        budget = ThreadBudget(Path(folder), jobs, tasks)
        os.environ[THREAD_BUDGET_ENV] = str(budget.path)
        try:
            yield budget
        finally:
            os.environ.pop(THREAD_BUDGET_ENV, None)
