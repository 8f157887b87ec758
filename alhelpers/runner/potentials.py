"""Track B's study: notebook 07 per (system, batch, seed), then notebook 08 over them.

Notebook 07 runs all strategies of one seed and writes their rows; notebook 08 collects the rows,
writes the tables (``potentials/<system>_runs.parquet``, ``_final.csv``, ``_vs_random.csv``) and
the figures. This module only orchestrates them and prints what notebook 08 wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import pandas as pd

from alhelpers.atomistic.config import run_label, system_name
from alhelpers.files import read_csv
from alhelpers.layout import Layout
from alhelpers.paired import mean_std_text
from alhelpers.runner.tasks import (
    Task,
    dask_client,
    results_lock,
    run_tasks,
    task_params,
    unique,
)

__all__ = ["potential_tasks", "potentials", "statistics_task"]


def _system(args: argparse.Namespace) -> str:
    """The name the runs are filed under: the data set, or ``file-<name>`` for ``--system file``."""
    return system_name(args.system, getattr(args, "data", ""))


def _data_params(args: argparse.Namespace) -> tuple[dict, tuple[str, ...]]:
    """Notebook 07's parameters naming a user's file, and the file as the task's input (its hash is
    part of the task's identity)."""
    if args.system != "file":
        return {}, ()
    path = str(Path(args.data).resolve())
    return ({"DATA": path, "ENERGY_FIELD": args.energy_key, "FORCES_FIELD": args.forces_key,
             "ENERGY_UNIT": args.energy_unit}, (path,))


def potential_tasks(layout: Layout, args: argparse.Namespace) -> list[Task]:
    """Notebook 07 per (system, batch size, seed), all strategies in one notebook."""
    label = run_label(_system(args), args.model)
    data, inputs = _data_params(args)
    return [
        Task("07_bmdal_potentials.ipynb",
             layout.notebooks / f"07_bmdal_potentials_{label}_batch{b}_seed{seed}.ipynb",
             task_params(layout, SYSTEM=args.system, MODEL=args.model, STRATEGIES=list(args.strategies), BATCH=b,
                         N_INIT=args.n_init, MAX_SIZE=args.max_size, SEED=seed, ORACLE=args.oracle,
                         EPOCHS=args.epochs, WARM_START=not args.cold_start, TARGET_MAE=args.target_mae,
                         INIT_METHOD=args.init_method, FINETUNE_FROM=args.finetune_from, FREEZE=args.freeze,
                         SMOKE=args.smoke, PROGRESS=False, **data), inputs=inputs)
        for b in args.batch for seed in args.seeds
    ]


def statistics_task(layout: Layout, args: argparse.Namespace) -> Task:
    """Notebook 08 over the grid's runs (rerun every time: it is cheap)."""
    label = run_label(_system(args), args.model)
    return Task("08_potentials_statistics.ipynb", layout.notebooks / f"08_potentials_statistics_{label}.ipynb",
                task_params(layout, SYSTEM=_system(args), MODEL=args.model, BATCHES=list(args.batch), SEEDS=list(args.seeds)))


def potentials(args: argparse.Namespace) -> int:
    for name in ("seeds", "strategies", "batch"):
        setattr(args, name, unique(getattr(args, name)))
    try:
        layout = Layout.at(args.out)
        layout.check_not_foreign()
        with results_lock(layout):
            return _potentials(layout, args)
    except (RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _show(layout: Layout, system: str) -> None:
    summary = read_csv(layout.potentials_table(system, "final"))
    seeds = summary["seeds"]
    show = summary.assign(
        force=[mean_std_text(m, s, k) for m, s, k in zip(summary.force_mae, summary.force_mae_std, seeds)],
        energy=[mean_std_text(m, s, k, scale=1000, digits=2)
                for m, s, k in zip(summary.energy_mae, summary.energy_mae_std, seeds)])
    print(f"\nFinal-round test errors, mean ± std over seeds (→ {layout.rel(layout.potentials_table(system, 'runs'))}):")
    columns = [*(c for c in ("system", "model") if c in show), "batch", "strategy", "n_labelled",
               *(c for c in ("n_stopped",) if c in show), "seeds", "force", "energy", "unc_pearson",
               "mean_fit_s", "mean_feature_s", "mean_query_s"]
    print(show[columns].rename(columns={"force": "force MAE (eV/Å)", "energy": "energy MAE (meV/atom)"})
          .to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—"))
    if "stopped" in summary:
        for _, r in summary[summary["stopped"].fillna("").astype(str) != ""].iterrows():
            print(f"  {r['strategy']} (batch {r['batch']}): {r['stopped']}")
    path = layout.potentials_table(system, "vs_random")
    if path.exists():
        tests = read_csv(path)
        print(f"\nAgainst random (final round, paired over seeds, Holm-corrected; → {layout.rel(path)}):")
        cols = ["metric", "batch", "strategy", *(c for c in ("n_labelled",) if c in tests), "mean", "diff_pct",
                "diff_pct_low", "diff_pct_high", "p_paired", "p_holm", "finding"]
        print(tests[tests["strategy"] != "random"][cols]
              .to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—"))


def _potentials(layout: Layout, args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        client = None
        if args.executor == "dask":
            client = stack.enter_context(dask_client(args.workers, args.scheduler))
            where = args.scheduler or f"LocalCluster with {args.workers} worker(s)"
            print(f"[run] executor: dask ({where})", flush=True)
        res = run_tasks(potential_tasks(layout, args), jobs=args.jobs, force=args.force, client=client)
    if res.failures:
        print(f"\n[run] {len(res.failures)} task(s) failed (rerun the same command; finished ones are skipped):")
        for f in res.failures:
            print(f"  - {f}", flush=True)
        return 1
    stats = run_tasks([statistics_task(layout, args)], jobs=1, force=True)
    if not stats.ok:
        print("\n[run] statistics notebook failed:", flush=True)
        for f in stats.failures:
            print(f"  - {f}", flush=True)
        return 1
    _show(layout, run_label(_system(args), args.model))
    print(f"\n[run] potentials done in {time.perf_counter() - t0:.1f} s → {layout.root}")
    return 0
