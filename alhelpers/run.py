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

Each notebook run is one task; a task whose executed notebook already finished (it recorded its
results) is skipped, so an interrupted study continues where it stopped. Executed notebooks go
under ``DIR/notebooks/``, stage outputs under ``DIR/data/``, study tables in ``DIR/``.

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
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from alhelpers.data.paths import REPO_ROOT
from alhelpers.keys import SYSTEMS
from alhelpers.loop import DEFAULT_STRATEGIES
from alhelpers.nb import read_records

NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Task:
    """One notebook execution with its parameters."""

    notebook: str  # file name under notebooks/
    output: Path  # executed notebook
    parameters: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.output.stem


def task_done(task: Task) -> bool:
    """A task is done when its executed notebook exists and recorded its results (and was not
    stopped early by its budget)."""
    if not task.output.exists():
        return False
    rec = read_records(task.output)
    return bool(rec) and not rec.get("stopped")


def execute(task: Task, *, log_output: bool = False) -> dict:
    """Run one notebook through papermill; return what it recorded."""
    import papermill as pm

    task.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = task.output.with_suffix(".running.ipynb")
    pm.execute_notebook(
        str(NOTEBOOKS / task.notebook), str(tmp), parameters=task.parameters,
        kernel_name="python3", progress_bar=False, log_output=log_output, cwd=str(NOTEBOOKS),
    )
    tmp.replace(task.output)  # only a finished run counts as done
    return read_records(task.output)


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
    todo = [t for t in tasks if force or not task_done(t)]
    skipped = len(tasks) - len(todo)
    if skipped:
        print(f"[run] {skipped} finished task(s) skipped", flush=True)
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


def featurize_tasks(
    out: Path, systems: Sequence[str], descriptors: Sequence[str], *, source: str = "snapshot"
) -> tuple[list[Task], list[Task]]:
    """Notebook 01 per system and notebook 02 per (system, descriptor)."""
    data = str(out / "data")
    nbdir = out / "notebooks"
    fetch = [
        Task("01_fetch.ipynb", nbdir / f"01_fetch_{s}.ipynb",
             {"SYSTEM": s, "SOURCE": source, "DATA_DIR": data})
        for s in systems
    ]
    feat = [
        Task("02_featurize.ipynb", nbdir / f"02_featurize_{s}_{d}.ipynb",
             {"SYSTEM": s, "SOURCE": source, "DESCRIPTOR": d, "DATA_DIR": data, "PROGRESS": False})
        for s in systems for d in descriptors
    ]
    return fetch, feat


def al_tasks(out: Path, args: argparse.Namespace) -> list[Task]:
    """Notebook 03 per (system, descriptor, seed)."""
    tasks = []
    for s in args.systems:
        for d in args.descriptors:
            for seed in args.seeds:
                params = {"SYSTEM": s, "SEED": seed, "DESCRIPTOR": d, "SOURCE": args.source,
                          "STRATEGIES": list(args.strategies), "N_INIT": args.n_init,
                          "BATCH": args.batch, "ROUNDS": args.rounds, "MEMBERS": args.members,
                          "SMOKE": args.smoke, "PROGRESS": False,
                          "MAX_WALL_S": args.max_wall_s, "MAX_RAM_MB": args.max_ram_mb,
                          "DATA_DIR": str(out / "data"), "OUT_DIR": str(out)}
                tasks.append(Task("03_active_learning.ipynb",
                                  out / "notebooks" / f"03_active_learning_{s}_{d}_seed{seed}.ipynb",
                                  params))
    return tasks


def cross_tasks(out: Path, args: argparse.Namespace) -> list[Task]:
    """Notebook 06 per (system, descriptor): all seeds and strategies, both directions."""
    return [
        Task("06_cross_database.ipynb", out / "notebooks" / f"06_cross_database_{s}_{d}.ipynb",
             {"SYSTEM": s, "SEEDS": list(args.seeds), "STRATEGIES": list(args.strategies),
              "DESCRIPTOR": d, "SOURCE": args.source, "N_INIT": args.n_init, "BATCH": args.batch,
              "ROUNDS": args.rounds, "MEMBERS": args.members, "SMOKE": args.smoke, "PROGRESS": False,
              "DATA_DIR": str(out / "data"), "OUT_DIR": str(out)})
        for s in args.systems for d in args.descriptors
    ]


def report_tasks(out: Path, args: argparse.Namespace) -> list[Task]:
    """Notebooks 04 and 05 over the whole runs table (rerun every time: they are cheap)."""
    common = {"OUT_DIR": str(out)}
    return [
        Task("04_statistics.ipynb", out / "notebooks" / "04_statistics.ipynb",
             {**common, "N_BOOT": args.n_boot, "SOURCE": args.source, "DATA_DIR": str(out / "data")}),
        Task("05_figures.ipynb", out / "notebooks" / "05_figures.ipynb", common),
    ]


def collect_runs(records: Sequence[dict]) -> pd.DataFrame:
    """Concatenate the per-notebook runs tables into one tidy table."""
    frames = [pd.read_parquet(r["runs_path"]) for r in records]
    return pd.concat(frames, ignore_index=True).sort_values(
        ["system", "descriptor", "strategy", "seed", "round"], kind="mergesort", ignore_index=True)


def _task_key(task: Task, *names: str) -> tuple:
    return tuple(task.parameters.get(n) for n in names)


def _without(tasks: Sequence[Task], failed: set[tuple], *names: str) -> list[Task]:
    """``tasks`` minus those whose inputs came from a failed task; print which are skipped."""
    keep = [t for t in tasks if _task_key(t, *names) not in failed]
    for t in tasks:
        if t not in keep:
            print(f"[run] {t.label}: skipped (its input stage failed)", flush=True)
    return keep


def study(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.executor == "dask" or args.jobs > 1:
        # one BLAS/torch thread per notebook kernel when kernels run side by side
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.ExitStack() as stack:
        client = None
        if args.executor == "dask":
            client = stack.enter_context(dask_client(args.workers, args.scheduler))
            where = args.scheduler or f"LocalCluster with {args.workers} worker(s)"
            print(f"[run] executor: dask ({where})", flush=True)
        return _study(out, args, client)


def _study(out: Path, args: argparse.Namespace, client) -> int:
    t0 = time.perf_counter()
    kw = {"jobs": args.jobs, "force": args.force, "client": client}
    failures: list[TaskFailure] = []

    fetch, feat = featurize_tasks(out, args.systems, args.descriptors, source=args.source)
    res = run_tasks(fetch, **kw)
    failures += res.failures
    bad_systems = {_task_key(t, "SYSTEM") for t in fetch if t not in res.done}
    table1 = pd.DataFrame([r["table1"] for r in res.records])
    if len(table1):
        table1.to_csv(out / "table1.csv", index=False)
    res = run_tasks(_without(feat, bad_systems, "SYSTEM"), **kw)
    failures += res.failures
    bad_feat = {_task_key(t, "SYSTEM", "DESCRIPTOR") for t in feat if t not in res.done}
    if len(table1):
        print("\nTable 1 (offline snapshot after filters):")
        print(table1.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    al = al_tasks(out, args)
    res = run_tasks(_without(al, bad_feat, "SYSTEM", "DESCRIPTOR"), **kw)
    failures += res.failures
    missing = [t.label for t in al if t not in res.done]
    if res.records:
        runs = collect_runs(res.records)
        runs.to_parquet(out / "runs.parquet", index=False)
        final = runs[runs["round"] == runs.groupby(["system", "strategy", "seed"])["round"]
                     .transform("max")]
        summary = (final.groupby(["system", "strategy"])["mae"].agg(["mean", "std", "count"])
                   .rename(columns={"count": "seeds"}))
        print(f"\nFinal-round test MAE (eV/atom), mean ± std over seeds ({len(runs)} rows → "
              "runs.parquet):")
        print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    if missing:
        print(f"\n[run] runs.parquet lacks {len(missing)} of {len(al)} run(s) that did not "
              f"finish: {', '.join(missing)}", flush=True)

    if args.cross_db:
        res = run_tasks(_without(cross_tasks(out, args), bad_feat, "SYSTEM", "DESCRIPTOR"), **kw)
        failures += res.failures

    if failures or missing:
        print(f"\n[run] statistics, figures and report skipped: {len(failures)} task(s) failed "
              "(rerun the same command to retry them; finished tasks are skipped):", flush=True)
        for f in failures:
            print(f"  - {f}", flush=True)
        print(f"[run] finished work kept in {out}; the failed notebooks, executed up to their "
              f"error, are {out / 'notebooks'}/*.running.ipynb", flush=True)
        return 1
    res = run_tasks(report_tasks(out, args), jobs=1, force=True)  # cheap: always rerun, locally
    if not res.ok:
        print("\n[run] report stage failed:", flush=True)
        for f in res.failures:
            print(f"  - {f}", flush=True)
        return 1
    from alhelpers.report import write_report

    config = {k: v for k, v in vars(args).items() if k != "func"}
    report = write_report(out, config=config)
    print(f"[run] report: {report}")
    print(f"\n[run] study stages done in {time.perf_counter() - t0:.1f} s → {out}")
    return 0


def potential_tasks(out: Path, args: argparse.Namespace) -> list[Task]:
    """Notebook 07 per (data set, batch size, seed), all methods in one notebook."""
    return [
        Task("07_bmdal_potentials.ipynb",
             out / "notebooks" / f"07_bmdal_potentials_{args.dataset}_batch{b}_seed{seed}.ipynb",
             {"DATASET": args.dataset, "METHODS": list(args.methods), "BATCH": b, "N_INIT": args.n_init,
              "MAX_SIZE": args.max_size, "SEED": seed, "ORACLE": args.oracle, "EPOCHS": args.epochs,
              "SMOKE": args.smoke, "PROGRESS": False, "OUT_DIR": str(out)})
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
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    tasks = potential_tasks(out, args)
    res = run_tasks(tasks, jobs=args.jobs, force=args.force)
    if res.records:
        runs = pd.concat([pd.read_parquet(r["runs_path"]) for r in res.records], ignore_index=True)
        runs = runs.sort_values(["dataset", "batch", "method", "seed", "round"], kind="mergesort",
                                ignore_index=True)
        runs.to_parquet(out / "potentials_runs.parquet", index=False)
        summary = potential_summary(runs)
        summary.to_csv(out / "potentials_final.csv", index=False)
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
            tests.to_csv(out / "potentials_vs_random.csv", index=False)
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
    s.add_argument("--systems", nargs="+", default=list(SYSTEMS), metavar="SYSTEM")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="SEED")
    s.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), metavar="NAME")
    s.add_argument("--descriptors", nargs="+", default=["magpie"], choices=["magpie", "paper17"])
    s.add_argument("--n-init", type=int, default=30)
    s.add_argument("--batch", type=int, default=15)
    s.add_argument("--rounds", type=int, default=6)
    s.add_argument("--members", type=int, default=5)
    s.add_argument("--smoke", action="store_true", help="tiny runs to check the pipeline")
    s.add_argument("--no-cross-db", dest="cross_db", action="store_false",
                   help="skip the cross-database stage (notebook 06)")
    s.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates in the statistics")
    s.add_argument("--max-wall-s", type=float, default=0,
                   help="wall-time budget per active-learning notebook (0: none); a notebook that "
                        "would exceed it stops after a checkpointed round and the same command resumes")
    s.add_argument("--max-ram-mb", type=float, default=0,
                   help="memory budget per active-learning notebook in MB (0: none)")
    s.add_argument("--source", default="snapshot", choices=["snapshot", "mp", "oqmd"])
    s.add_argument("--out", default="results", help="output folder (default: results)")
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
