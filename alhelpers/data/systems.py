"""Material systems, cleaning filters, de-duplication and the pool/test split (STUDY §1).

Every filter returns the kept rows and a :class:`FilterStep` that says how many rows it removed,
so that a notebook can print exactly what happened to the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from alhelpers.keys import SYSTEMS, Key


@dataclass(frozen=True)
class FilterStep:
    """One cleaning step: what it did and how many rows it removed."""

    name: str
    removed: int
    remaining: int


def report_frame(steps: Sequence[FilterStep]) -> pd.DataFrame:
    """The filter steps as a small tidy table (for printing in notebooks)."""
    return pd.DataFrame([s.__dict__ for s in steps], columns=["name", "removed", "remaining"])


# --------------------------------------------------------------------------- compositions


@lru_cache(maxsize=None)
def _composition_info(formula: str) -> tuple[frozenset[str], str, int]:
    from pymatgen.core import Composition

    comp = Composition(formula)
    not_elements = [str(e) for e in comp.elements if type(e).__name__ != "Element"]
    if not_elements or comp.num_atoms <= 0:
        raise ValueError(f"{formula!r} is not a chemical formula of real elements ({not_elements})")
    return (
        frozenset(el.symbol for el in comp.elements),
        comp.reduced_formula,
        int(round(comp.num_atoms)),
    )


def elements_of(formula: str) -> frozenset[str]:
    """Chemical elements in a formula (``"TiO2"`` → ``{"Ti", "O"}``)."""
    return _composition_info(formula)[0]


def reduced_formula(formula: str) -> str:
    return _composition_info(formula)[1]


def atoms_in_formula(formula: str) -> int:
    return _composition_info(formula)[2]


def system_elements(system: str) -> tuple[str, ...]:
    """Elements a system's entries must all contain.

    The study's systems are ``C``, ``Si``, ``Fe`` and ``Ti-O``; any other hyphen-separated list of
    element symbols (``"Li-Co-O"``) works too.
    """
    if system in SYSTEMS:
        return SYSTEMS[system]
    from pymatgen.core.periodic_table import Element

    parts = tuple(p for p in system.replace("–", "-").split("-") if p)
    bad = [p for p in parts if not Element.is_valid_symbol(p)]
    if not parts or bad:
        raise ValueError(
            f"unknown system {system!r}: use one of {sorted(SYSTEMS)} or a hyphen-separated list "
            f"of element symbols such as 'Li-Co-O' (not element symbols: {bad or [system]})"
        )
    return parts


def select_system(entries: pd.DataFrame, system: str) -> pd.DataFrame:
    """Rows whose composition contains every element of ``system`` (C, Si, Fe: contains; Ti-O: both)."""
    need = set(system_elements(system))
    if Key.elements in entries:  # precomputed in the snapshot: no formula parsing needed
        mask = entries[Key.elements].map(lambda e: need <= set(e.split())).to_numpy(dtype=bool)
    else:
        mask = entries[Key.formula].map(lambda f: need <= elements_of(f)).to_numpy(dtype=bool)
    out = entries.loc[mask].reset_index(drop=True)
    out[Key.system] = system
    return out


# --------------------------------------------------------------------------- filters


def _step(name: str, before: pd.DataFrame, after: pd.DataFrame) -> tuple[pd.DataFrame, FilterStep]:
    return after.reset_index(drop=True), FilterStep(name, len(before) - len(after), len(after))


def filter_sites(
    df: pd.DataFrame, *, min_sites: int = 2, max_sites: int = 50
) -> tuple[pd.DataFrame, FilterStep]:
    """Keep cells with ``min_sites``–``max_sites`` atoms (composition-only rows: atoms in the formula)."""
    n = df[Key.nsites].astype(float)
    return _step(f"{min_sites}-{max_sites} atoms per cell", df, df[(n >= min_sites) & (n <= max_sites)])


def filter_finite_target(df: pd.DataFrame) -> tuple[pd.DataFrame, FilterStep]:
    """Drop rows whose target is missing, NaN or infinite."""
    y = pd.to_numeric(df[Key.target], errors="coerce").to_numpy(dtype=float)
    return _step("finite target", df, df[np.isfinite(y)])


def filter_unphysical(df: pd.DataFrame, *, max_abs: float = 5.0) -> tuple[pd.DataFrame, FilterStep]:
    """Drop unphysical targets, |E_f| > ``max_abs`` eV/atom."""
    return _step(f"|E_f| <= {max_abs:g} eV/atom", df, df[df[Key.target].abs() <= max_abs])


def deduplicate(df: pd.DataFrame, *, tol: float = 1e-3) -> tuple[pd.DataFrame, FilterStep]:
    """Keep one of the entries with the same reduced composition whose targets differ by < ``tol``.

    Within a reduced composition, entries are sorted by target (rows with a structure first among
    equals) and an entry is dropped when it lies within ``tol`` eV/atom of the last kept one.
    """
    if df.empty:
        return _step(f"de-duplicate (< {tol * 1000:g} meV/atom)", df, df)
    work = df.assign(
        _red=df[Key.formula].map(reduced_formula),
        _nostruct=df[Key.structure].isna() if Key.structure in df else True,
        _pos=np.arange(len(df)),
    ).sort_values(["_red", Key.target, "_nostruct", "_pos"], kind="mergesort")
    keep = np.ones(len(work), dtype=bool)
    red = work["_red"].to_numpy()
    y = work[Key.target].to_numpy(dtype=float)
    last_red, last_y = None, np.nan
    for i in range(len(work)):
        if red[i] == last_red and abs(y[i] - last_y) < tol:
            keep[i] = False
        else:
            last_red, last_y = red[i], y[i]
    kept_pos = np.sort(work["_pos"].to_numpy()[keep])
    return _step(f"de-duplicate (< {tol * 1000:g} meV/atom)", df, df.iloc[kept_pos])


def clean_entries(
    df: pd.DataFrame,
    *,
    min_sites: int = 2,
    max_sites: int = 50,
    max_abs_target: float = 5.0,
    dedup_tol: float = 1e-3,
) -> tuple[pd.DataFrame, list[FilterStep]]:
    """Apply STUDY §1's filters in order; return the kept rows and one step per filter."""
    steps: list[FilterStep] = [FilterStep("input", 0, len(df))]
    df, s = filter_finite_target(df)
    steps.append(s)
    df, s = filter_sites(df, min_sites=min_sites, max_sites=max_sites)
    steps.append(s)
    df, s = filter_unphysical(df, max_abs=max_abs_target)
    steps.append(s)
    df, s = deduplicate(df, tol=dedup_tol)
    steps.append(s)
    return df, steps


# --------------------------------------------------------------------------- split


def split_pool_test(
    n: int, *, test_fraction: float = 0.2, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``n`` rows into pool and test positions (sorted); the test set is never queried."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split into pool and test, got {n}")
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def summarize_system(df: pd.DataFrame, *, test_fraction: float = 0.2) -> pd.DataFrame:
    """Table 1 of the study for one or more systems: counts per source, E_f mean/std, pool/test sizes."""
    rows = []
    for system, g in df.groupby(Key.system, sort=False):
        n_test = max(1, int(round(test_fraction * len(g)))) if len(g) >= 2 else 0
        row = {"system": system, "n_total": len(g)}
        for src in ("mp", "oqmd", "file"):
            cnt = int((g[Key.source] == src).sum())
            if cnt or src != "file":
                row[f"n_{src}"] = cnt
        row.update(
            {
                "ef_mean": float(g[Key.target].mean()),
                "ef_std": float(g[Key.target].std(ddof=1)) if len(g) > 1 else float("nan"),
                "n_pool": len(g) - n_test,
                "n_test": n_test,
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)
