"""Headless study runner: executes the numbered notebooks through papermill, per system (and seed).

    python -m alhelpers.run study [--systems C Si Fe Ti-O] [--descriptors magpie] [--out results]

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
    print(f"\n[run] study stages done in {time.perf_counter() - t0:.1f} s → {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alhelpers.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("study", help="Track A study over systems and seeds (headless, resumable)")
    s.add_argument("--systems", nargs="+", default=list(SYSTEMS), metavar="SYSTEM")
    s.add_argument("--descriptors", nargs="+", default=["magpie"], choices=["magpie", "paper17"])
    s.add_argument("--source", default="snapshot", choices=["snapshot", "mp", "oqmd"])
    s.add_argument("--out", default="results", help="output folder (default: results)")
    s.add_argument("--jobs", type=int, default=2, help="notebooks run side by side (default 2)")
    s.add_argument("--force", action="store_true", help="rerun finished tasks too")
    s.set_defaults(func=study)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from alhelpers.data.systems import system_elements

    for system in getattr(args, "systems", []):
        try:
            system_elements(system)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
