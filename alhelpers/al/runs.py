"""Runs tables of both tracks: one row per (setting, strategy, seed, round), named by :class:`Key`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from alhelpers.keys import Key, setting_columns

__all__ = ["appearance_sort", "curve_columns", "final_round", "run_columns"]


def curve_columns(runs: pd.DataFrame) -> tuple[str, ...]:
    """Columns that identify one learning curve: the setting columns present, then the strategy."""
    return (*setting_columns(runs.columns), str(Key.strategy))


def run_columns(runs: pd.DataFrame) -> tuple[str, ...]:
    """Columns that identify one run (a learning curve on one seed)."""
    return (*curve_columns(runs), str(Key.seed))


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


def appearance_sort(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Sort by ``by``, text columns in order of first appearance, numbers ascending."""

    def key(s: pd.Series) -> pd.Series:
        if pd.api.types.is_numeric_dtype(s):
            return s
        order = {v: i for i, v in enumerate(pd.unique(s))}
        return s.map(order)

    return df.sort_values(list(by), key=key, kind="stable").reset_index(drop=True)
