"""What the runner says while it runs: ``k/N`` with the elapsed time and an estimate of the time
left for every finished task (:func:`progress_line`, :func:`estimate_left`), and a "still running"
line every :data:`HEARTBEAT_S` seconds for each task in flight (:func:`heartbeat`).

Pure functions of durations, counts and clock values, plus :class:`Progress` (the state of one run,
thread-safe) and the :func:`heartbeat` thread; :func:`alhelpers.runner.tasks.run_tasks` uses them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol


class Task(Protocol):
    """What progress needs of a task (:class:`alhelpers.runner.tasks.Task` has it)."""

    notebook: str
    output: Path

    @property
    def label(self) -> str: ...

#: Seconds between two "still running" lines of a notebook that has not finished yet.
HEARTBEAT_S: float = 60.0



def format_duration(secs: float) -> str:
    """A duration as the runner prints it: ``41.2 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if secs < 59.95:
        return f"{max(secs, 0.0):.1f} s"
    s = int(secs + 0.5)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_time_left(secs: float) -> str:
    """A rough time left: ``about 45 s left`` (5 s steps under a minute), ``about 6 min left``
    (whole minutes under an hour), ``about 1 h 20 min left``."""
    if secs < 57.5:
        return f"about {max(5, int(secs / 5 + 0.5) * 5)} s left"
    m = max(1, int(secs / 60 + 0.5))
    if m < 60:
        return f"about {m} min left"
    return f"about {m // 60} h {m % 60:02d} min left"


def estimate_left(durations: Mapping[str, Sequence[float]], remaining: Mapping[str, int],
                  parallel: int, running: Mapping[str, Sequence[float]] | None = None) -> float | None:
    """Seconds until the remaining tasks are done, or None before any task finished.

    Each kind of task (its notebook) takes the mean seconds of its finished tasks (a kind with
    none finished yet, the mean over all finished tasks), times its tasks left, less what its
    tasks in flight have run already (at most that mean each), over ``parallel`` at a time (never
    more at a time than tasks are left).

    Args:
        durations: Seconds of each finished task, by kind.
        remaining: Tasks not finished yet (queued or running), by kind.
        parallel: Tasks that run side by side (``jobs``, or the Dask cluster's threads).
        running: Seconds each task in flight has run, by kind (None: not known, as on Dask,
            where a submitted task may be queued; they count as left whole).
    """
    finished = [d for ds in durations.values() for d in ds]
    if not finished:
        return None
    overall = sum(finished) / len(finished)
    left = sum(n for n in remaining.values() if n > 0)
    if not left:
        return 0.0
    work = 0.0
    for kind, n in remaining.items():
        if n > 0:
            mean = sum(durations[kind]) / len(durations[kind]) if durations.get(kind) else overall
            work += n * mean - sum(min(r, mean) for r in (running or {}).get(kind, ()))
    return work / max(1, min(parallel, left))


def progress_line(k: int, n: int, label: str, outcome: str, elapsed: float, left: float | None) -> str:
    """``[run] k/n label: outcome · elapsed … · about … left`` (no time left before an estimate,
    nor after the last task)."""
    parts = [f"[run] {k}/{n} {label}: {outcome}", f"elapsed {format_duration(elapsed)}"]
    if left is not None and k < n:
        parts.append(format_time_left(left))
    return " · ".join(parts)


def heartbeat_line(labels: Sequence[str], secs: float, *, queued: bool = False) -> str:
    """``[run] label: still running (2 min 00 s)``; with ``queued`` (Dask: submitted, not known
    to have started) ``still running or queued``, and several tasks in one line."""
    what = "still running or queued" if queued else "still running"
    if len(labels) == 1:
        return f"[run] {labels[0]}: {what} ({format_duration(secs)})"
    names = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
    return f"[run] {len(labels)} tasks {what} ({format_duration(secs)}): {names}"


class Progress:
    """The state of one :func:`run_tasks` call: k of N finished, the durations by kind, and the
    tasks in flight with their start times. Thread-safe (pool threads and the heartbeat use it).

    Args:
        todo: The tasks to run now (N).
        parallel: Tasks run side by side, for the time left.
        queued: Started tasks may still wait in a queue (Dask: started means submitted), so their
            time so far says nothing about their time left.
        clock: Seconds on a monotonic clock (a parameter for tests).
    """

    def __init__(self, todo: Sequence[Task], parallel: int, *, queued: bool = False,
                 clock: Callable[[], float] = time.monotonic):
        self.n = len(todo)
        self.k = 0
        self.parallel = parallel
        self.queued = queued
        self.clock = clock
        self.t0 = clock()
        self.durations: dict[str, list[float]] = {}
        self.remaining = Counter(t.notebook for t in todo)
        self._running: dict[Path, tuple[str, str, float]] = {}  # output → (label, notebook, start)
        self._lock = threading.Lock()

    def started(self, task: Task) -> None:
        with self._lock:
            self._running[task.output] = (task.label, task.notebook, self.clock())

    def finished(self, task: Task, secs: float | None, outcome: str) -> str:
        """Count a finished task (``secs`` None for a failure) and return its progress line."""
        with self._lock:
            self._running.pop(task.output, None)
            self.k += 1
            self.remaining[task.notebook] -= 1
            if secs is not None:
                self.durations.setdefault(task.notebook, []).append(secs)
            now = self.clock()
            running: dict[str, list[float]] | None = None
            if not self.queued:
                running = {}
                for _, kind, start in self._running.values():
                    running.setdefault(kind, []).append(now - start)
            left = estimate_left(self.durations, self.remaining, self.parallel, running)
            return progress_line(self.k, self.n, task.label, outcome, now - self.t0, left)

    def in_flight(self) -> list[tuple[Path, str, float]]:
        """(output, label, start) of the tasks started and not finished."""
        with self._lock:
            return [(out, label, start) for out, (label, _, start) in self._running.items()]


def due_heartbeats(in_flight: Sequence[tuple[Path, str, float]], now: float, interval: float,
                   said: dict[Path, int]) -> list[tuple[str, float]]:
    """(label, seconds running) of the tasks that passed another ``interval`` since their last
    heartbeat; ``said`` (intervals already reported, by output) is updated."""
    due = []
    for out, label, start in in_flight:
        m = int((now - start) // interval)
        if m > said.get(out, 0):
            said[out] = m
            due.append((label, now - start))
    return due


@contextlib.contextmanager
def heartbeat(progress: Progress, interval: float, emit: Callable[[str], None], *,
              queued: bool = False) -> Iterator[None]:
    """While inside, a background thread says every ``interval`` seconds that a task in flight
    is still running (:func:`heartbeat_line`); stopped and joined on exit, however it exits.
    ``interval`` 0 or less: no heartbeat."""
    if interval <= 0:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        said: dict[Path, int] = {}
        while not stop.wait(min(0.25, interval / 4)):  # a line at most 0.25 s late
            due = due_heartbeats(progress.in_flight(), progress.clock(), interval, said)
            if queued and len(due) > 1:  # submitted together: one line
                emit(heartbeat_line([label for label, _ in due], max(s for _, s in due), queued=True))
            else:
                for label, secs in due:
                    emit(heartbeat_line([label], secs, queued=queued))

    thread = threading.Thread(target=beat, name="alhelpers-runner-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
