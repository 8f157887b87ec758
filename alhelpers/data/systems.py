"""Material systems, cleaning filters, de-duplication and the pool/test split (STUDY §1).

Every filter returns the kept rows and a :class:`FilterStep` that says how many rows it removed,
so that a notebook can print exactly what happened to the data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from alhelpers.keys import SYSTEMS, Key

#: How many example rows a step or an error message names.
N_EXAMPLES = 3

#: A formula's amounts, each multiplied by the same whole number, must lie within this many atoms
#: of whole numbers (and none may round to 0): ``Li0.33CoO2`` × 3 = Li0.99Co3O6 is read as
#: LiCo3O6, while ``Ba0.51Sr0.49TiO3`` is not read as 1/2 (× 2 gives Ba1.02) but needs × 49.
FRACTION_TOLERANCE = 0.01

#: The largest multiplier tried; a formula that needs more keeps no integer formula (its atom
#: count is unknown) and is removed, with an example, by the atoms-per-cell filter.
MAX_MULTIPLIER = 1000


@dataclass(frozen=True)
class FilterStep:
    """One cleaning step: what it did, how many rows it removed and changed, and a few examples.

    ``examples`` names up to :data:`N_EXAMPLES` of the removed (or changed) rows, e.g.
    ``"Ti (1 atoms)"`` or ``"Fe0.5Ni0.5 → FeNi (2 atoms)"``; it does not take part in ``==``.
    """

    name: str
    removed: int
    remaining: int
    changed: int = 0
    examples: tuple[str, ...] = field(default=(), compare=False)


def report_frame(steps: Sequence[FilterStep]) -> pd.DataFrame:
    """The filter steps as a small tidy table (for printing in notebooks); examples joined by "; "."""
    return pd.DataFrame(
        [{**s.__dict__, "examples": "; ".join(s.examples)} for s in steps],
        columns=["name", "removed", "remaining", "changed", "examples"],
    )


def _examples(df: pd.DataFrame, describe: Callable[[pd.Series], str]) -> tuple[str, ...]:
    """``"<formula> (<describe(row)>)"`` for the first :data:`N_EXAMPLES` rows of ``df``
    (``"row <index>"`` when there is no formula column)."""
    return tuple(f"{row[Key.formula] if Key.formula in row else f'row {i}'} ({describe(row)})"
                 for i, row in df.head(N_EXAMPLES).iterrows())


def _table_label(df: pd.DataFrame) -> str:
    """Where rows came from, for messages: the dataset name(s), e.g. ``"mine"``."""
    if Key.dataset in df and len(df):
        names = sorted(map(str, df[Key.dataset].dropna().unique()))
        if names:
            shown = ", ".join(names[:N_EXAMPLES]) + (", …" if len(names) > N_EXAMPLES else "")
            return f"the table ({shown})"
    return "the table"


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


@lru_cache(maxsize=None)
def integer_formula(formula: str) -> tuple[str, int] | None:
    """The formula with whole-number amounts and its atom count.

    A formula whose amounts are whole numbers is returned as written (``"Ti2O4"`` → ``("Ti2O4",
    6)``). Otherwise the amounts are multiplied by the smallest whole number (up to
    :data:`MAX_MULTIPLIER`) that brings each within :data:`FRACTION_TOLERANCE` of a whole number
    of at least 1 and divided by their greatest common divisor, element order kept:
    ``"Fe0.5Ni0.5"`` → ``("FeNi", 2)``, ``"Li0.33CoO2"`` → ``("LiCo3O6", 10)``,
    ``"Ba0.51Sr0.49TiO3"`` → ``("Ba25Sr24Ti49O147", 245)`` (then removed by the 2–50 atoms
    filter). None when no multiplier works.

    (pymatgen's ``Composition.get_integer_formula_and_factor`` is not used: its tolerance
    can round a minority element away — ``Li0.05CoO2`` → ``CoO2`` — and it groups
    polyanions, ``Li(CoO2)3``.)
    """
    from pymatgen.core import Composition

    _composition_info(formula)  # ValueError for formulas that are not real elements
    amounts = Composition(formula).get_el_amt_dict()
    if all(abs(a - round(a)) < 1e-9 for a in amounts.values()):
        return formula, int(round(sum(amounts.values())))
    for m in range(1, MAX_MULTIPLIER + 1):
        scaled = {el: a * m for el, a in amounts.items()}
        whole = {el: round(x) for el, x in scaled.items()}
        if all(w >= 1 and abs(x - w) <= FRACTION_TOLERANCE + 1e-9
               for x, w in zip(scaled.values(), whole.values(), strict=True)):
            divisor = math.gcd(*whole.values())
            counts = {el: w // divisor for el, w in whole.items()}
            text = "".join(f"{el}{n if n != 1 else ''}" for el, n in counts.items())
            return text, sum(counts.values())
    return None


def atom_counts(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Atom counts as int64, or as float when one is unknown (NaN) or not a whole number."""
    arr = np.asarray(values, dtype=float)
    whole = np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))
    return arr.astype(np.int64) if whole else arr


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
        present = entries[Key.elements].map(lambda e: frozenset(e.split()))
    else:
        present = entries[Key.formula].map(elements_of)
    mask = present.map(lambda e: need <= e).to_numpy(dtype=bool)
    if not mask.any():
        found = sorted(set().union(*present)) if len(present) else []
        raise ValueError(
            f"no entries of system {system!r} (formulas containing all of "
            f"{', '.join(system_elements(system))}) in {_table_label(entries)} of {len(entries)} "
            f"rows; the elements present are: {', '.join(found) or 'none'}. Choose a system made "
            "of these elements, or system='all' for your own table to keep every row."
        )
    out = entries.loc[mask].reset_index(drop=True)
    out[Key.system] = system
    return out


# --------------------------------------------------------------------------- filters


def _step(
    name: str, df: pd.DataFrame, keep: np.ndarray, describe: Callable[[pd.Series], str]
) -> tuple[pd.DataFrame, FilterStep]:
    """The rows where ``keep`` is true, and a step naming up to :data:`N_EXAMPLES` removed ones."""
    keep = np.asarray(keep, dtype=bool)
    return df.loc[keep].reset_index(drop=True), FilterStep(
        name, int((~keep).sum()), int(keep.sum()), examples=_examples(df.loc[~keep], describe)
    )


def _atoms(row: pd.Series) -> str:
    n = pd.to_numeric(row.get(Key.nsites), errors="coerce")
    return "atom count unknown" if pd.isna(n) else f"{n:g} atoms"


def integer_formulas(
    df: pd.DataFrame, *, label: str | None = None
) -> tuple[pd.DataFrame, FilterStep]:
    """Rewrite formulas with non-integer amounts as their smallest integer formula.

    See :func:`integer_formula` for how (``Li0.33CoO2`` → ``LiCo3O6``).
    The row's ``formula`` becomes the integer formula and ``nsites`` its atom count; the step
    removes nothing and counts the rewritten rows in ``changed`` (examples ``"Fe0.5Ni0.5 → FeNi
    (2 atoms)"``), and a ``UserWarning`` says the same. A formula that needs more than
    :data:`MAX_MULTIPLIER` formula units keeps its text and gets no atom count; the atoms-per-cell
    filter then removes it. Rows whose amounts are whole numbers are left exactly as they are.
    ``label`` names the rows in the warning (default: their dataset names).
    """
    name = "fractional formulas → integer formulas"
    formulas = df[Key.formula].astype(str).tolist()
    converted = [integer_formula(f) for f in formulas]
    rewritten = [i for i, (f, c) in enumerate(zip(formulas, converted, strict=True))
                 if c is not None and c[0] != f]
    failed = [formulas[i] for i, c in enumerate(converted) if c is None]
    out = df.reset_index(drop=True)
    if not rewritten and not failed:
        return out, FilterStep(name, 0, len(out))
    out = out.copy()
    nsites = (pd.to_numeric(out[Key.nsites], errors="coerce") if Key.nsites in out
              else pd.Series(np.nan, index=out.index)).astype(float).to_numpy()
    new_formulas = list(formulas)
    for i, c in enumerate(converted):
        if c is None:
            nsites[i] = np.nan
    for i in rewritten:
        new_formulas[i], nsites[i] = converted[i]
    out[Key.formula] = new_formulas
    out[Key.nsites] = atom_counts(nsites)
    examples = tuple(f"{formulas[i]} → {new_formulas[i]} ({nsites[i]:g} atoms)"
                     for i in rewritten[:N_EXAMPLES])
    message = f"{label or _table_label(df)}: {len(rewritten)} formula(s) with non-integer amounts"
    message += (f" were rewritten as their smallest integer formula, e.g. {', '.join(examples)}"
                if rewritten else "")
    if failed:
        message += (
            f"; {len(failed)} have no integer formula within {MAX_MULTIPLIER} formula units and are "
            f"removed by the atoms-per-cell filter, e.g. {failed[:N_EXAMPLES]}"
        )
    warnings.warn(message + ".", UserWarning, stacklevel=3)
    return out, FilterStep(name, 0, len(out), changed=len(rewritten), examples=examples)


def filter_sites(
    df: pd.DataFrame, *, min_sites: int = 2, max_sites: int = 50
) -> tuple[pd.DataFrame, FilterStep]:
    """Keep cells with ``min_sites``–``max_sites`` atoms (composition-only rows: atoms in the formula)."""
    n = df[Key.nsites].astype(float)
    return _step(f"{min_sites}-{max_sites} atoms per cell", df,
                 ((n >= min_sites) & (n <= max_sites)).to_numpy(), _atoms)


def filter_finite_target(df: pd.DataFrame) -> tuple[pd.DataFrame, FilterStep]:
    """Drop rows whose target is missing, NaN or infinite."""
    y = pd.to_numeric(df[Key.target], errors="coerce").to_numpy(dtype=float)
    return _step("finite target", df, np.isfinite(y), lambda row: f"target {row[Key.target]}")


def filter_unphysical(df: pd.DataFrame, *, max_abs: float = 5.0) -> tuple[pd.DataFrame, FilterStep]:
    """Drop unphysical targets, |E_f| > ``max_abs`` eV/atom."""
    return _step(f"|E_f| <= {max_abs:g} eV/atom", df, (df[Key.target].abs() <= max_abs).to_numpy(),
                 lambda row: f"{row[Key.target]:.4g} eV/atom")


def deduplicate(df: pd.DataFrame, *, tol: float = 1e-3) -> tuple[pd.DataFrame, FilterStep]:
    """Keep one of the entries with the same reduced composition whose targets differ by < ``tol``.

    Within a reduced composition, entries are sorted by target (rows with a structure first among
    equals) and an entry is dropped when it lies within ``tol`` eV/atom of the last kept one.
    """
    name = f"de-duplicate (< {tol * 1000:g} meV/atom)"
    if df.empty:
        return _step(name, df, np.ones(0, dtype=bool), str)
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
    in_order = np.zeros(len(df), dtype=bool)
    in_order[work["_pos"].to_numpy()[keep]] = True
    return _step(name, df, in_order, lambda row: f"{row[Key.target]:.4g} eV/atom")


def clean_entries(
    df: pd.DataFrame,
    *,
    min_sites: int = 2,
    max_sites: int = 50,
    max_abs_target: float = 5.0,
    dedup_tol: float = 1e-3,
    label: str | None = None,
) -> tuple[pd.DataFrame, list[FilterStep]]:
    """Apply STUDY §1's filters in order; return the kept rows and one step per filter.

    Formulas with non-integer amounts are first rewritten as integer formulas
    (:func:`integer_formulas`). Raises ``ValueError`` when ``df`` has no rows or the filters
    remove every row, naming ``label`` (default: the dataset names), the filter that removed the
    last rows with examples, and what to check.
    """
    label = label or _table_label(df)
    if df.empty:
        raise ValueError(f"{label} has no rows to clean; check the source, system and table")
    steps: list[FilterStep] = [FilterStep("input", 0, len(df))]
    df, s = integer_formulas(df, label=label)
    steps.append(s)
    # each filter with what to check when it removes the last rows
    filters: list[tuple[Callable[[pd.DataFrame], tuple[pd.DataFrame, FilterStep]], str]] = [
        (filter_finite_target,
         "check that target=... (notebook TARGET_COLUMN) names a numeric column of formation "
         "energies in eV/atom, written with '.' as the decimal point"),
        (lambda d: filter_sites(d, min_sites=min_sites, max_sites=max_sites),
         f"check the formulas, or widen min_sites/max_sites (now {min_sites}-{max_sites} atoms)"),
        (lambda d: filter_unphysical(d, max_abs=max_abs_target),
         "check that the target is in eV/atom (not eV per cell or kJ/mol), or raise "
         f"max_abs_target (now {max_abs_target:g})"),
        (lambda d: deduplicate(d, tol=dedup_tol), f"lower dedup_tol (now {dedup_tol:g})"),
    ]
    for apply, advice in filters:
        df, s = apply(df)
        steps.append(s)
        if df.empty:
            before = "; ".join(f"{t.name!r} removed {t.removed}" for t in steps[2:-1] if t.removed)
            raise ValueError(
                f"{label}: the filters removed all {steps[0].remaining} rows; {s.name!r} removed "
                f"the last {s.removed}, e.g. {', '.join(s.examples)}"
                + (f" (before it: {before})" if before else "")
                + f". Nothing was written; {advice}."
            )
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
        others = sorted(set(map(str, g[Key.source].dropna())) - {"mp", "oqmd", "file"})
        for src in ("mp", "oqmd", "file", *others):
            cnt = int((g[Key.source] == src).sum())
            if cnt or src in ("mp", "oqmd"):
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
