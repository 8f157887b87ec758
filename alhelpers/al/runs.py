"""Runs tables of both tracks: one row per (setting, strategy, seed, round), named by :class:`Key`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from alhelpers.keys import Key, setting_columns

__all__ = ["CommonBudget", "appearance_sort", "common_budget", "compared_rows", "curve_columns", "final_round",
           "run_columns", "setting_name", "stop_lines", "stop_why", "stopped_per_curve", "where_name"]


def curve_columns(runs: pd.DataFrame) -> tuple[str, ...]:
    """Columns that identify one learning curve: the setting columns present, then the strategy."""
    return (*setting_columns(runs.columns), str(Key.strategy))


def run_columns(runs: pd.DataFrame) -> tuple[str, ...]:
    """Columns that identify one run (a learning curve on one seed)."""
    return (*curve_columns(runs), str(Key.seed))


def setting_name(row: Mapping, *, bare: Sequence[str] = (Key.descriptor, Key.direction),
                 skip: Sequence[str] = ()) -> str:
    """A setting (or a table row's) in words: ``"C (magpie)"``, ``"C (mp→oqmd)"``,
    ``"tio2 (batch 10)"`` — the system, then the other setting columns, ``bare`` ones as their
    value alone, the rest as ``name value``, ``skip`` ones left out."""
    rest = [str(row[c]) if c in bare else f"{c} {row[c]}"
            for c in setting_columns(row.keys()) if c != Key.system and c not in skip]
    return f"{row[Key.system]} ({', '.join(rest)})" if rest else str(row[Key.system])


def where_name(row: Mapping) -> str:
    """Where a comparison was made, for a conclusion: the descriptor left out (``"C (mp→oqmd)"``)."""
    return setting_name(row, skip=(Key.descriptor,))


def final_round(runs: pd.DataFrame) -> pd.DataFrame:
    """The last round of every run: per setting, strategy and seed, the row of the largest round.

    A run that stopped early (its pool ran out) keeps its own last row, so every run gives exactly
    one row. Rows come in the order of first appearance of setting and strategy, then by seed.
    """
    missing = [str(c) for c in (Key.strategy, Key.seed, Key.round) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {missing}; it has {list(runs.columns)}")
    keys = run_columns(runs)
    df = runs.reset_index(drop=True)
    idx = df.groupby(list(keys), sort=False, observed=True)[Key.round].idxmax()
    return appearance_sort(df.loc[idx.to_numpy()], keys)


class CommonBudget(NamedTuple):
    """What :func:`common_budget` returns."""

    #: The runs cut at their setting's compared budget (the very table passed in when no run of any
    #: setting stopped early).
    runs: pd.DataFrame
    #: One row per setting: its setting columns, ``n_compared`` (the budget every run reached, at
    #: which the strategies are compared), ``n_max`` (where the longest run ended), ``n_runs``
    #: (strategy × seed) and ``n_stopped`` (runs that ended before ``n_max``).
    budgets: pd.DataFrame
    #: One row per run that ended before the longest run of its setting: setting columns, strategy,
    #: seed, ``round`` and ``n_labelled`` of its last row and that row's ``note`` (why it stopped:
    #: the stopping rule's "stopped: predicted test MAE …", or an exhausted pool), ``""`` without one.
    stopped: pd.DataFrame


def common_budget(runs: pd.DataFrame) -> CommonBudget:
    """Compare runs only where all of them have labels: per setting, the largest ``n_labelled``
    that every run (strategy × seed) of the setting reached, and the runs cut there.

    A run can end before the others of its setting: the stopping rule (``TARGET_MAE``) stops a
    strategy once its predicted test MAE is low enough, a pool can run out. Its last row then has
    fewer labels than the others' last rows, and a final round, a mean curve or an area under the
    curve that mixes such runs compares different budgets. Here, per setting:

    * ``n_max`` is the largest final ``n_labelled`` of its runs; a run *stopped early* when its own
      final ``n_labelled`` is below it (listed in ``stopped``, with the note of its last row);
    * without a run that stopped early, nothing is cut (``n_compared = n_max``);
    * otherwise ``n_compared`` is the largest ``n_labelled`` present in every run of the setting
      (runs of one setting share their grid of labelled counts, so this is the stopped runs' final
      budget, or the last point of the grid before it), and every row above it is dropped.

    When no run of any setting stopped early, ``runs`` itself is returned as ``.runs``: the
    statistics then are exactly those of the full runs.
    """
    missing = [str(c) for c in (Key.strategy, Key.seed, Key.round, Key.n_labelled) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks column(s) {missing}; it has {list(runs.columns)}")
    settings = list(setting_columns(runs.columns))
    keys = list(run_columns(runs))
    last = final_round(runs)
    budgets, stopped, keep = [], [], []
    groups = last.groupby(settings, sort=False, observed=True) if settings else [((), last)]
    for key, block in groups:
        setting = dict(zip(settings, key if isinstance(key, tuple) else (key,), strict=True))
        n_max = float(block[Key.n_labelled].max())
        early = block[block[Key.n_labelled].astype(float) < n_max]
        n_compared = n_max
        if len(early):
            mask = np.ones(len(runs), dtype=bool)
            for col, value in setting.items():
                mask &= (runs[col] == value).to_numpy()
            rows = runs[mask]
            shared = None
            for _, part in rows.groupby(keys, sort=False, observed=True)[Key.n_labelled]:
                values = set(part.astype(float))
                shared = values if shared is None else shared & values
            if not shared:
                where = ", ".join(f"{c}={v!r}" for c, v in setting.items())
                raise ValueError(f"the runs of {where} share no n_labelled: they cannot be compared at one budget")
            n_compared = max(shared)
            keep.append(mask & (runs[Key.n_labelled].astype(float) > n_compared).to_numpy())
            note = early[Key.note] if Key.note in early else pd.Series("", index=early.index)
            stopped += [{**setting, "strategy": r[Key.strategy], "seed": r[Key.seed], "round": r[Key.round],
                         "n_labelled": r[Key.n_labelled], "note": "" if pd.isna(n) else str(n)}
                        for (_, r), n in zip(early.iterrows(), note, strict=True)]
        budgets.append({**setting, "n_compared": n_compared, "n_max": n_max, "n_runs": len(block),
                        "n_stopped": len(early)})
    stopped_df = pd.DataFrame(stopped, columns=[*settings, "strategy", "seed", "round", "n_labelled", "note"])
    budgets_df = pd.DataFrame(budgets, columns=[*settings, "n_compared", "n_max", "n_runs", "n_stopped"])
    if not keep:
        return CommonBudget(runs, budgets_df, stopped_df)
    drop = np.logical_or.reduce(keep)
    return CommonBudget(runs[~drop], budgets_df, stopped_df)


def stopped_per_curve(cb: CommonBudget, curves: pd.DataFrame) -> np.ndarray:
    """How many runs of each row's curve (setting and strategy of ``curves``) stopped early."""
    cols = [c for c in cb.stopped.columns if c not in ("seed", "round", "n_labelled", "note")]
    if cb.stopped.empty:
        return np.zeros(len(curves), dtype=int)
    counts = cb.stopped.groupby(cols, sort=False, observed=True).size()
    index = pd.MultiIndex.from_frame(curves[cols]) if len(cols) > 1 else pd.Index(curves[cols[0]])
    return counts.reindex(index).fillna(0).astype(int).to_numpy()


def compared_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a per-round table (``calibration.csv``) where the strategies are compared: per
    setting, the largest ``n_labelled`` at which every strategy of the setting has all its seeds
    (``n_seeds`` at the setting's largest) — the last round, or, when runs stopped early, the
    common budget of :func:`common_budget`. A setting without such a point keeps
    each strategy's last row."""
    cols = list(setting_columns(df.columns))
    parts = []
    for _, block in df.groupby(cols, sort=False):
        full = block[block["n_seeds"] == block["n_seeds"].max()] if "n_seeds" in block else block
        shared = full.groupby("n_labelled")["strategy"].nunique()
        shared = shared[shared == block["strategy"].nunique()]
        if len(shared):
            parts.append(block[block["n_labelled"] == shared.index.max()])
        else:
            last = block.groupby("strategy", sort=False)["n_labelled"].transform("max")
            parts.append(block[block["n_labelled"] == last])
    return pd.concat(parts) if parts else df.iloc[:0]


def stop_why(note: str) -> str:
    """Why a run stopped, from its last row's note, in a few words."""
    note = str(note or "")
    rule = re.search(r"at or below (TARGET_MAE = [^(]+?)\s*\(", note)
    if note.startswith("stopped: predicted test MAE") and rule:
        return f"the stopping rule (predicted test MAE at or below {rule.group(1)})"
    if note.startswith(("pool exhausted", "pool has")):
        return "its pool ran out"
    return f"“{note}”" if note else "no reason recorded (its last row has no note)"


def stop_lines(runs: pd.DataFrame, what: str = "") -> list[str]:
    """Per setting where runs stopped before the others: which strategy stopped in which seed at
    how many labels and why, and the budget at which every table compares the strategies."""
    cb = common_budget(runs)
    cols = list(setting_columns(runs.columns))
    one = "descriptor" in runs and runs["descriptor"].nunique() <= 1
    out = []
    for _, b in cb.budgets[cb.budgets["n_stopped"] > 0].iterrows():
        mask = np.logical_and.reduce([(cb.stopped[c] == b[c]).to_numpy() for c in cols])
        stops = cb.stopped[mask]
        name = setting_name(b, skip=("descriptor",) if one else ())
        who = "; ".join(f"{strategy} in " + ", ".join(f"seed {int(r['seed'])} at {r['n_labelled']:g} labels"
                                                      for _, r in block.iterrows())
                        for strategy, block in stops.groupby("strategy", sort=False))
        reasons = list(dict.fromkeys(stop_why(n) for n in stops["note"]))
        text = (f"{what}{name}: {int(b['n_stopped'])} of {int(b['n_runs'])} runs stopped before the others "
                f"({who}), because of {' or '.join(reasons)}. The final table, the label savings and the areas "
                f"under the curve compare every strategy of {name} at {b['n_compared']:g} labels, the largest budget "
                f"every run reached (the longest run reached {b['n_max']:g}).")
        mask = np.logical_and.reduce([(runs[c] == b[c]).to_numpy() for c in cols])
        if b["n_compared"] <= runs.loc[mask, "n_labelled"].min():
            text += (f" At {b['n_compared']:g} labels no strategy has queried yet: this comparison cannot tell the "
                     "strategies apart.")
        out.append(text)
    return out


def appearance_sort(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort by ``by``, text columns in order of first appearance, numbers ascending."""

    def key(s: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(s):
            return s
        order = {v: i for i, v in enumerate(pd.unique(s))}
        return s.map(order)

    return df.sort_values(list(by), key=key, kind="stable").reset_index(drop=True)
