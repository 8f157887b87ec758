"""Cross-database validation (STUDY §6): learn on one database, test on the other.

Two numbers frame a transfer result: the learning curve itself (train on Materials Project, test
on OQMD, and the reverse) and the floor no transfer can beat — how much the two databases
disagree on the compositions both contain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.al.runs import common_budget, final_round
from alhelpers.data.systems import reduced_formula
from alhelpers.formation.config import ALConfig
from alhelpers.formation.loop import run_al
from alhelpers.keys import Key

DIRECTIONS: tuple[tuple[str, str], ...] = (("mp", "oqmd"), ("oqmd", "mp"))


def source_disagreement(
    entries: pd.DataFrame, *, sources: tuple[str, str] = ("mp", "oqmd")
) -> tuple[pd.DataFrame, dict[str, float]]:
    """MP vs OQMD formation energies on the reduced compositions present in both.

    Each database's lowest formation energy per reduced composition (its ground state) is
    compared. Use entries *before* de-duplication, or compositions on which the databases agree
    within the de-duplication tolerance would be missing from the comparison.
    Returns the per-composition table and a summary (n_shared, mae_shared, rmse_shared,
    mean_diff = first − second source).
    """
    a, b = sources
    red = entries[Key.formula].map(reduced_formula)
    per = (entries.assign(_red=red).groupby(["_red", Key.source])[Key.target].min()
           .unstack(Key.source))
    cols = [c for c in (a, b) if c in per.columns]
    shared = per.dropna(subset=cols) if len(cols) == 2 else per.iloc[:0]
    table = pd.DataFrame({
        "reduced_formula": shared.index,
        f"ef_{a}": shared[a].to_numpy() if a in shared else [],
        f"ef_{b}": shared[b].to_numpy() if b in shared else [],
    })
    table["diff"] = table[f"ef_{a}"] - table[f"ef_{b}"]
    n = len(table)
    summary = {
        "n_shared": n,
        "mae_shared": float(table["diff"].abs().mean()) if n else float("nan"),
        "rmse_shared": float(np.sqrt((table["diff"] ** 2).mean())) if n else float("nan"),
        "mean_diff": float(table["diff"].mean()) if n else float("nan"),
    }
    return table, summary


def enough_data(sources: pd.Series, cfg: ALConfig) -> dict[str, int | bool]:
    """Rows per database, and whether both can supply an initial set plus one batch."""
    counts = {s: int((sources == s).sum()) for s in ("mp", "oqmd")}
    counts["enough"] = bool(min(counts.values()) >= cfg.n_init + cfg.batch)
    return counts


def cross_database_runs(
    X: np.ndarray,
    y: np.ndarray,
    sources: Sequence[str],
    cfg: ALConfig,
    *,
    seeds: Sequence[int],
    directions: Sequence[tuple[str, str]] = DIRECTIONS,
    checkpoint_dir: Path | None = None,
    progress: bool = False,
    formulas: Sequence[str] | None = None,
) -> pd.DataFrame:
    """AL learning curves with the pool from one database and the test set from the other.

    Same protocol as :func:`alhelpers.formation.loop.run_al` (initial set seeded, all strategies), but
    the whole training database is the pool and the whole other database is the test set.
    Rows get ``train_source``, ``test_source`` and ``direction`` (``"mp→oqmd"``) columns;
    ``attrs["resumed_rounds"]`` of ``attrs["total_rounds"]`` (rounds × directions × seeds) were read
    back from checkpoints instead of computed. ``formulas``: for the stability strategies.
    """
    from tqdm.auto import tqdm

    src = np.asarray(sources)
    frames = []
    resumed = 0
    for train, test in directions:
        pool_pos, test_pos = np.flatnonzero(src == train), np.flatnonzero(src == test)
        if len(pool_pos) == 0 or len(test_pos) == 0:
            raise ValueError(f"no rows from {train!r} or {test!r}: cannot run {train}→{test}")
        for seed in tqdm(seeds, desc=f"{cfg.system} {train}→{test}", unit="seed", disable=not progress):
            runs = run_al(X, y, replace(cfg, seed=int(seed)), split=(pool_pos, test_pos),
                          checkpoint_dir=checkpoint_dir, formulas=formulas)
            resumed += int(runs.attrs.get("resumed_rounds", 0))
            frames.append(runs.assign(train_source=train, test_source=test, direction=f"{train}→{test}"))
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(resumed_rounds=resumed, total_rounds=cfg.rounds * len(frames))
    return out


def cross_summary(cross: pd.DataFrame) -> pd.DataFrame:
    """Final-round MAE ± std over seeds per system, direction and strategy, at the budget every run
    of a system and direction reached (:func:`alhelpers.al.runs.common_budget`: a stopping rule
    ends runs early)."""
    return (final_round(common_budget(cross).runs).groupby(["system", "direction", "strategy"], sort=False)
            .agg(n_labelled=("n_labelled", "max"), mae_mean=("mae", "mean"), mae_std=("mae", "std"),
                 n_seeds=("seed", "nunique"))
            .reset_index())
