"""Data for Track A: the offline snapshot (default), live Materials Project / OQMD, or your own table.

The one call notebooks use is :func:`fetch_system`; it returns the cleaned entries of one system
and the list of filter steps (how many rows each removed).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from alhelpers.data.paths import cache_root, features_path, system_table_path
from alhelpers.data.snapshot import SnapshotIntegrityError, load_snapshot, verify_snapshot
from alhelpers.data.systems import (
    FilterStep,
    clean_entries,
    report_frame,
    select_system,
    split_pool_test,
    summarize_system,
    system_elements,
)
from alhelpers.data.table import read_user_table

SOURCES = ("snapshot", "mp", "oqmd", "file")

__all__ = [
    "SOURCES",
    "FilterStep",
    "SnapshotIntegrityError",
    "cache_root",
    "clean_entries",
    "features_path",
    "fetch_raw",
    "fetch_system",
    "load_snapshot",
    "read_user_table",
    "report_frame",
    "select_system",
    "split_pool_test",
    "summarize_system",
    "system_elements",
    "system_table_path",
    "verify_snapshot",
]


def fetch_raw(
    source: str,
    system: str,
    *,
    mp_limit: int = 500,
    oqmd_limit: int = 100,
    path: str | Path | None = None,
    target: str = "formation_energy_per_atom",
) -> pd.DataFrame:
    """Entries of one system from one source, before cleaning.

    ``source``: ``"snapshot"`` (offline, default), ``"mp"`` (needs ``MP_API_KEY``; falls back to
    the snapshot's Materials Project rows with a warning when no key is set), ``"oqmd"`` (HTTP) or
    ``"file"`` (``path`` to your CSV/parquet, ``target`` naming its target column; system
    ``"all"`` keeps every row).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; use one of {SOURCES}")
    if source == "file":
        if path is None:
            raise ValueError("source='file' needs path=... pointing at a CSV or parquet table")
        table = read_user_table(path, target=target)
        return table.assign(system=system) if system == "all" else select_system(table, system)
    elements = system_elements(system)
    if source == "snapshot":
        return select_system(load_snapshot(), system)
    if source == "mp":
        from alhelpers.data.mp import MissingAPIKeyError, fetch_mp, resolve_mp_api_key

        key = resolve_mp_api_key()
        if key is None:
            warnings.warn(
                str(MissingAPIKeyError()) + " Using the offline snapshot's Materials Project rows.",
                stacklevel=2,
            )
            snap = select_system(load_snapshot(), system)
            return snap[snap["source"] == "mp"].reset_index(drop=True)
        return select_system(fetch_mp(elements, limit=mp_limit, api_key=key), system)
    from alhelpers.data.oqmd import fetch_oqmd

    return select_system(fetch_oqmd(elements, limit=oqmd_limit), system)


def fetch_system(
    source: str,
    system: str,
    *,
    min_sites: int = 2,
    max_sites: int = 50,
    max_abs_target: float = 5.0,
    dedup_tol: float = 1e-3,
    **fetch_kwargs,
) -> tuple[pd.DataFrame, list[FilterStep]]:
    """Fetch one system from one source and clean it (STUDY §1 filters, each step counted)."""
    raw = fetch_raw(source, system, **fetch_kwargs)
    return clean_entries(
        raw, min_sites=min_sites, max_sites=max_sites, max_abs_target=max_abs_target,
        dedup_tol=dedup_tol,
    )


def save_system(entries: pd.DataFrame, steps: list[FilterStep], path: Path) -> Path:
    """Write a cleaned system table (parquet) and its filter report (``.filters.csv`` beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries.to_parquet(path, index=False)
    report_frame(steps).to_csv(path.with_suffix(".filters.csv"), index=False)
    return path


def load_system(path: Path) -> pd.DataFrame:
    """Read a system table written by :func:`save_system` (notebook 01)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run notebooks/01_fetch.ipynb for this system and source first "
            "(or `python -m alhelpers.run study`)"
        )
    return pd.read_parquet(path)
