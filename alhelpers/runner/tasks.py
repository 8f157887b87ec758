"""Notebook tasks and how they run: identity, status, papermill execution, local or Dask executors.

A task is one notebook execution. Its identity is its code, its parameters and its inputs: it is
skipped only when its executed notebook finished with the same code (the notebook's code cells
and the source of the ``alhelpers`` package, :func:`alhelpers.provenance.code_files`), the same
parameters, its inputs still have the same hashes and its outputs are still there
(:func:`task_status`); otherwise it reruns and the runner says why. :func:`results_lock` keeps two runners off one results folder. While tasks run,
:func:`run_tasks` says what it is doing (:mod:`alhelpers.runner.progress`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from alhelpers.data.paths import REPO_ROOT
from alhelpers.files import UnreadableFileError, atomic_write, folder_lock, read_json, sha256_file
from alhelpers.layout import Layout
from alhelpers.nb import read_records, records_of
from alhelpers.provenance import code_files, notebook_code_hash
from alhelpers.runner.progress import HEARTBEAT_S, Progress, format_duration, heartbeat
from alhelpers.threads import kernel_threads, spread_jobs, thread_budget

NOTEBOOKS = REPO_ROOT / "notebooks"


#: Parameters that say where or how visibly a notebook runs, not what it computes.
_NOT_IDENTITY = ("OUT_DIR", "PROGRESS", "DRIVE")
#: The kernel's own log: only errors (its "running over TCP without encryption" warning, printed once
#: per notebook, is about the local connection between runner and kernel; nothing a user can act on).
_KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
#: Seconds a notebook's kernel may take to start (papermill's default, 60 s, is too short on a
#: 2-core machine running two notebooks and other work beside them).
KERNEL_START_S: int = 300
#: How a notebook's kernel ends once its last cell has run: ``"immediate"`` (killed) instead of
#: papermill's graceful shutdown, which waits for the interpreter to tear down torch, pandas and the
#: rest (about 1 s a notebook here, measured; 34 notebooks in the default study). Nothing is lost:
#: every output came back with its cell, and every file a notebook writes is closed by then
#: (:func:`alhelpers.files.atomic_write`).
KERNEL_SHUTDOWN: str = "immediate"


@dataclass(frozen=True)
class Task:
    """One notebook execution with its parameters; its identity is its code, parameters and inputs."""

    notebook: str  # file name under notebooks/
    output: Path  # executed notebook
    parameters: dict = field(default_factory=dict)
    inputs: tuple[str, ...] = ()  # files outside the results folder it reads (absolute paths)

    @property
    def label(self) -> str:
        return self.output.stem

    def identity(self) -> dict:
        """The parameters that decide what the notebook computes (not where it writes)."""
        return {k: v for k, v in sorted(self.parameters.items()) if k not in _NOT_IDENTITY}

    @property
    def params_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def code(self) -> dict[str, str]:
        """The code the task runs: its notebook's code cells and every source file of the package
        (short hashes by path; :func:`alhelpers.provenance.code_files`)."""
        return {f"notebooks/{self.notebook}": notebook_code_hash(NOTEBOOKS / self.notebook), **code_files()}


def _root(task: Task) -> Path:
    return Path(task.parameters.get("OUT_DIR") or task.output.parents[1])


def _file_hashes(root: Path, paths) -> dict[str, str | None]:
    """sha256 of each path (relative ones inside ``root``); None for a missing file."""
    out = {}
    for p in paths:
        full = Path(p) if Path(p).is_absolute() else root / p
        out[str(p)] = sha256_file(full) if full.is_file() else None
    return out


def as_saved(value):
    """``value`` as JSON would give it back: tuples as lists, keys as strings (so a saved
    configuration compares equal to the one that made it)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


_ABSENT = object()


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested dicts as one level of dotted keys (``model.epochs``)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def describe_changes(old: dict, new: dict) -> str:
    """What differs between two parameter dicts, e.g. ``SEED 0 → 1`` or ``model.epochs 200 → 20``.

    Both are compared as saved (:func:`as_saved`: a tuple equals the list it is saved as) and nested
    dicts by their dotted keys, so only the values that really differ are named.
    """
    old, new = _flat(as_saved(old)), _flat(as_saved(new))
    keys = sorted(set(old) | set(new))

    def show(d: dict, k: str) -> str:
        return "—" if k not in d else repr(d[k])

    diffs = [f"{k} {show(old, k)} → {show(new, k)}" for k in keys if old.get(k, _ABSENT) != new.get(k, _ABSENT)]
    return ", ".join(diffs[:6]) + (" …" if len(diffs) > 6 else "")


def describe_code_changes(old: dict, new: dict) -> str:
    """The files whose code differs between two :meth:`Task.code` records (first four named)."""
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")


def task_status(task: Task) -> tuple[bool, str]:
    """Whether a task is done, and if not why it must run.

    Done means: its executed notebook is readable and finished (not stopped by a budget), it ran
    with the same parameters (:meth:`Task.identity`) and the same code (:meth:`Task.code`), its
    inputs still have the hashes they had, and its outputs are still there unchanged.
    """
    if not task.output.exists():
        return False, "not run yet"
    try:
        nb = read_json(task.output, todo="It is rerun.")
    except UnreadableFileError as err:
        return False, str(err)
    meta = nb.get("metadata", {}).get("alhelpers") if isinstance(nb, dict) else None
    if not meta:
        return False, "its executed notebook has no record of its parameters: it is rerun"
    if meta.get("params_hash") != task.params_hash:
        return False, f"its parameters changed ({describe_changes(meta.get('params', {}), task.identity())})"
    code = meta.get("code")
    if not isinstance(code, dict):
        return False, "its executed notebook has no record of the code that ran it: it is rerun"
    now = task.code()
    if code != now:
        return False, f"its code changed since it ran ({describe_code_changes(code, now)})"
    if records_of(nb).get("stopped"):
        return False, "it was stopped by its budget: it continues from its checkpoints"
    root = _root(task)
    for kind in ("inputs", "outputs"):
        recorded = meta.get(kind, {})
        now = _file_hashes(root, recorded)
        for p, h in recorded.items():
            if now[p] != h:
                what = "is missing" if now[p] is None else "changed since then"
                return False, f"its {kind[:-1]} {p} {what}"
    return True, "done"


def task_done(task: Task) -> bool:
    return task_status(task)[0]


#: Kernel managers of the notebooks running in this process (for :func:`kill_live_kernels`).
_LIVE_KERNELS: weakref.WeakSet = weakref.WeakSet()


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """No log records at all inside (restored after)."""
    import logging

    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def kill_live_kernels() -> int:
    """Kill the kernels of the notebooks this process is running (SIGKILL to each kernel's
    process group; jupyter_client starts each kernel in a session of its own); return how many.

    For an interrupted runner: a kernel shut down while it is busy prints tracebacks of its
    closed sockets, and its work is lost either way (every finished round is checkpointed).
    """
    import signal

    n = 0
    for km in list(_LIVE_KERNELS):
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        if not pid:
            continue
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            n += 1
    return n


@functools.cache
def _kernel_manager_class() -> type:
    """:class:`jupyter_client.AsyncKernelManager` that does not interrupt a kernel it shuts down.

    jupyter_client sends SIGINT to a kernel before asking it to shut down. A kernel that is
    handling a message at that moment prints ``[IPKernelApp] ERROR | KeyboardInterrupt caught in
    kernel.`` (at random, after 2 of 36 smoke notebooks here, so a few times in a study): an
    error line after a notebook that finished, nothing a user can act on. The shutdown request
    goes over the control channel, which ipykernel serves even while busy, and a kernel that does
    not exit in time is still terminated and killed, so the interrupt is not needed.
    """
    from jupyter_client import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            _LIVE_KERNELS.add(self)

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:  # set by shutdown_kernel before it interrupts
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def execute(task: Task, *, log_output: bool = False) -> dict:
    """Run one notebook through papermill; return what it recorded.

    The executed notebook is written under a temporary, per-process name and renamed into place
    only when it finished, with a record of its parameters and the hashes of its inputs and
    outputs (what :func:`task_status` checks).
    """
    import nbformat
    import papermill as pm

    task.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = task.output.with_name(f"{task.output.stem}.{os.getpid()}-{uuid.uuid4().hex[:6]}.running.ipynb")
    code = task.code()  # before the kernel starts: the code it imports
    inputs_before = _file_hashes(_root(task), task.inputs)
    pm.execute_notebook(
        str(NOTEBOOKS / task.notebook), str(tmp), parameters=task.parameters,
        kernel_name="python3", progress_bar=False, log_output=log_output, cwd=str(NOTEBOOKS),
        extra_arguments=_KERNEL_ARGS, start_timeout=KERNEL_START_S,
        kernel_manager_class=_kernel_manager_class(), shutdown_kernel=KERNEL_SHUTDOWN,
    )
    nb = nbformat.read(tmp, as_version=4)
    rec = records_of(nb)
    root = _root(task)
    nb.metadata["alhelpers"] = {
        "params": task.identity(), "params_hash": task.params_hash, "code": code,
        "inputs": {**inputs_before, **_file_hashes(root, rec.get("inputs", []))},
        "outputs": _file_hashes(root, rec.get("outputs", [])),
    }
    atomic_write(task.output, lambda p: nbformat.write(nb, p))
    for old in task.output.parent.glob(f"{task.output.stem}.*.running.ipynb"):  # this and failed tries
        old.unlink(missing_ok=True)
    return rec


class TaskError(RuntimeError):
    """A notebook run failed; the message names the error (picklable, unlike papermill's)."""


def _describe(exc: BaseException) -> str:
    """A one-line description of why a task failed."""
    ename, evalue = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if ename is not None:  # papermill.PapermillExecutionError: the notebook's own exception
        return f"{ename}: {evalue} (at In [{getattr(exc, 'exec_count', '?')}])"
    if isinstance(exc, TaskError):
        return str(exc)
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".rstrip(": ")


def execute_task(task: Task) -> tuple[dict, float]:
    """Run one task (in this process or on a Dask worker); return its records and its seconds.

    Any failure is raised as :class:`TaskError` with a short message, so that it crosses process
    boundaries intact. The partly executed notebook stays at ``*.running.ipynb``.
    """
    t0 = time.perf_counter()
    try:
        rec = execute(task)
    except Exception as exc:  # noqa: BLE001 -- reported per task, the others go on
        raise TaskError(_describe(exc)) from None
    if rec.get("stopped"):  # a budget stop: checkpoints kept, the same command continues
        raise TaskError(f"stopped by its budget: {rec['stopped']}")
    return rec, time.perf_counter() - t0


@dataclass(frozen=True)
class TaskFailure:
    """A task that did not finish, and why."""

    label: str
    error: str

    def __str__(self) -> str:
        return f"{self.label}: {self.error}"


@dataclass
class TaskResults:
    """What :func:`run_tasks` got: the finished tasks' records (in task order) and the failures."""

    records: list[dict]
    failures: list[TaskFailure]
    done: list[Task]  # finished tasks (now or before), in task order

    @property
    def ok(self) -> bool:
        return not self.failures


def _execute_task_in_thread(task: Task) -> tuple[dict, float]:
    """:func:`execute_task` on a pool thread, closing the event loop papermill's client made there.

    ``jupyter_core`` gives each thread its own asyncio loop and never closes it; when the pool's
    threads end, the loops would be garbage-collected open (a ``ResourceWarning``, and two
    sockets and a selector each until then). Pool threads never run a loop themselves.
    """
    try:
        return execute_task(task)
    finally:
        from jupyter_core.utils import ensure_event_loop

        ensure_event_loop().close()


def _dask_threads(client) -> int:
    """Tasks the Dask cluster runs side by side (its worker threads; 1 if it cannot say)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 -- only for the time left
        return 1


@contextlib.contextmanager
def _ctrl_c_remembered() -> Iterator[threading.Event]:
    """While the runner waits for its notebooks: a SIGINT handler that remembers the Ctrl-C as well
    as raising :class:`KeyboardInterrupt` (restored afterwards; only in the main thread).

    Python swallows a ``KeyboardInterrupt`` raised while the main thread runs a finaliser
    (``__del__``, a weakref callback: "Exception ignored in …"), so a Ctrl-C at that moment would be
    lost and the runner would go on with every notebook left; the waiting loop checks the event.
    """
    import signal

    pressed = threading.Event()
    before = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or before is not signal.default_int_handler:
        yield pressed  # SIGINT ignored (nohup, a background job of a script) or handled by someone else: theirs
        return

    def on_sigint(signum, frame) -> None:
        pressed.set()
        before(signum, frame)  # Python's own: raises KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, before)


def _finished(futures: Iterable, pressed: threading.Event) -> Iterator:
    """The ``futures`` as they finish, like ``as_completed``, raising :class:`KeyboardInterrupt`
    once Ctrl-C was pressed, even where Python swallowed its own."""
    pending = set(futures)
    while pending:
        if pressed.is_set():
            raise KeyboardInterrupt
        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        if pressed.is_set():
            raise KeyboardInterrupt
        yield from done


def run_tasks(
    tasks: Sequence[Task], *, jobs: int | None = 1, force: bool = False, client=None,
    heartbeat_s: float | None = None,
) -> TaskResults:
    """Execute tasks (skipping finished ones unless ``force``).

    Locally ``jobs`` at a time (None: :func:`~alhelpers.threads.spread_jobs` of the tasks to run
    and this machine's cores), or on a ``dask.distributed.Client`` when ``client`` is given (each
    task one Dask task). A failing task is recorded in ``failures`` (label and error) and printed;
    the others go on. Each finished task prints ``[run] k/N label: seconds · elapsed … · about …
    left`` (N: the tasks run now, finished ones skipped; :func:`estimate_left`), and a task in
    flight ``still running`` every ``heartbeat_s`` seconds (default :data:`HEARTBEAT_S`).
    """
    todo = []
    for t in tasks:
        done, why = (False, "forced") if force else task_status(t)
        if not done:
            todo.append(t)
            if why != "not run yet" and not force:
                print(f"[run] {t.label}: rerun — {why}", flush=True)
    skipped = len(tasks) - len(todo)
    if skipped:
        print(f"[run] {skipped} finished task(s) skipped (same code, parameters, inputs and outputs)", flush=True)
    if jobs is None:
        jobs = spread_jobs(len(todo), os.cpu_count() or 1)
    failed: dict[Path, TaskFailure] = {}  # by output (a Task with dict parameters is unhashable)
    from tqdm.auto import tqdm

    local_pool = client is None and jobs > 1 and len(todo) > 1
    if client is not None:
        parallel = _dask_threads(client) if todo else 1
    else:
        parallel = min(jobs, len(todo)) if local_pool else 1
    progress = Progress(todo, parallel, queued=client is not None)
    if len(todo) == 1:
        print(f"[run] {todo[0].label}: running", flush=True)
    elif todo:
        kinds = ", ".join(f"{Path(nb).stem} × {n}" for nb, n in progress.remaining.items())
        where = "on Dask" if client is not None else f"{parallel} at a time"
        print(f"[run] {len(todo)} notebooks to run ({kinds}), {where}", flush=True)
    # a progress bar over the grid on a terminal; plain lines in logs and CI
    bar = tqdm(total=len(todo), desc="notebooks", unit="nb", disable=not sys.stderr.isatty())
    say = threading.Lock()

    def emit(line: str) -> None:
        with say:
            bar.write(line) if not bar.disable else print(line, flush=True)

    def report(t: Task, secs: float | None, exc: BaseException | None) -> None:
        if exc is None:
            outcome = format_duration(secs)
        else:
            failed[t.output] = TaskFailure(t.label, _describe(exc))
            outcome = f"FAILED ({failed[t.output].error})"
        emit(progress.finished(t, secs, outcome))
        with say:
            bar.update(1)

    def in_pool(t: Task) -> tuple[dict, float]:
        progress.started(t)
        return _execute_task_in_thread(t)

    interval = HEARTBEAT_S if heartbeat_s is None else heartbeat_s
    try:
        with heartbeat(progress, interval, emit, queued=client is not None):
            if client is not None and todo:
                futures = {}
                for t in todo:
                    futures[client.submit(execute_task, t, pure=False,
                                          key=f"{t.label}-{uuid.uuid4().hex[:8]}")] = t
                    progress.started(t)  # submitted: running or queued
                from distributed import as_completed as dask_as_completed

                for fut in dask_as_completed(list(futures)):
                    try:  # TaskError from the notebook; KilledWorker, cancellation from the cluster
                        secs = fut.result()[1]
                    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001
                        report(futures[fut], None, exc)
                    else:
                        report(futures[fut], secs, None)
                    fut.release()
            elif local_pool:
                with (thread_budget(jobs, len(todo)) as budget, kernel_threads(jobs),
                      _ctrl_c_remembered() as pressed, ThreadPoolExecutor(jobs) as pool):
                    pending = {pool.submit(in_pool, t): t for t in todo}
                    try:
                        for fut in _finished(pending, pressed):
                            if budget is not None:
                                budget.finished()
                            exc = fut.exception()
                            report(pending[fut], None if exc else fut.result()[1], exc)
                    except KeyboardInterrupt:  # the pool's threads end once their kernels are gone
                        with _quiet_logging():  # nbclient's "Kernel died …" from each thread
                            kill_live_kernels()
                            pool.shutdown(wait=True, cancel_futures=True)
                        raise
            else:
                for t in todo:
                    progress.started(t)
                    try:
                        secs = execute_task(t)[1]
                    except Exception as exc:  # noqa: BLE001
                        report(t, None, exc)
                    else:
                        report(t, secs, None)
    except KeyboardInterrupt:
        with _quiet_logging():
            kill_live_kernels()
        raise
    finally:
        bar.close()
    done = [t for t in tasks if t.output not in failed]
    return TaskResults([read_records(t.output) for t in done],
                       [failed[t.output] for t in tasks if t.output in failed], done)


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None) -> Iterator:
    """A ``dask.distributed`` client: on the cluster at ``scheduler``, or on a new LocalCluster.

    The LocalCluster has ``workers`` worker processes with one thread each and
    ``OMP_NUM_THREADS=1`` (one notebook kernel per worker, no oversubscription). Client and
    cluster are closed on exit.
    """
    from distributed import Client, LocalCluster

    cluster = None
    client = None
    try:
        if scheduler:
            client = Client(scheduler)
        else:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            )
            client = Client(cluster)
        yield client
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def task_params(layout: Layout, **kw) -> dict:
    """A task's notebook parameters: ``kw`` and the results folder."""
    return {**kw, "OUT_DIR": str(layout.root)}


def unique(values: Sequence) -> list:
    """``values`` without repeats, in order."""
    return list(dict.fromkeys(values))


@contextlib.contextmanager
def results_lock(layout: Layout) -> Iterator[None]:
    """Hold the results folder for this runner; another runner on the same folder is refused
    (:func:`alhelpers.files.folder_lock` on ``.runner.lock``, released however the process ends)."""
    with folder_lock(layout.lock, f"{layout.root} is in use by another runner ({{holder}}). Wait for it to "
                                  "finish, or give this run another --out folder."):
        yield
