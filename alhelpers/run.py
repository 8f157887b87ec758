"""Headless study runner: executes the numbered notebooks through papermill, per system (and seed).

    python -m alhelpers.run study [--systems C Si Fe Ti-O] [--seeds 0 1 2 3 4]
                                  [--strategies random uncertainty diversity hybrid]
                                  [--descriptors magpie] [--out results]

Stages: 01_fetch per system → 02_featurize per (system, descriptor) → 03_active_learning per
(system, descriptor, seed), all rows in ``DIR/runs.parquet`` → 06_cross_database per system →
04_statistics (``final_table.csv``, ``savings.csv``, ``auc.csv``, ``leakage.csv``) →
05_figures (``figures/*.png``) → ``report.md``.

Each notebook run is one task; a task whose executed notebook already finished (it recorded its
results) is skipped, so an interrupted study continues where it stopped. Executed notebooks go
under ``DIR/notebooks/``, stage outputs under ``DIR/data/``, study tables in ``DIR/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """A task is done when its executed notebook exists and recorded its results."""
    return task.output.exists() and bool(read_records(task.output))


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


def run_tasks(tasks: Sequence[Task], *, jobs: int = 1, force: bool = False) -> list[dict]:
    """Execute tasks (skipping finished ones unless ``force``), ``jobs`` at a time."""
    todo = [t for t in tasks if force or not task_done(t)]
    skipped = len(tasks) - len(todo)
    if skipped:
        print(f"[run] {skipped} finished task(s) skipped", flush=True)

    def one(t: Task) -> dict:
        t0 = time.perf_counter()
        rec = execute(t)
        print(f"[run] {t.label}: {time.perf_counter() - t0:.1f} s", flush=True)
        return rec

    if jobs > 1 and len(todo) > 1:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, todo))
    else:
        for t in todo:
            one(t)
    return [read_records(t.output) for t in tasks]


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
             {"SYSTEM": s, "SOURCE": source, "DESCRIPTOR": d, "DATA_DIR": data})
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
                          "SMOKE": args.smoke, "DATA_DIR": str(out / "data"), "OUT_DIR": str(out)}
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
              "ROUNDS": args.rounds, "MEMBERS": args.members, "SMOKE": args.smoke,
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


def study(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.jobs > 1:  # one BLAS/torch thread per notebook kernel when kernels run side by side
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    fetch, feat = featurize_tasks(out, args.systems, args.descriptors, source=args.source)
    recs = run_tasks(fetch, jobs=args.jobs, force=args.force)
    table1 = pd.DataFrame([r["table1"] for r in recs])
    table1.to_csv(out / "table1.csv", index=False)
    run_tasks(feat, jobs=args.jobs, force=args.force)
    print("\nTable 1 (offline snapshot after filters):")
    print(table1.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    al_recs = run_tasks(al_tasks(out, args), jobs=args.jobs, force=args.force)
    runs = collect_runs(al_recs)
    runs.to_parquet(out / "runs.parquet", index=False)
    final = runs[runs["round"] == runs.groupby(["system", "strategy", "seed"])["round"].transform("max")]
    summary = (final.groupby(["system", "strategy"])["mae"].agg(["mean", "std", "count"])
               .rename(columns={"count": "seeds"}))
    print(f"\nFinal-round test MAE (eV/atom), mean ± std over seeds ({len(runs)} rows → runs.parquet):")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.cross_db:
        run_tasks(cross_tasks(out, args), jobs=args.jobs, force=args.force)
    run_tasks(report_tasks(out, args), jobs=1, force=True)
    from alhelpers.report import write_report

    report = write_report(out, config={k: v for k, v in vars(args).items() if k != "func"})
    print(f"[run] report: {report}")
    print(f"\n[run] study stages done in {time.perf_counter() - t0:.1f} s → {out}")
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
    s.add_argument("--source", default="snapshot", choices=["snapshot", "mp", "oqmd"])
    s.add_argument("--out", default="results", help="output folder (default: results)")
    s.add_argument("--jobs", type=int, default=2, help="notebooks run side by side (default 2)")
    s.add_argument("--force", action="store_true", help="rerun finished tasks too")
    s.set_defaults(func=study)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from alhelpers.data.systems import system_elements

    from alhelpers.select import get_strategy

    try:
        for system in getattr(args, "systems", []):
            system_elements(system)
        for name in getattr(args, "strategies", []):
            get_strategy(name)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
