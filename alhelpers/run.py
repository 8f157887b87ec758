"""Headless study runner: executes the numbered notebooks through papermill, per system (and seed).

Track B (batch active learning for potentials, notebook 07 per data set, batch size and seed):

    python -m alhelpers.run potentials [--dataset offline|tio2|lmnto|qm9] [--methods …]
                                       [--batch 10] [--seeds 0 1 2 3 4] [--smoke] [--out DIR]

writes ``DIR/potentials_runs.parquet``, ``DIR/potentials_final.csv`` and
``DIR/figures/potentials_*.png``.

    python -m alhelpers.run study [--systems C Si Fe Ti-O] [--seeds 0 1 2 3 4]
                                  [--strategies random uncertainty diversity hybrid]
                                  [--descriptors magpie] [--out results]
                                  [--executor local|dask] [--jobs N] [--workers N]
                                  [--scheduler ADDRESS]

Stages: 01_fetch per system → 02_featurize per (system, descriptor) → 03_active_learning per
(system, descriptor, seed), all rows in ``DIR/runs.parquet`` → 06_cross_database per system →
04_statistics (``final_table.csv``, ``savings.csv``, ``auc.csv``, ``leakage.csv``) →
05_figures (``figures/*.png``) → ``report.md``.

Each notebook run is one task, and its identity is its parameters and inputs: a task is skipped
only when its executed notebook finished with the same parameters, its inputs still have the same
hashes and its outputs are still there (:func:`task_status`); otherwise it reruns and the runner
says why. So an interrupted study continues where it stopped, and a study with other parameters
never reuses old results. One folder holds one configuration (``study.json``): a run with another
one is refused unless ``--replace`` moves the old results aside. Paths follow
:class:`alhelpers.layout.Layout` (the notebooks use the same one), so a results folder can be moved.
Two runners on one folder are refused (a lock).

Executors: ``--executor local`` (default) runs ``--jobs`` notebooks side by side in this process;
``--executor dask`` submits every task of a stage to ``dask.distributed`` (a LocalCluster of
``--workers`` single-threaded worker processes, or the existing cluster at ``--scheduler
ADDRESS``, whose workers must import ``alhelpers`` and see the same paths). The results are the
same either way. A failing task does not stop the others: its error is reported, the stages that
need it are skipped, everything that finished is kept, and the runner exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from alhelpers.data.paths import REPO_ROOT, manifest_path
from alhelpers.files import (UnreadableFileError, atomic_write, read_json, sha256_file, write_csv,
                             write_json, write_parquet)
from alhelpers.formation.config import FeaturizeConfig, FetchConfig
from alhelpers.keys import SYSTEMS
from alhelpers.layout import Layout
from alhelpers.formation.config import DEFAULT_STRATEGIES, ALConfig
from alhelpers.formation.models import EnsembleConfig
from alhelpers.nb import read_records, records_of
from alhelpers.stages import smoke

NOTEBOOKS = REPO_ROOT / "notebooks"


#: Parameters that say where or how visibly a notebook runs, not what it computes.
_NOT_IDENTITY = ("OUT_DIR", "PROGRESS", "DRIVE")
#: The kernel's own log: only errors (its "running over TCP without encryption" warning, printed once
#: per notebook, is about the local connection between runner and kernel; nothing a user can act on).
_KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


@dataclass(frozen=True)
class Task:
    """One notebook execution with its parameters; its identity is its parameters and inputs."""

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


def _root(task: Task) -> Path:
    return Path(task.parameters.get("OUT_DIR") or task.output.parents[1])


def _file_hashes(root: Path, paths) -> dict[str, str | None]:
    """sha256 of each path (relative ones inside ``root``); None for a missing file."""
    out = {}
    for p in paths:
        full = Path(p) if Path(p).is_absolute() else root / p
        out[str(p)] = sha256_file(full) if full.is_file() else None
    return out


def _changed(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    diffs = [f"{k} {old.get(k, '—')!r} → {new.get(k, '—')!r}" for k in keys if old.get(k) != new.get(k)]
    return ", ".join(diffs[:6]) + (" …" if len(diffs) > 6 else "")


def task_status(task: Task) -> tuple[bool, str]:
    """Whether a task is done, and if not why it must run.

    Done means: its executed notebook is readable and finished (not stopped by a budget), it ran
    with the same parameters (:meth:`Task.identity`), its inputs still have the hashes they had,
    and its outputs are still there unchanged.
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
        return False, f"its parameters changed ({_changed(meta.get('params', {}), task.identity())})"
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
    inputs_before = _file_hashes(_root(task), task.inputs)
    pm.execute_notebook(
        str(NOTEBOOKS / task.notebook), str(tmp), parameters=task.parameters,
        kernel_name="python3", progress_bar=False, log_output=log_output, cwd=str(NOTEBOOKS),
        extra_arguments=_KERNEL_ARGS,
    )
    nb = nbformat.read(tmp, as_version=4)
    rec = records_of(nb)
    root = _root(task)
    nb.metadata["alhelpers"] = {
        "params": task.identity(), "params_hash": task.params_hash,
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


def run_tasks(
    tasks: Sequence[Task], *, jobs: int = 1, force: bool = False, client=None
) -> TaskResults:
    """Execute tasks (skipping finished ones unless ``force``).

    Locally ``jobs`` at a time, or on a ``dask.distributed.Client`` when ``client`` is given (each
    task one Dask task). A failing task is recorded in ``failures`` (label and error) and printed;
    the others go on.
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
        print(f"[run] {skipped} finished task(s) skipped (same parameters, inputs and outputs)", flush=True)
    failed: dict[Path, TaskFailure] = {}  # by output (a Task with dict parameters is unhashable)
    from tqdm.auto import tqdm

    # a progress bar over the grid on a terminal; plain lines in logs and CI
    bar = tqdm(total=len(todo), desc="notebooks", unit="nb", disable=not sys.stderr.isatty())

    def report(t: Task, secs: float | None, exc: BaseException | None) -> None:
        if exc is None:
            line = f"[run] {t.label}: {secs:.1f} s"
        else:
            failed[t.output] = TaskFailure(t.label, _describe(exc))
            line = f"[run] {t.label}: FAILED ({failed[t.output].error})"
        bar.write(line) if not bar.disable else print(line, flush=True)
        bar.update(1)

    if client is not None and todo:
        futures = {
            client.submit(execute_task, t, pure=False, key=f"{t.label}-{uuid.uuid4().hex[:8]}"): t
            for t in todo
        }
        from distributed import as_completed as dask_as_completed

        for fut in dask_as_completed(list(futures)):
            try:  # TaskError from the notebook; KilledWorker, cancellation from the cluster
                secs = fut.result()[1]
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001
                report(futures[fut], None, exc)
            else:
                report(futures[fut], secs, None)
            fut.release()
    elif jobs > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            pending = {pool.submit(_execute_task_in_thread, t): t for t in todo}
            for fut in as_completed(pending):
                exc = fut.exception()
                report(pending[fut], None if exc else fut.result()[1], exc)
    else:
        for t in todo:
            try:
                report(t, execute_task(t)[1], None)
            except Exception as exc:  # noqa: BLE001
                report(t, None, exc)
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


def _params(layout: Layout, **kw) -> dict:
    return {**kw, "OUT_DIR": str(layout.root)}


def fetch_config(args: argparse.Namespace, system: str) -> FetchConfig:
    """Notebook 01's config of one system (checks the runner's flags before anything runs)."""
    return FetchConfig(system=system, source=args.source, table_path=args.table or "",
                       target_column=args.target, formula_column=args.formula_column,
                       encoding=args.encoding)


def al_config(args: argparse.Namespace, system: str, descriptor: str, seed: int) -> ALConfig:
    """Notebook 03's config of one run, as the notebook builds it from the runner's parameters."""
    cfg = ALConfig(system=system, source=args.source, descriptor=descriptor, seed=seed,
                   strategies=tuple(args.strategies), n_init=args.n_init, batch_size=args.batch,
                   rounds=args.rounds, model=EnsembleConfig(n_members=args.members))
    return smoke(cfg) if args.smoke else cfg


def _fetch_params(args: argparse.Namespace) -> dict:
    if args.source != "file":
        return {"SOURCE": args.source}
    return {"SOURCE": "file", "TABLE_PATH": str(Path(args.table).resolve()), "TARGET_COLUMN": args.target,
            "FORMULA_COLUMN": args.formula_column, "TABLE_ENCODING": args.encoding}


def featurize_tasks(layout: Layout, args: argparse.Namespace) -> tuple[list[Task], list[Task]]:
    """Notebook 01 per system and notebook 02 per (system, descriptor)."""
    nbdir = layout.notebooks
    source_file = Path(args.table).resolve() if args.source == "file" else manifest_path()
    fetch = [Task("01_fetch.ipynb", nbdir / f"01_fetch_{s}.ipynb",
                  _params(layout, SYSTEM=s, **_fetch_params(args)), inputs=(str(source_file),))
             for s in args.systems]
    feat = [Task("02_featurize.ipynb", nbdir / f"02_featurize_{s}_{d}.ipynb",
                 _params(layout, SYSTEM=s, SOURCE=args.source, DESCRIPTOR=d, PROGRESS=False))
            for s in args.systems for d in args.descriptors]
    return fetch, feat


def _protocol_params(args: argparse.Namespace) -> dict:
    return {"SOURCE": args.source, "STRATEGIES": list(args.strategies), "N_INIT": args.n_init,
            "BATCH": args.batch, "ROUNDS": args.rounds, "MEMBERS": args.members, "SMOKE": args.smoke,
            "PROGRESS": False}


def al_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebook 03 per (system, descriptor, seed)."""
    return [Task("03_active_learning.ipynb",
                 layout.notebooks / f"03_active_learning_{s}_{d}_seed{seed}.ipynb",
                 _params(layout, SYSTEM=s, SEED=seed, DESCRIPTOR=d, **_protocol_params(args),
                         MAX_WALL_S=args.max_wall_s, MAX_RAM_MB=args.max_ram_mb))
            for s in args.systems for d in args.descriptors for seed in args.seeds]


def cross_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebook 06 per (system, descriptor): all seeds and strategies, both directions."""
    return [Task("06_cross_database.ipynb", layout.notebooks / f"06_cross_database_{s}_{d}.ipynb",
                 _params(layout, SYSTEM=s, SEEDS=list(args.seeds), DESCRIPTOR=d, **_protocol_params(args)))
            for s in args.systems for d in args.descriptors]


def report_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebooks 04 and 05 over the runs of this study (rerun every time: they are cheap)."""
    return [
        Task("04_statistics.ipynb", layout.notebooks / "04_statistics.ipynb",
             _params(layout, SYSTEMS=list(args.systems), SEEDS=list(args.seeds),
                     DESCRIPTORS=list(args.descriptors), SOURCE=args.source, SMOKE=args.smoke,
                     N_BOOT=args.n_boot)),
        Task("05_figures.ipynb", layout.notebooks / "05_figures.ipynb", _params(layout)),
    ]


def _task_key(task: Task, *names: str) -> tuple:
    return tuple(task.parameters.get(n) for n in names)


def _without(tasks: Sequence[Task], failed: set[tuple], *names: str) -> list[Task]:
    """``tasks`` minus those whose inputs came from a failed task; print which are skipped."""
    keep = [t for t in tasks if _task_key(t, *names) not in failed]
    for t in tasks:
        if t not in keep:
            print(f"[run] {t.label}: skipped (its input stage failed)", flush=True)
    return keep


def _unique(values: Sequence) -> list:
    return list(dict.fromkeys(values))


def validate_study(args: argparse.Namespace) -> dict:
    """Check the whole study configuration before any notebook runs; return its protocol.

    Builds every notebook's config object from the flags (so a bad ``--batch`` fails here, not
    after notebooks 01–02), merges repeated ``--seeds``/``--systems``/``--strategies``.
    """
    for name in ("systems", "seeds", "strategies", "descriptors"):
        values = getattr(args, name)
        if len(_unique(values)) < len(values):
            print(f"[run] --{name} repeats values: using {_unique(values)}", flush=True)
        setattr(args, name, _unique(values))
    if args.source == "file":
        if not args.table:
            raise ValueError("--source file needs --table PATH (a CSV or parquet file)")
        if not Path(args.table).is_file():
            raise ValueError(f"--table {args.table}: no such file")
    elif args.table:
        raise ValueError("--table is only used with --source file")
    for s in args.systems:
        fetch_config(args, s)
    for d in args.descriptors:
        FeaturizeConfig(source=args.source, descriptor=d)
    cfgs = [al_config(args, s, d, k) for s in args.systems for d in args.descriptors for k in args.seeds]
    if args.n_boot < 1:
        raise ValueError(f"--n-boot must be >= 1, got {args.n_boot}")
    protocol = cfgs[0].protocol()
    if args.source == "file":
        protocol.update(table=str(Path(args.table).resolve()), table_sha256=sha256_file(args.table),
                        target=args.target, formula_column=args.formula_column)
    return protocol


@contextlib.contextmanager
def results_lock(layout: Layout) -> Iterator[None]:
    """Hold the results folder for this runner; another runner on the same folder is refused.

    The lock is an ``flock`` on ``.runner.lock``: the operating system releases it when this
    process ends, however it ends, so a crashed runner never leaves a stale lock.
    """
    import fcntl
    import socket

    layout.root.mkdir(parents=True, exist_ok=True)
    fh = open(layout.lock, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RuntimeError(f"{layout.root} is in use by another runner ({holder}). Wait for it to "
                           "finish, or give this run another --out folder.") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    fh.flush()
    try:
        yield
    finally:
        fh.close()


_STUDY_ITEMS = ("data", "runs", "cross", "figures", "notebooks", "runs.parquet", "table1.csv",
                "final_table.csv", "savings.csv", "auc.csv", "leakage.csv", "report.md", "study.json")


def check_study_folder(layout: Layout, protocol: dict, *, replace: bool) -> None:
    """Refuse to mix two configurations in one folder; with ``replace`` move the old results aside.

    The old results go to ``replaced/<their config id>-<time>/`` (checkpoints stay: they are keyed
    by configuration, so switching back reuses them).
    """
    path = layout.study_config
    if not path.exists():
        return
    try:
        old = read_json(path, todo="")["protocol"]
    except (UnreadableFileError, KeyError, TypeError):
        old = {"study.json": "unreadable"}
    if old == json.loads(json.dumps(protocol, default=str)):
        return
    if not replace:
        raise RuntimeError(
            f"{layout.root} holds the results of another configuration ({_changed(old, protocol)}). "
            f"Give this run another --out folder, or add --replace to move the old results to "
            f"{layout.root / 'replaced'}/.")
    dest = layout.root / "replaced" / f"{_config_id(old)}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for name in _STUDY_ITEMS:
        if (layout.root / name).exists():
            (layout.root / name).rename(dest / name)
    print(f"[run] --replace: the results of the previous configuration moved to {dest}", flush=True)


def _config_id(protocol: dict) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode()).hexdigest()[:10]


def study(args: argparse.Namespace) -> int:
    layout = Layout.at(args.out)
    try:
        protocol = validate_study(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.executor == "dask" or args.jobs > 1:
        # one BLAS/torch thread per notebook kernel when kernels run side by side
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(results_lock(layout))
            check_study_folder(layout, protocol, replace=args.replace)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        write_json(layout.study_config, {"config_id": _config_id(protocol), "protocol": protocol,
                                         "grid": {k: getattr(args, k) for k in
                                                  ("systems", "descriptors", "seeds", "strategies")}})
        client = None
        if args.executor == "dask":
            client = stack.enter_context(dask_client(args.workers, args.scheduler))
            where = args.scheduler or f"LocalCluster with {args.workers} worker(s)"
            print(f"[run] executor: dask ({where})", flush=True)
        return _study(layout, args, client, protocol)


def _study(layout: Layout, args: argparse.Namespace, client, protocol: dict) -> int:
    t0 = time.perf_counter()
    kw = {"jobs": args.jobs, "force": args.force, "client": client}
    failures: list[TaskFailure] = []

    fetch, feat = featurize_tasks(layout, args)
    res = run_tasks(fetch, **kw)
    failures += res.failures
    bad_systems = {_task_key(t, "SYSTEM") for t in fetch if t not in res.done}
    res = run_tasks(_without(feat, bad_systems, "SYSTEM"), **kw)
    failures += res.failures
    bad_feat = {_task_key(t, "SYSTEM", "DESCRIPTOR") for t in feat if t not in res.done}

    al = al_tasks(layout, args)
    res = run_tasks(_without(al, bad_feat, "SYSTEM", "DESCRIPTOR"), **kw)
    failures += res.failures
    missing = [t.label for t in al if t not in res.done]
    if res.done:
        from alhelpers.stages import collect_runs

        done = {_task_key(t, "SYSTEM", "DESCRIPTOR", "SEED") for t in res.done}
        runs = collect_runs(layout, systems=args.systems, descriptors=args.descriptors, seeds=args.seeds)
        runs = runs[[k in done for k in zip(runs["system"], runs["descriptor"], runs["seed"])]]
        write_parquet(layout.runs_table, runs)  # notebook 04 rewrites it, with the same rows
        final = runs[runs["round"] == runs.groupby(["system", "strategy", "seed"])["round"]
                     .transform("max")]
        summary = (final.groupby(["system", "strategy"])["mae"].agg(["mean", "std", "count"])
                   .rename(columns={"count": "seeds"}))
        print(f"\nFinal-round test MAE (eV/atom), mean ± std over seeds ({len(runs)} rows, "
              f"configuration {runs.attrs['config_id']}):")
        print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    if missing:
        print(f"\n[run] {len(missing)} of {len(al)} run(s) did not finish: {', '.join(missing)}", flush=True)

    if args.cross_db:
        res = run_tasks(_without(cross_tasks(layout, args), bad_feat, "SYSTEM", "DESCRIPTOR"), **kw)
        failures += res.failures

    if failures or missing:
        print(f"\n[run] statistics, figures and report skipped: {len(failures)} task(s) failed "
              "(rerun the same command to retry them; finished tasks are skipped):", flush=True)
        for f in failures:
            print(f"  - {f}", flush=True)
        print(f"[run] finished work kept in {layout.root}; the failed notebooks, executed up to their "
              f"error, are {layout.notebooks}/*.running.ipynb", flush=True)
        return 1
    res = run_tasks(report_tasks(layout, args), jobs=1, force=True)  # cheap: always rerun, locally
    if not res.ok:
        print("\n[run] report stage failed:", flush=True)
        for f in res.failures:
            print(f"  - {f}", flush=True)
        return 1
    if layout.table("table1").exists():
        t1 = pd.read_csv(layout.table("table1")).drop(columns=["config_id"])
        print("\nTable 1 (after filters):")
        print(t1.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    from alhelpers.report import write_report

    config = {"config_id": _config_id(protocol), "protocol": protocol,
              **{k: v for k, v in vars(args).items() if k != "func"}}
    report = write_report(layout.root, config=config)
    print(f"[run] report: {report}")
    print(f"\n[run] study stages done in {time.perf_counter() - t0:.1f} s → {layout.root}")
    return 0


def potential_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebook 07 per (data set, batch size, seed), all methods in one notebook."""
    return [
        Task("07_bmdal_potentials.ipynb",
             layout.notebooks / f"07_bmdal_potentials_{args.dataset}_batch{b}_seed{seed}.ipynb",
             _params(layout, DATASET=args.dataset, METHODS=list(args.methods), BATCH=b,
                     N_INIT=args.n_init, MAX_SIZE=args.max_size, SEED=seed, ORACLE=args.oracle,
                     EPOCHS=args.epochs, SMOKE=args.smoke, PROGRESS=False))
        for b in args.batch for seed in args.seeds
    ]


def potential_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Final-round errors and mean times per (data set, batch, method): mean ± std over seeds."""
    last = runs["round"] == runs.groupby(["dataset", "batch", "method", "seed"])["round"].transform("max")
    final = runs[last]
    agg = final.groupby(["dataset", "batch", "method"]).agg(
        n_train=("n_train", "max"), seeds=("seed", "nunique"),
        force_mae=("force_mae", "mean"), force_mae_std=("force_mae", "std"),
        force_rmse=("force_rmse", "mean"), energy_mae=("energy_mae", "mean"),
        energy_mae_std=("energy_mae", "std"), energy_rmse=("energy_rmse", "mean"),
        unc_pearson=("unc_pearson", "mean"))
    times = runs.groupby(["dataset", "batch", "method"])[["train_s", "feature_s", "selection_s"]].mean()
    return agg.join(times.add_prefix("mean_")).reset_index()


def potentials(args: argparse.Namespace) -> int:
    layout = Layout.at(args.out)
    for name in ("seeds", "methods", "batch"):
        setattr(args, name, _unique(getattr(args, name)))
    try:
        with results_lock(layout):
            return _potentials(layout, args)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _potentials(layout: Layout, args: argparse.Namespace) -> int:
    from alhelpers.files import read_parquet

    out = layout.root
    if args.jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    tasks = potential_tasks(layout, args)
    res = run_tasks(tasks, jobs=args.jobs, force=args.force)
    if res.records:
        runs = pd.concat([read_parquet(layout.resolve(r["runs_path"]), todo="Rerun the same command.")
                          for r in res.records], ignore_index=True)
        runs = runs.sort_values(["dataset", "batch", "method", "seed", "round"], kind="mergesort",
                                ignore_index=True)
        write_parquet(out / "potentials_runs.parquet", runs)
        summary = potential_summary(runs)
        write_csv(out / "potentials_final.csv", summary)
        print(f"\nFinal-round test errors, mean ± std over seeds ({len(runs)} rows → potentials_runs.parquet):")
        show = summary.assign(
            force=[f"{m:.4f} ± {s:.4f}" for m, s in zip(summary.force_mae, summary.force_mae_std.fillna(0))],
            energy=[f"{1000 * m:.2f} ± {1000 * s:.2f}" for m, s in zip(summary.energy_mae, summary.energy_mae_std.fillna(0))])
        print(show[["dataset", "batch", "method", "n_train", "seeds", "force", "energy", "unc_pearson",
                    "mean_train_s", "mean_feature_s", "mean_selection_s"]]
              .rename(columns={"force": "force MAE (eV/Å)", "energy": "energy MAE (meV/atom)"})
              .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if "random" in set(runs["method"]) and runs["method"].nunique() > 1:
            from alhelpers.atomistic.al import compare_with_random

            tests = pd.concat([compare_with_random(runs, metric=m).assign(metric=m)
                               .rename(columns={f"{m}_mean": "mean", f"{m}_std": "std"})
                               for m in ("force_mae", "energy_mae")], ignore_index=True)
            write_csv(out / "potentials_vs_random.csv", tests)
            print("\nAgainst random (final round, paired over seeds, Holm-corrected; "
                  "→ potentials_vs_random.csv):")
            print(tests[tests["method"] != "random"][["metric", "batch", "method", "mean", "diff_pct", "p_paired",
                                                      "p_holm", "verdict"]]
                  .to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        from alhelpers import plots

        figs = out / "figures"
        plots.save(plots.potential_curves(runs), figs / f"potentials_curves_{args.dataset}.png")
        if runs["batch"].nunique() > 1:
            plots.save(plots.error_vs_batch(runs), figs / f"potentials_error_vs_batch_{args.dataset}.png")
    if res.failures:
        print(f"\n[run] {len(res.failures)} task(s) failed (rerun the same command; finished ones are skipped):")
        for f in res.failures:
            print(f"  - {f}", flush=True)
        return 1
    print(f"\n[run] potentials done in {time.perf_counter() - t0:.1f} s → {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alhelpers.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("study", help="Track A study over systems and seeds (headless, resumable)")
    s.add_argument("--systems", nargs="+", default=list(SYSTEMS), metavar="SYSTEM",
                   help="material systems (default: C Si Fe Ti-O; any element list like Li-Co-O; "
                        "'all' for every row of your own table)")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="SEED",
                   help="seeds: one split and initial set each, shared by all strategies (default 0-4)")
    s.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), metavar="NAME",
                   help="query strategies (default: random uncertainty diversity hybrid)")
    s.add_argument("--descriptors", nargs="+", default=["magpie"], choices=["magpie", "paper17"],
                   help="descriptor sets (default: magpie)")
    s.add_argument("--n-init", type=int, default=30, help="labelled materials at the start (default 30)")
    s.add_argument("--batch", type=int, default=15, help="materials queried per round (default 15)")
    s.add_argument("--rounds", type=int, default=6, help="train/evaluate rounds (default 6: 30 → 105 labels)")
    s.add_argument("--members", type=int, default=5, help="ensemble members (default 5)")
    s.add_argument("--smoke", action="store_true", help="tiny runs to check the pipeline")
    s.add_argument("--no-cross-db", dest="cross_db", action="store_false",
                   help="skip the cross-database stage (notebook 06)")
    s.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates in the statistics")
    s.add_argument("--max-wall-s", type=float, default=0,
                   help="wall-time budget per active-learning notebook (0: none); a notebook that "
                        "would exceed it stops after a checkpointed round and the same command resumes")
    s.add_argument("--max-ram-mb", type=float, default=0,
                   help="memory budget per active-learning notebook in MB (0: none)")
    s.add_argument("--source", default="snapshot", choices=["snapshot", "mp", "oqmd", "file"],
                   help="where the entries come from: the offline snapshot (default), live Materials "
                        "Project (needs MP_API_KEY), live OQMD, or your own table (--table)")
    s.add_argument("--table", default="", metavar="PATH",
                   help="--source file: your CSV or parquet table (a 'source' column with mp/oqmd "
                        "values enables the cross-database stage)")
    s.add_argument("--target", default="formation_energy_per_atom", metavar="COL",
                   help="--source file: the target column (eV/atom)")
    s.add_argument("--formula-column", default="formula", metavar="COL",
                   help="--source file: the column with chemical formulas")
    s.add_argument("--encoding", default="utf-8", help="--source file: the table's text encoding")
    s.add_argument("--out", default="results", help="output folder (default: results)")
    s.add_argument("--replace", action="store_true",
                   help="the output folder holds another configuration's results: move them to "
                        "OUT/replaced/ and run this one (without it, such a run is refused)")
    s.add_argument("--executor", default="local", choices=["local", "dask"],
                   help="local: --jobs notebooks side by side here (default); dask: each notebook "
                        "a task on a dask.distributed cluster")
    s.add_argument("--jobs", type=int, default=2,
                   help="local executor: notebooks run side by side (default 2)")
    s.add_argument("--workers", type=int, default=2,
                   help="dask executor: worker processes of the LocalCluster (default 2)")
    s.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask executor: use the existing cluster at ADDRESS (e.g. "
                        "tcp://host:8786) instead of a LocalCluster")
    s.add_argument("--force", action="store_true", help="rerun finished tasks too")
    s.set_defaults(func=study)

    from alhelpers.atomistic.al import DEFAULT_METHODS

    t = sub.add_parser("potentials", help="Track B: batch AL for interatomic potentials (headless, resumable)")
    t.add_argument("--dataset", default="offline", choices=["offline", "tio2", "lmnto", "qm9"])
    t.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD")
    t.add_argument("--batch", nargs="+", type=int, default=[10], metavar="B",
                   help="batch size(s); several give the error-vs-batch-size figure")
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="SEED")
    t.add_argument("--n-init", type=int, default=10)
    t.add_argument("--max-size", type=int, default=100)
    t.add_argument("--epochs", type=int, default=0, help="maximum training epochs per round (0: default)")
    t.add_argument("--oracle", default="pool", choices=["pool", "tblite"],
                   help="pool: the set's stored labels; tblite: GFN2-xTB labels computed on the fly")
    t.add_argument("--smoke", action="store_true", help="tiny runs to check the pipeline")
    t.add_argument("--out", default="results", help="output folder (default: results)")
    t.add_argument("--jobs", type=int, default=2, help="notebooks run side by side (default 2)")
    t.add_argument("--force", action="store_true", help="rerun finished tasks too")
    t.set_defaults(func=potentials)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from alhelpers.data.systems import system_elements

    from alhelpers.select import get_strategy

    if getattr(args, "scheduler", None) and args.executor != "dask":
        print("error: --scheduler needs --executor dask", file=sys.stderr)
        return 2
    if getattr(args, "workers", 1) < 1 or getattr(args, "jobs", 1) < 1:
        print("error: --workers and --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        for system in getattr(args, "systems", []):
            if not (system == "all" and getattr(args, "source", "") == "file"):
                system_elements(system)
        for name in getattr(args, "strategies", []):
            get_strategy(name)
        if args.cmd == "potentials":
            from alhelpers.atomistic.al import PotentialsConfig, parse_potential_method

            for name in args.methods:
                parse_potential_method(name)
            for b in args.batch:
                PotentialsConfig(batch=b, n_init=args.n_init, max_size=args.max_size)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
