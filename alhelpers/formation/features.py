"""Descriptors for Track A (STUDY §2): ``magpie`` (default, leakage-free) and ``paper17``.

:func:`featurize` returns a :class:`FeatureSet`: a tidy table keyed by entry (id columns + one
column per feature) plus what was missing. Missing properties are never zero-filled: a property
column that a source does not have at all is dropped and reported; rows with a missing or
non-finite value in a kept column are dropped and counted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.keys import Key

DESCRIPTORS = ("magpie", "paper17")

#: Columns that identify an entry in a feature table (everything else is a feature).
ID_COLUMNS: tuple[str, ...] = (Key.source, Key.dataset, Key.entry_id, Key.formula, Key.target)

_AVOGADRO_A3 = 1e24 / 6.02214076e23  # cm³/mol → Å³/atom

PAPER17_COMPOSITION = (
    "mean_Z", "std_Z", "mean_mass", "std_mass", "mean_X", "std_X", "min_X", "max_X",
)
PAPER17_PROPERTIES = (
    Key.energy_per_atom, Key.band_gap, Key.density, "volume_per_atom", Key.nsites,
    Key.e_above_hull, Key.is_stable, "n_elements", "mean_atomic_volume",
)


@dataclass
class FeatureSet:
    """A descriptor table and the bookkeeping of what could not be computed."""

    descriptor: str
    table: pd.DataFrame  # ID_COLUMNS + feature columns, one row per kept entry
    feature_names: list[str]
    missing_columns: list[str] = field(default_factory=list)  # absent for this source: dropped
    dropped_rows: int = 0  # rows with a missing/non-finite value in a kept feature

    @property
    def X(self) -> np.ndarray:
        return self.table[self.feature_names].to_numpy(dtype=np.float64)

    @property
    def y(self) -> np.ndarray:
        return self.table[Key.target].to_numpy(dtype=np.float64)

    def summary(self) -> str:
        miss = ", ".join(self.missing_columns) if self.missing_columns else "none"
        return (
            f"{self.descriptor}: {len(self.table)} rows × {len(self.feature_names)} features; "
            f"missing for this source (dropped, not zero-filled): {miss}; "
            f"rows dropped for missing/non-finite features: {self.dropped_rows}"
        )


@lru_cache(maxsize=1)
def _magpie():
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie")


@lru_cache(maxsize=None)
def _magpie_row(formula: str) -> tuple[float, ...]:
    from pymatgen.core import Composition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(float(v) for v in _magpie().featurize(Composition(formula)))


def magpie_features(formulas: Sequence[str], *, progress: bool = False) -> pd.DataFrame:
    """Magpie composition statistics (matminer ``ElementProperty.from_preset("magpie")``, 132)."""
    from tqdm.auto import tqdm

    labels = [lab.replace("MagpieData ", "magpie_").replace(" ", "_") for lab in _magpie().feature_labels()]
    rows = [_magpie_row(f) for f in tqdm(formulas, desc="magpie", unit="entry", disable=not progress)]
    return pd.DataFrame(rows, columns=labels)


@lru_cache(maxsize=None)
def _composition_stats(formula: str) -> tuple[float, ...]:
    from pymatgen.core import Composition

    comp = Composition(formula).fractional_composition
    els = list(comp.elements)
    w = np.array([comp[e] for e in els], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = np.array([e.Z for e in els], dtype=float)
        m = np.array([float(e.atomic_mass) for e in els], dtype=float)
        x = np.array([e.X for e in els], dtype=float)
        mv = np.array(
            [float(e.molar_volume) if e.molar_volume is not None else np.nan for e in els], dtype=float
        )

    def mean_std(v: np.ndarray) -> tuple[float, float]:
        mu = float(np.sum(w * v))
        return mu, float(np.sqrt(np.sum(w * (v - mu) ** 2)))

    return (
        *mean_std(z), *mean_std(m), *mean_std(x), float(np.min(x)), float(np.max(x)),
        float(len(els)), float(np.sum(w * mv) * _AVOGADRO_A3),
    )


def paper17_features(entries: pd.DataFrame) -> pd.DataFrame:
    """The 17 descriptors of the original study: 8 compositional statistics + 9 properties.

    Property columns the entries do not have come back as NaN (the caller reports and drops
    them); nothing is zero-filled.
    """
    comp = pd.DataFrame(
        [_composition_stats(f) for f in entries[Key.formula]],
        columns=[*PAPER17_COMPOSITION, "n_elements", "mean_atomic_volume"],
    )

    def col(name: str) -> np.ndarray:
        if name not in entries:
            return np.full(len(entries), np.nan)
        return pd.to_numeric(entries[name], errors="coerce").to_numpy(dtype=float)

    nsites = col(Key.nsites)
    props = pd.DataFrame(
        {
            Key.energy_per_atom: col(Key.energy_per_atom),
            Key.band_gap: col(Key.band_gap),
            Key.density: col(Key.density),
            "volume_per_atom": col(Key.volume) / nsites,
            Key.nsites: nsites,
            Key.e_above_hull: col(Key.e_above_hull),
            Key.is_stable: col(Key.is_stable),
        }
    )
    out = pd.concat([comp[list(PAPER17_COMPOSITION)], props,
                     comp[["n_elements", "mean_atomic_volume"]]], axis=1)
    return out[[*PAPER17_COMPOSITION, *PAPER17_PROPERTIES]]


def featurize(entries: pd.DataFrame, descriptor: str = "magpie", *, progress: bool = False) -> FeatureSet:
    """Descriptor table for cleaned entries (see module docstring for the missing-value policy)."""
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"unknown descriptor set {descriptor!r}; use one of {DESCRIPTORS}")
    missing_ids = [c for c in (Key.formula, Key.target, Key.entry_id) if c not in entries]
    if missing_ids:
        raise ValueError(f"entries table lacks column(s) {missing_ids}; build it with alhelpers.data")
    if descriptor == "magpie":
        feats = magpie_features(entries[Key.formula].tolist(), progress=progress)
    else:
        feats = paper17_features(entries)
    feats = feats.astype(np.float64)
    absent = [c for c in feats.columns if feats[c].isna().all()]
    feats = feats.drop(columns=absent)
    finite = np.isfinite(feats.to_numpy()).all(axis=1)
    ids = entries[[c for c in ID_COLUMNS if c in entries]].reset_index(drop=True)
    table = pd.concat([ids, feats.reset_index(drop=True)], axis=1).loc[finite].reset_index(drop=True)
    return FeatureSet(
        descriptor=descriptor,
        table=table,
        feature_names=[str(c) for c in feats.columns],
        missing_columns=[str(c) for c in absent],
        dropped_rows=int((~finite).sum()),
    )


def feature_names(table: pd.DataFrame) -> list[str]:
    """Feature columns of a saved feature table (everything but the id columns)."""
    return [c for c in table.columns if c not in ID_COLUMNS and c != Key.system]


def save_features(fs: FeatureSet, path: str | Path) -> None:
    """Write a feature table (parquet) and its bookkeeping (``.json`` beside it), atomically."""
    from alhelpers.files import write_json, write_parquet

    path = Path(path)
    write_parquet(path, fs.table)
    meta = {"descriptor": fs.descriptor, "feature_names": fs.feature_names,
            "missing_columns": fs.missing_columns, "dropped_rows": fs.dropped_rows}
    write_json(path.with_suffix(".json"), meta)


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature table written by :func:`save_features` (notebook 02).

    A missing file raises ``FileNotFoundError`` and an unreadable one
    :class:`alhelpers.files.UnreadableFileError`, both saying how to make it again.
    """
    from alhelpers.files import read_json, read_parquet

    path = Path(path)
    todo = ("Run notebooks/02_featurize.ipynb for this system again (or `python -m alhelpers.run "
            "study`, which recomputes it), or delete the file.")
    table = read_parquet(path, todo=todo)
    meta = read_json(path.with_suffix(".json"), todo=todo) if path.with_suffix(".json").exists() else None
    if meta is None:
        raise FileNotFoundError(f"{path.with_suffix('.json')} does not exist. {todo}")
    return FeatureSet(descriptor=meta["descriptor"], table=table,
                      feature_names=meta["feature_names"], missing_columns=meta["missing_columns"],
                      dropped_rows=meta["dropped_rows"])
