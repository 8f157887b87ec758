"""Material systems, cleaning filters, de-duplication and the pool/test split (STUDY §1).

Every filter returns the kept rows and a :class:`FilterStep` that says how many rows it removed,
so that a notebook can print exactly what happened to the data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alhelpers.data import formulas as _formulas  # MAX_MULTIPLIER read when used (tests lower it)
from alhelpers.data.formulas import (  # the formula functions, also importable from here as before
    HYDROGEN_ISOTOPES,
    FormulaError,
    atom_counts,
    atoms_in_formula,  # noqa: F401
    elements_of,
    integer_formula,
    is_element_symbol,
    reduced_formula,
)
from alhelpers.data.table import column_hint
from alhelpers.keys import SYSTEMS, Key

#: How many example rows a step or an error message names.
N_EXAMPLES = 3


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


#: What every message about a system name says the name is set with.
SYSTEM_SETTING = "notebook parameter SYSTEM, runner flag --systems"

#: A system name that is not an element list: every row of a user's own table (SOURCE = 'file').
ALL_ROWS = "all"


def _electronegativity(symbol: str) -> float:
    """Pauling electronegativity; infinity for elements without one (He, Ne, Ar: sorted last)."""
    from pymatgen.core.periodic_table import Element

    with warnings.catch_warnings():  # "No Pauling electronegativity for He. Setting to NaN."
        warnings.simplefilter("ignore", UserWarning)
        x = float(Element(symbol).X)
    return x if math.isfinite(x) else math.inf


def _join_system(elements: Sequence[str]) -> str:
    """The canonical name of a set of elements: the elements by Pauling electronegativity, then
    symbol, joined by ``-`` (the study's own names ``C``, ``Si``, ``Fe``, ``Ti-O`` among them)."""
    return "-".join(sorted(set(elements), key=lambda e: (_electronegativity(e), e)))


def _empty_part(parts: list[str]) -> str:
    """Where the first empty element of a split name is, in words."""
    i = parts.index("")
    if i == 0:
        return f"before {next(p for p in parts if p)!r} (a hyphen at the start)"
    if i == len(parts) - 1:
        return f"after {parts[-2]!r} (a hyphen at the end)"
    after = next((p for p in parts[i + 1:] if p), None)
    return (f"between {parts[i - 1]!r} and {after!r} (two hyphens in a row)" if after
            else f"after {parts[i - 1]!r} (hyphens at the end)")


def _bad_symbols(parts: list[str]) -> str | None:
    """Why some ``parts`` are not element symbols (with the spelling meant), or None."""
    bad = [p for p in parts if not is_element_symbol(p)]
    if not bad:
        return None
    words = " and ".join(map(repr, bad))
    isotopes = [p for p in bad if p in HYDROGEN_ISOTOPES]
    if isotopes:
        what = " and ".join(f"{p!r} is {HYDROGEN_ISOTOPES[p]}" for p in isotopes)
        return (f"{what} (an isotope of hydrogen) to pymatgen, not an element of its own; "
                "write H for hydrogen")
    if all(is_element_symbol(p.capitalize()) for p in bad):
        meant = _join_system([p if is_element_symbol(p) else p.capitalize() for p in parts])
        verb = "is not an element symbol" if len(bad) == 1 else "are not element symbols"
        return f"{words} {verb} (symbols are case-sensitive); write {meant!r}"
    return (f"{words} {'is not an element' if len(bad) == 1 else 'are not elements'}; a system is a "
            "hyphen-separated list of element symbols such as 'Ti-O'")


def canonical_system(name: str) -> str:
    """The one name of a Track A system, so that each set of elements has one set of files and
    one row in every table.

    A system is a set of elements: the name lists them separated by ``-`` (or the en dash
    ``–``), in any order, with surrounding spaces and repeats allowed; the canonical name is the
    study's own (``C``, ``Si``, ``Fe``, ``Ti-O``) or else the elements in order of Pauling
    electronegativity, then symbol: ``"O-Ti"`` → ``"Ti-O"``, ``"O-Co-Li"`` → ``"Li-Co-O"``,
    ``"Ti-Ti-O"`` → ``"Ti-O"``. ``"all"`` (every row of your own table) stays ``"all"``.

    ``ValueError`` naming what is wrong, the spelling meant and the notebook parameter and
    runner flag: an empty element (``"Ti--O"``, ``"Ti-O-"``), a symbol that is no element
    (``"Xx"``, ``"ti"``: write ``Ti``), or ``D``/``T``, which pymatgen reads as hydrogen. Track B's
    systems are data-set names (``tio2``), not element lists: they do not come here.
    """
    if not isinstance(name, str):
        raise ValueError(f"a system name is text such as 'Ti-O', not {name!r} ({SYSTEM_SETTING})")
    text = name.strip()
    if text == ALL_ROWS:
        return ALL_ROWS
    use = (f"use one of the study's systems {', '.join(SYSTEMS)} or a hyphen-separated list of "
           f"element symbols such as 'Li-Co-O' ({SYSTEM_SETTING})")
    if not text:
        raise ValueError(f"an empty system name: {use}")
    parts = [p.strip() for p in text.replace("–", "-").split("-")]
    named = [p for p in parts if p]
    if not named:
        raise ValueError(f"system {name!r} names no element: {use}")
    why = _bad_symbols(named)
    if why:
        raise ValueError(f"unknown system {name!r}: {why} ({SYSTEM_SETTING})")
    canonical = _join_system(named)
    if len(named) < len(parts):
        raise ValueError(f"system {name!r} has an empty element {_empty_part(parts)}; write "
                         f"{canonical!r} ({SYSTEM_SETTING})")
    return canonical


def system_label(system: str) -> str:
    """How a system is shown in figures, tables and text: its canonical name with en dashes,
    ``"Ti-O"`` (or ``"O-Ti"``) → ``"Ti–O"``, ``"C"`` → ``"C"``.

    A name that is not an element list (``"all"``, Track B's data sets such as ``"tio2"``) is
    shown as it is, so that code shared by both tracks can call this on any ``system`` column.
    """
    try:
        return canonical_system(system).replace("-", "–")
    except ValueError:
        return system


def system_elements(system: str) -> tuple[str, ...]:
    """Elements a system's entries must all contain, in the order of its canonical name
    (:func:`canonical_system`): ``"Ti-O"`` and ``"O-Ti"`` → ``("Ti", "O")``.

    The study's systems are ``C``, ``Si``, ``Fe`` and ``Ti-O``; any other hyphen-separated list of
    element symbols (``"Li-Co-O"``) works too. ``ValueError`` for a name that is no element list
    (``"all"`` included: it keeps a table's rows without choosing by elements).
    """
    canonical = canonical_system(system)
    if canonical == ALL_ROWS:
        raise ValueError(
            f"system {ALL_ROWS!r} names no elements: it keeps every row of your own table "
            f"(SOURCE = 'file'); for another source choose an element list such as 'Ti-O' "
            f"({SYSTEM_SETTING})"
        )
    return tuple(canonical.split("-"))


def select_system(entries: pd.DataFrame, system: str) -> pd.DataFrame:
    """Rows whose composition contains every element of ``system`` (C, Si, Fe: contains; Ti-O:
    both), with a ``system`` column holding its canonical name (:func:`canonical_system`)."""
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
    out[Key.system] = canonical_system(system)
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


def _integer_formulas_or_raise(
    df: pd.DataFrame, formulas: list[str], label: str | None
) -> list[tuple[str, int] | None]:
    """:func:`integer_formula` of each formula; ``ValueError`` naming the rows (entry ids where
    there are) whose formulas are not ones of real elements, with why and the formula meant."""
    converted, bad = [], []
    ids = df[Key.entry_id].astype(str).tolist() if Key.entry_id in df else None
    for i, f in enumerate(formulas):
        try:
            converted.append(integer_formula(f))
        except FormulaError as err:
            converted.append(None)
            bad.append(f"{f'entry {ids[i]}' if ids else f'row {i}'}: {f!r} ({err.reason})")
    if bad:
        raise ValueError(
            f"{label or _table_label(df)}: {len(bad)} formula(s) are not chemical formulas pymatgen "
            f"reads as written, e.g. {'; '.join(bad[:N_EXAMPLES])}. Fix or delete those rows; "
            "nothing was written."
        )
    return converted


def integer_formulas(
    df: pd.DataFrame, *, label: str | None = None
) -> tuple[pd.DataFrame, FilterStep]:
    """Rewrite formulas with non-integer amounts as their smallest integer formula.

    See :func:`~alhelpers.data.formulas.integer_formula` for how (``Li0.33CoO2`` → ``LiCo3O6``).
    The row's ``formula`` becomes the integer formula and ``nsites`` its atom count; the step
    removes nothing and counts the rewritten rows in ``changed`` (examples ``"Fe0.5Ni0.5 → FeNi
    (2 atoms)"``), and a ``UserWarning`` says the same. A formula that needs more than
    :data:`~alhelpers.data.formulas.MAX_MULTIPLIER` formula units keeps its text and gets no atom
    count; the atoms-per-cell filter then removes it. Rows whose amounts are whole numbers are
    left exactly as they are. ``label`` names the rows in the warning (default: their dataset
    names). ``ValueError`` naming the rows whose formulas are not ones of real elements
    (:class:`~alhelpers.data.formulas.FormulaError`).
    """
    name = "fractional formulas → integer formulas"
    formulas = df[Key.formula].astype(str).tolist()
    converted = _integer_formulas_or_raise(df, formulas, label)
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
            f"; {len(failed)} have no integer formula within {_formulas.MAX_MULTIPLIER} formula "
            f"units and are removed by the atoms-per-cell filter, e.g. {failed[:N_EXAMPLES]}"
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


#: Targets of one reduced composition further apart than this (eV/atom) conflict (see
#: :func:`conflicting_duplicates`). Measured on the offline snapshot after the filters (20,799
#: rows of Materials Project and OQMD, 16,750 reduced compositions, 3,520 of them with more
#: than one row): 29 compositions span more than 0.5 eV/atom, 11 more than 1, 4 more than 2 and
#: one more than 3: CdCO3, 3.21 (Materials Project 2015's mp-547864 at +1.43 against OQMD's
#: −1.59 and MP's −1.78). Those wide spreads are real high-energy polymorphs (up to 3.2 eV/atom
#: above the hull; SiO2 spans 2.44, BaTiO3 1.82, Fe 0.69), so the threshold lies above them all:
#: the study's data raise no warning, while a sign or unit mix-up of |E_f| > 1.75 eV/atom does.
CONFLICT_SPREAD = 3.5

#: A sign flip: two targets of one reduced composition, each at least :data:`MIRROR_MIN`
#: eV/atom from zero, the one within :data:`MIRROR_TOL` of the other's negative (−1.2 and +1.2).
#: No composition of the snapshot has such a pair (the nearest, CdCO3's +1.43 and −1.59, is
#: 0.16 from a mirror image; with 0.1 instead of 0.5 eV/atom, InN's ±0.18 would be one).
MIRROR_MIN = 0.5
MIRROR_TOL = 0.05


def _mirrored(y: np.ndarray) -> bool:
    """Whether one target is (within :data:`MIRROR_TOL`) the negative of another, both at least
    :data:`MIRROR_MIN` from zero."""
    neg, pos = y[y <= -MIRROR_MIN], y[y >= MIRROR_MIN]
    return bool(len(neg) and len(pos) and np.abs(neg[:, None] + pos[None, :]).min() <= MIRROR_TOL)


def conflicting_duplicates(df: pd.DataFrame, *, spread: float = CONFLICT_SPREAD) -> pd.Series:
    """Reduced compositions whose targets conflict, each with its targets sorted, in order of
    first appearance (a Series: reduced formula → tuple of eV/atom; empty when none).

    Targets conflict when they lie more than ``spread`` eV/atom apart (default
    :data:`CONFLICT_SPREAD`, above every spread of real polymorphs in the snapshot) or one is the
    negative of another (:data:`MIRROR_MIN`, :data:`MIRROR_TOL`): a mixed-up sign, unit or
    column rather than two polymorphs.
    """
    if df.empty:
        return pd.Series(dtype=object)
    y = pd.to_numeric(df[Key.target], errors="coerce")
    groups = y.groupby(df[Key.formula].map(reduced_formula).to_numpy(), sort=False)
    low, high = groups.min(), groups.max()
    wide = set(low.index[(high - low) > spread])
    flipped = {red for red in low.index[(low <= -MIRROR_MIN) & (high >= MIRROR_MIN)]
               if _mirrored(groups.get_group(red).to_numpy(dtype=float))}
    return pd.Series({red: tuple(sorted(groups.get_group(red).tolist()))
                      for red in low.index if red in wide | flipped}, dtype=object)


def _targets_text(red: str, targets: tuple[float, ...]) -> str:
    """``"TiO2: -4.9, -3.3, +4.9 eV/atom"`` (lowest, …, highest beyond four targets)."""
    shown = [f"{t:+.3g}" for t in targets]
    if len(shown) > 4:
        shown = [*shown[:2], "…", shown[-1], f"({len(shown)} rows)"]
    return f"{red}: {', '.join(shown).replace(', (', ' (')} eV/atom"


def report_conflicts(
    df: pd.DataFrame, *, spread: float = CONFLICT_SPREAD, label: str | None = None
) -> tuple[pd.DataFrame, FilterStep]:
    """Name the conflicting duplicates (:func:`conflicting_duplicates`); keep every row.

    Which of two conflicting targets is right cannot be told from the table, and dropping one
    would change the data silently, so the rows stay: a ``UserWarning`` names up to
    :data:`N_EXAMPLES` compositions with their targets and says what to check, and the step (it
    removes and changes nothing) carries the same examples into the filter report.
    """
    name = f"conflicting duplicates (> {spread:g} eV/atom apart or sign-flipped; kept)"
    found = conflicting_duplicates(df, spread=spread)
    examples = tuple(_targets_text(red, t) for red, t in found.head(N_EXAMPLES).items())
    if len(found):
        n_rows = sum(len(t) for t in found)
        warnings.warn(
            f"{label or _table_label(df)}: {len(found)} reduced composition(s) ({n_rows} rows) have "
            f"targets that conflict, more than {spread:g} eV/atom apart or one the negative of "
            f"another: {'; '.join(examples)}. Real polymorphs differ by less (at most 3.2 eV/atom in "
            "Materials Project and OQMD). The rows are kept; check the units (every target a "
            "formation energy in eV/atom, not eV per cell or kJ/mol), the sign convention (the "
            f"same for all rows: negative = more stable than the elements) and the column ({column_hint('target')}: "
            "not mixed up with another column), then fix or delete the wrong rows.",
            UserWarning,
            stacklevel=3,
        )
    return df, FilterStep(name, 0, len(df), examples=examples)


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
    (:func:`integer_formulas`); before the de-duplication, conflicting duplicates are named
    (:func:`report_conflicts`: a warning and a step, every row kept). Raises ``ValueError`` when
    ``df`` has no rows, a formula is not one of real elements, or the filters remove every row,
    naming ``label`` (default: the dataset names), the filter that removed the last rows with
    examples, and what to check.
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
        (lambda d: report_conflicts(d, label=label), "nothing: this step removes no rows"),
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
