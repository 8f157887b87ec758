"""Data for Track A: the offline snapshot (default), live Materials Project / OQMD, or your own table.

The one call notebooks use is :func:`fetch_system`; it returns the cleaned entries of one system
and the list of filter steps (how many rows each removed or changed, with examples).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from alhelpers.data.paths import cache_root, features_path, system_table_path
from alhelpers.data.snapshot import SnapshotIntegrityError, load_snapshot, verify_snapshot
from alhelpers.data.systems import (
    FilterStep,
    FormulaError,
    canonical_system,
    clean_entries,
    conflicting_duplicates,
    integer_formula,
    integer_formulas,
    report_frame,
    select_system,
    split_pool_test,
    summarize_system,
    system_elements,
    system_label,
)
from alhelpers.data.table import SOURCE_ALIASES, normalize_source, read_user_table

SOURCES = ("snapshot", "mp", "oqmd", "file")

__all__ = [
    "SOURCES",
    "SOURCE_ALIASES",
    "FilterStep",
    "FormulaError",
    "SnapshotIntegrityError",
    "cache_root",
    "canonical_system",
    "clean_entries",
    "conflicting_duplicates",
    "features_path",
    "fetch_raw",
    "fetch_system",
    "integer_formula",
    "integer_formulas",
    "load_snapshot",
    "normalize_source",
    "read_user_table",
    "report_frame",
    "select_system",
    "split_pool_test",
    "summarize_system",
    "system_elements",
    "system_label",
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
    formula_column: str = "formula",
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Entries of one system from one source, before cleaning.

    ``source``: ``"snapshot"`` (offline, default), ``"mp"`` (needs ``MP_API_KEY``; falls back to
    the snapshot's Materials Project rows with a warning when no key is set), ``"oqmd"`` (HTTP) or
    ``"file"``: ``path`` to your CSV/parquet, ``target`` naming its target column,
    ``formula_column`` its formula column and ``encoding`` its text encoding (see
    :func:`read_user_table`; a ``source`` column in the table is kept, so a table exported from
    Materials Project and OQMD can run the cross-database stage); system ``"all"`` keeps every
    row. The file keywords are ignored for the other sources. ``system`` may be spelled any way
    :func:`canonical_system` reads (``"O-Ti"``); the rows' ``system`` column holds its canonical name.

    ``ValueError`` when the system has no entries, naming the elements that are present.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; use one of {SOURCES}")
    system = canonical_system(system)
    if source == "file":
        if path is None:
            raise ValueError("source='file' needs path=... pointing at a CSV or parquet table")
        table = read_user_table(path, target=target, formula=formula_column, encoding=encoding)
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
    mp_limit: int = 500,
    oqmd_limit: int = 100,
    path: str | Path | None = None,
    target: str = "formation_energy_per_atom",
    formula_column: str = "formula",
    encoding: str = "utf-8",
    min_sites: int = 2,
    max_sites: int = 50,
    max_abs_target: float = 5.0,
    dedup_tol: float = 1e-3,
) -> tuple[pd.DataFrame, list[FilterStep]]:
    """Fetch one system from one source (:func:`fetch_raw`) and clean it (STUDY §1 filters).

    Returns the cleaned entries and one :class:`FilterStep` per step (rows removed or changed,
    with examples), first the rewriting of fractional formulas such as ``Fe0.5Ni0.5`` as integer
    formulas. ``ValueError``, before anything is written, when the system has no entries or the
    filters remove every row (naming the filter that removed the last rows and what to check).
    """
    system = canonical_system(system)
    raw = fetch_raw(
        source, system, mp_limit=mp_limit, oqmd_limit=oqmd_limit, path=path, target=target,
        formula_column=formula_column, encoding=encoding,
    )
    where = Path(path).name if source == "file" and path is not None else f"source {source!r}"
    return clean_entries(
        raw, min_sites=min_sites, max_sites=max_sites, max_abs_target=max_abs_target,
        dedup_tol=dedup_tol, label=f"{where}, system {system!r}",
    )


def save_system(entries: pd.DataFrame, steps: list[FilterStep], path: Path) -> Path:
    """Write a cleaned system table (parquet) and its filter report (``.filters.csv`` beside it),
    each atomically.

    ``ValueError`` for a table without rows (a later stage could not use it); nothing is written.
    """
    from alhelpers.files import write_csv, write_parquet

    path = Path(path)
    if entries.empty:
        raise ValueError(
            f"refusing to write {path.name}: the cleaned table has no rows. Check the source, the "
            "system and the filter report (report_frame(steps))"
        )
    write_parquet(path, entries)
    write_csv(path.with_suffix(".filters.csv"), report_frame(steps))
    return path
