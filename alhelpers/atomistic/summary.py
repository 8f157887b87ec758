"""Track B's study tables: its runs collected, final-round summaries and the comparison with random.

The statistics are :mod:`alhelpers.stats` itself, on Track B's runs table as it is (setting columns
``system`` and ``batch``): no renaming. Like Track A's, they compare the strategies of a batch size
at the largest budget every run of it reached when a run stopped early (the stopping rule
``TARGET_MAE``; :func:`alhelpers.al.runs.common_budget`), and a comparison with one seed is not
tested ("cannot be tested with 1 seed").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from alhelpers import stats
from alhelpers.al.runs import common_budget, final_round, stopped_per_curve
from alhelpers.files import read_json, read_parquet
from alhelpers.layout import Layout
from alhelpers.provenance import by_code, listing

__all__ = ["METRICS", "collect_potential_runs", "found_runs", "potential_summary", "versus_random"]

#: Track B's headline metrics (lower is better), in the order they are reported.
METRICS: tuple[str, ...] = ("force_mae", "energy_mae")


def found_runs(layout: Layout, system: str) -> list[tuple[int, int]]:
    """(batch, seed) of every notebook-07 result of ``system`` in the folder."""
    pattern = re.compile(rf"{re.escape(system)}_batch(\d+)_seed(\d+)\.parquet")
    hits = [pattern.fullmatch(p.name) for p in layout.potentials_run(system, 0, 0).parent.glob(f"{system}_batch*_seed*.parquet")]
    return sorted((int(m[1]), int(m[2])) for m in hits if m)


def collect_potential_runs(layout: Layout, system: str, batches: Sequence[int] = (),
                           seeds: Sequence[int] = ()) -> pd.DataFrame:
    """Notebook 07's rows of every (batch, seed) of ``system``, sorted by batch, strategy, seed, round.

    Empty ``batches`` / ``seeds``: all that notebook 07 has written for ``system`` in this folder.
    Runs computed by different code (their ``code_id``) are never mixed: a ``ValueError`` names them.
    """
    found = found_runs(layout, system)
    if batches or seeds:
        found = [(b, k) for b in (batches or sorted({b for b, _ in found}))
                 for k in (seeds or sorted({k for _, k in found}))]
    if not found:
        raise FileNotFoundError(f"no results of notebook 07 for SYSTEM = {system!r} in "
                                f"{layout.potentials_run(system, 0, 0).parent}: run notebook 07 first.")
    parts = []
    for b, seed in found:
        path = layout.potentials_run(system, b, seed)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run notebook 07 with SYSTEM = {system!r}, "
                                    f"BATCH = {b}, SEED = {seed} first (or `python -m alhelpers.run "
                                    "potentials`, which runs it).")
        parts.append(read_parquet(path, todo="Run notebook 07 for that batch and seed again."))
    for batch in sorted({b for b, _ in found}):
        _check_one_protocol([layout.potentials_run(system, b, k).with_suffix(".config.json") for b, k in found if b == batch])
    codes = by_code((layout.potentials_run(system, b, seed).name, part)
                    for (b, seed), part in zip(found, parts, strict=True))
    if len(codes) > 1:
        raise ValueError(
            f"the runs of {system!r} were computed by {len(codes)} versions of the code ({listing(codes)}); their "
            "numbers cannot be compared. Run notebook 07 again for the runs of the other code (its checkpoints "
            "are keyed by code, so nothing old is reused), or `python -m alhelpers.run potentials`, which reruns "
            "what changed.")
    runs = pd.concat(parts, ignore_index=True)
    if "model" not in runs:  # rows written before a run could choose its model
        runs.insert(1, "model", "gm")
    return runs.sort_values(["system", "batch", "strategy", "seed", "round"], kind="mergesort", ignore_index=True)


def _check_one_protocol(paths: Sequence[Path]) -> None:
    """Refuse runs of one batch size whose configs differ in more than seed and strategies (they
    are not comparable; different batch sizes may differ in what depends on the batch)."""
    protocols: dict[str, list[str]] = {}
    for path in paths:
        cfg = {"model": "gm", **read_json(path, todo="Run notebook 07 for that batch and seed again.")["config"]}
        key = json.dumps({k: v for k, v in cfg.items() if k not in ("seed", "batch", "strategies")}, sort_keys=True)
        protocols.setdefault(key, []).append(path.name)
    if len(protocols) > 1:
        groups = "; ".join(", ".join(names) for names in protocols.values())
        raise ValueError(f"these runs were made with different settings and cannot be compared: {groups}. "
                         "Run notebook 07 again with one setting, or give SEEDS/BATCHES of one setting.")


def potential_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Final-round errors and mean times per (system, model, batch, strategy): mean ± std over seeds.

    The final round is that of the runs cut at their batch size's common budget
    (:func:`alhelpers.al.runs.common_budget`): when a run stopped early, every strategy of that batch
    size is summarised at the largest ``n_labelled`` all its runs reached. ``n_stopped``: the
    strategy's runs that stopped early; ``stopped``: which seed stopped where and why (``"seed 1 at
    30: stopped: predicted test MAE …"``, ``""`` for none). A std over one seed is NaN, not 0."""
    keys = [c for c in ("system", "model", "batch", "strategy") if c in runs]
    cb = common_budget(runs)
    agg = final_round(cb.runs).groupby(keys).agg(
        n_labelled=("n_labelled", "max"), seeds=("seed", "nunique"),
        force_mae=("force_mae", "mean"), force_mae_std=("force_mae", "std"),
        force_rmse=("force_rmse", "mean"), energy_mae=("energy_mae", "mean"),
        energy_mae_std=("energy_mae", "std"), energy_rmse=("energy_rmse", "mean"),
        unc_pearson=("unc_pearson", "mean"))
    times = runs.groupby(keys)[["fit_s", "feature_s", "query_s"]].mean()
    out = agg.join(times.add_prefix("mean_")).reset_index()
    stopped: dict[tuple, pd.DataFrame] = {}
    for key, block in cb.stopped.groupby(keys, sort=False) if len(cb.stopped) else ():
        stopped[key if isinstance(key, tuple) else (key,)] = block
    index = list(out[keys].itertuples(index=False, name=None))
    out.insert(out.columns.get_loc("seeds") + 1, "n_stopped", stopped_per_curve(cb, out))
    out["stopped"] = ["; ".join(f"seed {int(r['seed'])} at {r['n_labelled']:g}" + (f": {r['note']}" * bool(r["note"]))
                                for _, r in stopped[k].iterrows()) if k in stopped else "" for k in index]
    return out


def versus_random(runs: pd.DataFrame, metrics: Sequence[str] = METRICS, *, alpha: float = 0.05) -> pd.DataFrame:
    """Every strategy against ``random`` in the final round, paired over seeds, per system and batch
    (:func:`alhelpers.stats.final_table`: paired t, Welch, Wilcoxon, Holm, d_z, verdict), one block
    of rows per metric with its mean and std as ``mean`` and ``std``."""
    return pd.concat([stats.final_table(runs, baseline="random", alpha=alpha, metric=m).assign(metric=m)
                      .rename(columns={f"{m}_mean": "mean", f"{m}_std": "std"})
                      for m in metrics], ignore_index=True)
