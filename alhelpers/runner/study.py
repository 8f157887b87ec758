"""Track A's study: the notebook grid per system, descriptor and seed, stage by stage.

Stages: 01_fetch per system → 02_featurize per (system, descriptor) → 03_active_learning per
(system, descriptor, seed), all rows in ``runs.parquet`` → 06_cross_database per system →
04_statistics → 05_figures → ``report.md``. One folder holds one configuration (``study.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from alhelpers.al.runs import common_budget, final_round
from alhelpers.data.systems import canonical_system
from alhelpers.data.paths import manifest_path
from alhelpers.files import (
    UnreadableFileError,
    read_csv,
    read_json,
    sha256_file,
    write_json,
    write_parquet,
)
from alhelpers.formation.config import ALConfig, EnsembleConfig, FeaturizeConfig, FetchConfig
from alhelpers.layout import Layout
from alhelpers.paired import mean_std_text
from alhelpers.runner.tasks import (
    Task,
    TaskFailure,
    dask_client,
    as_saved,
    describe_changes,
    results_lock,
    run_tasks,
    task_params,
    unique,
)
from alhelpers.stages import smoke


def fetch_config(args: argparse.Namespace, system: str) -> FetchConfig:
    """Notebook 01's config of one system (checks the runner's flags before anything runs)."""
    return FetchConfig(system=system, source=args.source, table_path=args.table or "",
                       target_column=args.target, formula_column=args.formula_column,
                       encoding=args.encoding)


def al_config(args: argparse.Namespace, system: str, descriptor: str, seed: int) -> ALConfig:
    """Notebook 03's config of one run, as the notebook builds it from the runner's parameters."""
    cfg = ALConfig(system=system, source=args.source, descriptor=descriptor, seed=seed,
                   strategies=tuple(args.strategies), n_init=args.n_init, batch=args.batch,
                   rounds=args.rounds, target_mae=args.target_mae, calibration=args.calibration,
                   model=EnsembleConfig(n_members=args.members))
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
                  task_params(layout, SYSTEM=s, **_fetch_params(args)), inputs=(str(source_file),))
             for s in args.systems]
    feat = [Task("02_featurize.ipynb", nbdir / f"02_featurize_{s}_{d}.ipynb",
                 task_params(layout, SYSTEM=s, SOURCE=args.source, DESCRIPTOR=d, PROGRESS=False))
            for s in args.systems for d in args.descriptors]
    return fetch, feat


def _protocol_params(args: argparse.Namespace) -> dict:
    return {"SOURCE": args.source, "STRATEGIES": list(args.strategies), "N_INIT": args.n_init,
            "BATCH": args.batch, "ROUNDS": args.rounds, "MEMBERS": args.members, "TARGET_MAE": args.target_mae,
            "SMOKE": args.smoke,
            "PROGRESS": False}


def al_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebook 03 per (system, descriptor, seed)."""
    return [Task("03_active_learning.ipynb",
                 layout.notebooks / f"03_active_learning_{s}_{d}_seed{seed}.ipynb",
                 task_params(layout, SYSTEM=s, SEED=seed, DESCRIPTOR=d, **_protocol_params(args),
                             CALIBRATION=args.calibration, MAX_WALL_S=args.max_wall_s, MAX_RAM_MB=args.max_ram_mb))
            for s in args.systems for d in args.descriptors for seed in args.seeds]


def cross_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebook 06 per (system, descriptor): all seeds and strategies, both directions."""
    return [Task("06_cross_database.ipynb", layout.notebooks / f"06_cross_database_{s}_{d}.ipynb",
                 task_params(layout, SYSTEM=s, SEEDS=list(args.seeds), DESCRIPTOR=d, **_protocol_params(args)))
            for s in args.systems for d in args.descriptors]


def report_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebooks 04 and 05 over the runs of this study (rerun every time: they are cheap)."""
    return [
        Task("04_statistics.ipynb", layout.notebooks / "04_statistics.ipynb",
             task_params(layout, SYSTEMS=list(args.systems), SEEDS=list(args.seeds),
                     DESCRIPTORS=list(args.descriptors), SOURCE=args.source, SMOKE=args.smoke,
                     N_BOOT=args.n_boot)),
        Task("05_figures.ipynb", layout.notebooks / "05_figures.ipynb", task_params(layout)),
    ]


def interleave(long: Sequence[Task], short: Sequence[Task]) -> list[Task]:
    """One queue of two kinds of tasks: the long ones early, each beside a short one, then the
    rest of the short ones. The long ones (the cross-database notebooks, about 4× an AL notebook)
    never end a stage on one core while the other idles, and the first short task to finish gives
    the time left (:func:`alhelpers.runner.progress.estimate_left`) its duration within seconds,
    not the long ones' mean for every task."""
    out = []
    for k, task in enumerate(long):
        out += [task, *short[k : k + 1]]
    return out + list(short[len(long):])


def _task_key(task: Task, *names: str) -> tuple:
    return tuple(task.parameters.get(n) for n in names)


def _without(tasks: Sequence[Task], failed: set[tuple], *names: str) -> list[Task]:
    """``tasks`` minus those whose inputs came from a failed task; print which are skipped."""
    keep = [t for t in tasks if _task_key(t, *names) not in failed]
    for t in tasks:
        if t not in keep:
            print(f"[run] {t.label}: skipped (its input stage failed)", flush=True)
    return keep


def validate_study(args: argparse.Namespace) -> dict:
    """Check the whole study configuration before any notebook runs; return its protocol.

    Builds every notebook's config object from the flags (so a bad ``--batch`` fails here, not
    after notebooks 01–02), writes each system by its one name (:func:`canonical_system`:
    ``O-Ti`` is ``Ti-O``) and merges repeated ``--seeds``/``--systems``/``--strategies``.
    """
    named = [canonical_system(s) for s in args.systems]  # "all" stays "all"
    renamed = [f"{s} is {c}" for s, c in zip(args.systems, named, strict=True) if s != c]
    if renamed:
        print(f"[run] --systems: {', '.join(renamed)} (one name per set of elements)", flush=True)
    args.systems = named
    for name in ("systems", "seeds", "strategies", "descriptors"):
        values = getattr(args, name)
        if len(unique(values)) < len(values):
            print(f"[run] --{name} repeats values: using {unique(values)}", flush=True)
        setattr(args, name, unique(values))
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


def _read_protocol(layout: Layout) -> dict | None:
    """The protocol ``study.json`` records; None when there is none. An unreadable or incomplete
    ``study.json`` raises :class:`UnreadableFileError` naming it (the folder's configuration is
    then unknown, and nothing in it can be reused or mixed with this run)."""
    path = layout.study_config
    if not path.exists():
        return None
    todo = (f"It records which configuration the results in {layout.root} belong to, so they cannot be "
            "reused or mixed with this run: add --replace to move them aside (to "
            f"{layout.root / 'replaced'}/) and run this configuration, or give this run another --out folder.")
    study = read_json(path, todo=todo)
    if not isinstance(study, dict) or not isinstance(study.get("protocol"), dict):
        raise UnreadableFileError(path, "it has no 'protocol' record", todo)
    return study["protocol"]


def _restore_partial_move(layout: Layout) -> None:
    """Put back an old study whose ``--replace`` move was interrupted (a ``replaced/*.partial``
    folder: the runner was killed part-way), so that the folder holds one whole study again."""
    for staging in sorted((layout.root / "replaced").glob("*.partial")):
        for src in sorted(staging.rglob("*"), key=lambda p: len(p.parts)):
            if not src.exists() or src == staging / "notebooks":
                continue
            dest = layout.root / src.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                raise RuntimeError(
                    f"an interrupted --replace left {src}, and {dest} exists too: move one of them away by hand "
                    "(the old study is in the .partial folder), then run again.")
            os.replace(src, dest)
        shutil.rmtree(staging)
        print(f"[run] an interrupted --replace was undone: the old study is back in {layout.root}", flush=True)


def move_study(layout: Layout, dest: Path) -> None:
    """Move Track A's study out of ``layout.root`` into ``dest`` as one unit (:meth:`Layout.study_paths`,
    ``study.json`` last).

    The items go into ``dest.partial`` first, which becomes ``dest`` once all are there. When one
    cannot be moved, those already moved are put back and a ``RuntimeError`` names the item and
    says what to do: the old study stays whole where it was. A runner killed part-way leaves the
    ``.partial`` folder, which the next run puts back (:func:`_restore_partial_move`).
    """
    staging = dest.with_name(dest.name + ".partial")
    moved: list[tuple[Path, Path]] = []
    try:
        for src in layout.study_paths():
            target = staging / src.relative_to(layout.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, target)
            moved.append((src, target))
    except OSError as err:
        failed = src
        for back, target in reversed(moved):
            os.rename(target, back)
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(
            f"--replace could not move {failed} ({err.strerror or err}); nothing was moved, the old study is whole "
            f"in {layout.root}. Make that file movable (check its permissions and that no program holds it), or "
            "give this run another --out folder, then run again.") from None
    os.rename(staging, dest)


def check_study_folder(layout: Layout, protocol: dict, *, replace: bool) -> None:
    """Refuse to mix two configurations in one folder; with ``replace`` move the old results aside.

    The old study goes to ``replaced/<its config id>-<time>/`` as one unit (:func:`move_study`;
    checkpoints stay: they are keyed by configuration and code, so switching back reuses them).
    An unreadable ``study.json`` is named: the folder's configuration is then unknown.
    """
    _restore_partial_move(layout)
    try:
        old = _read_protocol(layout)
    except UnreadableFileError as err:
        if not replace:
            raise RuntimeError(str(err)) from None
        old = {"study.json": "unreadable"}
    if old is None or as_saved(old) == as_saved(protocol):
        return
    if not replace:
        raise RuntimeError(
            f"{layout.root} holds the results of another configuration ({describe_changes(old, protocol)}). "
            f"Give this run another --out folder, or add --replace to move the old results to "
            f"{layout.root / 'replaced'}/.")
    dest = layout.root / "replaced" / f"{_config_id(old)}-{time.strftime('%Y%m%d-%H%M%S')}"
    while dest.exists() or dest.with_name(dest.name + ".partial").exists():
        dest = dest.with_name(dest.name + "-1")
    move_study(layout, dest)
    print(f"[run] --replace: the results of the previous configuration moved to {dest}", flush=True)


def _config_id(protocol: dict) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, default=str).encode()).hexdigest()[:10]


def study(args: argparse.Namespace) -> int:
    try:
        layout = Layout.at(args.out)
        protocol = validate_study(args)
        layout.check_not_foreign()
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(results_lock(layout))
            check_study_folder(layout, protocol, replace=args.replace)
        except (RuntimeError, OSError) as err:
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

    # the cross-database notebooks need only the features: they share one pool with the AL
    # notebooks, so no core idles at the end of either stage
    al = al_tasks(layout, args)
    cross = cross_tasks(layout, args) if args.cross_db else []
    res = run_tasks(interleave(_without(cross, bad_feat, "SYSTEM", "DESCRIPTOR"),
                               _without(al, bad_feat, "SYSTEM", "DESCRIPTOR")), **kw)
    failures += res.failures
    missing = [t.label for t in al if t not in res.done]
    if len(missing) < len(al):
        from alhelpers.stages import collect_runs

        done = {_task_key(t, "SYSTEM", "DESCRIPTOR", "SEED") for t in res.done}
        runs = collect_runs(layout, systems=args.systems, descriptors=args.descriptors, seeds=args.seeds)
        runs = runs[[k in done for k in zip(runs["system"], runs["descriptor"], runs["seed"])]]
        write_parquet(layout.runs_table, runs)  # notebook 04 rewrites it, with the same rows
        budget = common_budget(runs)  # a stopping rule ends runs early: compare where all have labels
        final = final_round(budget.runs)
        summary = final.groupby(["system", "strategy"], sort=False).agg(
            n_labelled=("n_labelled", "max"), mae_mean=("mae", "mean"), mae_std=("mae", "std"),
            seeds=("seed", "nunique")).reset_index()
        summary["MAE"] = [mean_std_text(m, s, k) for m, s, k in zip(summary.mae_mean, summary.mae_std, summary.seeds)]
        print(f"\nFinal-round test MAE (eV/atom), mean ± std over seeds ({len(runs)} rows, "
              f"configuration {runs.attrs['config_id']}, code {runs.attrs.get('code_id', 'unknown')}):")
        print(summary[["system", "strategy", "n_labelled", "seeds", "MAE"]].to_string(index=False))
        for _, r in budget.stopped.iterrows():
            print(f"  {r['system']} {r['strategy']} seed {r['seed']} stopped at {r['n_labelled']:g} labels: "
                  f"{r['note'] or 'no note'}")
        if len(budget.stopped):
            print("  (each system's strategies are compared at the budget every run reached: n_labelled above)")
    if missing:
        print(f"\n[run] {len(missing)} of {len(al)} run(s) did not finish: {', '.join(missing)}", flush=True)

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
        t1 = read_csv(layout.table("table1")).drop(columns=["config_id"])
        print("\nTable 1 (after filters):")
        print(t1.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    from alhelpers.report import write_report

    config = {"config_id": _config_id(protocol), "protocol": protocol,
              **{k: v for k, v in vars(args).items() if k != "func"}}
    report = write_report(layout.root, config=config, wall_s=time.perf_counter() - t0)
    print(f"[run] report: {report} and {report.with_suffix('.html')} (figures embedded: one file to send)")
    print(f"\n[run] study stages done in {time.perf_counter() - t0:.1f} s → {layout.root}")
    return 0
