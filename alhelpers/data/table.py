"""Bring your own table: any CSV or parquet with a formula column and a target column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.keys import ENTRY_COLUMNS, PROPERTY_COLUMNS, Key


def read_user_table(
    path: str | Path,
    *,
    target: str = Key.target,
    formula: str = Key.formula,
    entry_id: str | None = None,
    source: str = "file",
) -> pd.DataFrame:
    """Read a user's CSV/parquet into the tidy entries table.

    ``target`` names the column with the property to learn (eV/atom for formation energy);
    ``formula`` the column with chemical formulas. Known property columns (``band_gap``,
    ``density``, …) are kept; non-numeric targets become NaN and are later dropped (and counted)
    by :func:`alhelpers.data.systems.filter_finite_target`.
    """
    from alhelpers.data.systems import atoms_in_formula

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} does not exist")
    if path.suffix.lower() in (".parquet", ".pq"):
        raw = pd.read_parquet(path)
    elif path.suffix.lower() in (".csv", ".txt", ".gz"):
        raw = pd.read_csv(path)
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    missing = [str(c) for c in (formula, target) if c not in raw.columns]
    if missing:
        raise ValueError(
            f"{path.name} has no column(s) {missing}. Its columns are {list(raw.columns)}; "
            f"name the formula column with formula=... and the target column with target=..."
        )
    bad = []
    for f in raw[formula].astype(str):
        try:
            atoms_in_formula(f)
        except Exception:  # pymatgen raises several types for bad formulas
            bad.append(f)
    if bad:
        raise ValueError(f"{path.name}: {len(bad)} formula(s) pymatgen cannot read, e.g. {bad[:3]}")
    out = pd.DataFrame(
        {
            Key.source: source,
            Key.dataset: path.stem,
            Key.entry_id: (raw[entry_id].astype(str) if entry_id else
                           [f"{path.stem}:{i}" for i in range(len(raw))]),
            Key.formula: raw[formula].astype(str).to_numpy(),
            Key.nsites: (raw[Key.nsites].to_numpy() if Key.nsites in raw
                         else raw[formula].astype(str).map(atoms_in_formula).to_numpy()),
            Key.target: pd.to_numeric(raw[target], errors="coerce").to_numpy(dtype=float),
        }
    )
    for col in PROPERTY_COLUMNS:
        if col in raw.columns and col != target:
            out[col] = raw[col].to_numpy()
        else:
            out[col] = None if col in (Key.structure, Key.is_stable) else np.nan
    return out[[*ENTRY_COLUMNS, *PROPERTY_COLUMNS]]
