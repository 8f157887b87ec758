"""Bring your own table: any CSV or parquet with a formula column and a target column.

Besides the formula and target columns (named with ``formula=`` and ``target=``), a table may have:

* ``source``: which database a row comes from. It is kept, so that a table exported from
  Materials Project and OQMD can run the cross-database stage. Values are recognised
  case-insensitively (:data:`SOURCE_ALIASES`: ``"MP"``, ``"Materials Project"`` → ``"mp"``;
  ``"OQMD"`` → ``"oqmd"``); empty cells get ``source=`` (default ``"file"``); other values are
  kept as written, with a warning.
* ``nsites``: atoms per cell; empty cells (or no such column) get the atoms in the formula.
* the known property columns (``band_gap``, ``density``, …).

Formulas with non-integer amounts (``Fe0.5Ni0.5``) are read as written here and rewritten as
integer formulas when the rows are cleaned (:func:`alhelpers.data.systems.integer_formulas`).
A CSV separated by ``;`` or tabs (as a European spreadsheet exports it) is read with that
delimiter, and its columns written with decimal commas as numbers, with a warning that says so.
"""

from __future__ import annotations

import gzip
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.files import read_local_parquet
from alhelpers.keys import ENTRY_COLUMNS, PROPERTY_COLUMNS, Key

#: Recognised values of a ``source`` column (lower case, runs of spaces, ``_`` and ``-`` read as
#: one space) and the source each stands for.
SOURCE_ALIASES: dict[str, str] = {
    "mp": "mp",
    "materials project": "mp",
    "materialsproject": "mp",
    "oqmd": "oqmd",
    "open quantum materials database": "oqmd",
    "file": "file",
}

#: How to choose another encoding, in the words of the notebook and the runner.
ENCODING_HINT = (
    "pass encoding='latin-1' (or 'cp1252' for Windows exports) "
    "(notebook parameter TABLE_ENCODING / runner flag --encoding)"
)

#: How a user names each column of a table, in the words of the notebook (parameter), the runner
#: (flag), :func:`alhelpers.data.fetch_system` / ``fetch_raw`` and :func:`read_user_table`
#: (keywords).
COLUMN_SETTINGS: dict[str, tuple[str, str, str, str]] = {
    "formula": ("FORMULA_COLUMN", "--formula-column", "formula_column", "formula"),
    "target": ("TARGET_COLUMN", "--target", "target", "target"),
}

#: Delimiters a text table may use besides ``,``, and how messages name them.
DELIMITERS: dict[str, str] = {";": "';'", "\t": "a tab"}

_N_EXAMPLES = 3


def column_hint(kind: str, column: str | None = None) -> str:
    """Every way to name the ``kind`` (``"formula"`` or ``"target"``) column, with ``column`` (a
    name to use) filled in: ``notebook parameter FORMULA_COLUMN = 'comp', runner flag
    --formula-column comp, fetch_system(formula_column='comp') or read_user_table(formula='comp')``.
    """
    notebook, flag, fetch_kw, read_kw = COLUMN_SETTINGS[kind]
    value = repr(column) if column is not None else "'<column>'"
    shell = shlex.quote(column) if column is not None else "<column>"
    return (f"notebook parameter {notebook} = {value}, runner flag {flag} {shell}, "
            f"fetch_system({fetch_kw}={value}) or read_user_table({read_kw}={value})")


def normalize_source(value: object, *, default: str = "file") -> str:
    """``"MP"``, ``"Materials Project"`` → ``"mp"``; ``"OQMD"`` → ``"oqmd"``; empty → ``default``.

    Other text is returned stripped but otherwise as written.
    """
    if _missing(value):
        return default
    text = str(value).strip()
    if not text:
        return default
    return SOURCE_ALIASES.get(re.sub(r"[\s_-]+", " ", text.lower()), text)


def _missing(value: object) -> bool:
    """None, NaN or pandas' NA (a cell the table leaves empty)."""
    if value is None or isinstance(value, str):
        return value is None
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array in a parquet cell
        return False


def _where(path: Path, i: int) -> str:
    """Row ``i`` (0-based, data rows) as the user sees it: a CSV line number or a parquet row."""
    return f"row {i}" if _is_parquet(path) else f"line {i + 2}"


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _decode_error(path: Path, encoding: str, err: UnicodeDecodeError) -> ValueError:
    """A ``ValueError`` naming the file, the first byte that is not ``encoding`` and the fix."""
    data = path.read_bytes()
    if path.suffix.lower() == ".gz":
        data = gzip.decompress(data)
    try:
        data.decode(encoding)
        byte, pos = err.object[err.start], err.start  # pandas' own position (within its buffer)
        where = f"position {pos}"
    except UnicodeDecodeError as exact:
        byte, pos = data[exact.start], exact.start
        line = data[:pos].count(b"\n") + 1
        where = f"position {pos}, line {line}"
    return ValueError(
        f"{path.name} is not valid {encoding} (byte 0x{byte:02x} at {where}); {ENCODING_HINT}"
    )


def _header_line(path: Path, encoding: str) -> str:
    """The first non-empty line of a text table (decoded; ``""`` when there is none)."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding=encoding, newline="") as fh:
        for line in fh:
            if line.strip():
                return line
    return ""


def _delimiter(path: Path, encoding: str) -> str:
    """``","``, unless the header line has more ``;`` (or tabs) than commas: a table exported
    with a European locale (``formula;formation_energy_per_atom``) or tab-separated."""
    header = _header_line(path, encoding)
    counts = {d: header.count(d) for d in (",", *DELIMITERS)}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _read_delimited(path: Path, encoding: str, sep: str) -> pd.DataFrame:
    """A table separated by ``sep`` (not a comma), with a ``UserWarning`` that says so.

    Such tables often write ``-1,25`` for −1.25: a column whose every value is a number once
    ``,`` is read as the decimal point (and not before) is read that way, and the warning names
    it. A column that mixes ``,`` and ``.`` is left as text, so that the non-numeric target
    warning names its values rather than this reader guessing.
    """
    raw = pd.read_csv(path, encoding=encoding, sep=sep)
    commas = pd.read_csv(path, encoding=encoding, sep=sep, decimal=",")
    converted = [c for c in raw.columns if c in commas.columns
                 and not pd.api.types.is_numeric_dtype(raw[c])
                 and pd.api.types.is_numeric_dtype(commas[c])]
    for c in converted:
        raw[c] = commas[c]
    message = (f"{path.name} is separated by {DELIMITERS[sep]}, not ',': it was read with "
               f"{DELIMITERS[sep]} as the delimiter")
    if converted:
        message += (f", and its column(s) {', '.join(map(repr, map(str, converted)))} with ',' as "
                    "the decimal point (-1,25 read as -1.25)")
    warnings.warn(message + ". Check the values read; to avoid the guess, export the table as "
                  "comma-separated with '.' as the decimal point.", UserWarning, stacklevel=4)
    return raw


def _read_raw(path: Path, encoding: str) -> pd.DataFrame:
    if _is_parquet(path):
        return read_local_parquet(path)
    if path.suffix.lower() not in (".csv", ".txt", ".gz"):
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    try:
        sep = _delimiter(path, encoding)
        return pd.read_csv(path, encoding=encoding) if sep == "," else _read_delimited(path, encoding, sep)
    except UnicodeDecodeError as err:
        raise _decode_error(path, encoding, err) from err
    except LookupError as err:
        raise ValueError(
            f"unknown encoding {encoding!r} for {path.name}: use a Python codec name such as "
            "'utf-8', 'latin-1' or 'cp1252'"
        ) from err
    except pd.errors.EmptyDataError as err:
        raise ValueError(
            f"{path.name} is empty (no header, no rows): export the table again with a header row "
            "naming the formula and target columns"
        ) from err


def _check_formulas(raw: pd.DataFrame, column: str, path: Path) -> list[str]:
    """The formulas, stripped; ``ValueError`` naming the column and the lines pymatgen cannot read
    as formulas of real elements, each with why and the formula probably meant (``line 3: 'TIO2'
    (T is tritium, an isotope of hydrogen, to pymatgen; did you mean 'TiO2'?)``)."""
    from alhelpers.data.formulas import FormulaError, integer_formula

    formulas, bad = [], []
    for i, value in enumerate(raw[column]):
        text = "" if _missing(value) else str(value).strip()
        if not text:
            bad.append(f"{_where(path, i)}: (empty)")
        else:
            try:
                integer_formula(text)
            except FormulaError as err:  # every formula pymatgen cannot read (alhelpers.data.formulas)
                bad.append(f"{_where(path, i)}: {text!r} ({err.reason})")
        formulas.append(text)
    if bad:
        raise ValueError(
            f"{path.name}: {len(bad)} value(s) of the formula column {str(column)!r} pymatgen cannot "
            f"read, e.g. {', '.join(bad[:_N_EXAMPLES])}. Fix or delete those rows, or name another "
            f"formula column ({column_hint('formula')})"
        )
    return formulas


def _formula_like(values: pd.Series) -> bool:
    """Whether the first non-empty values (up to five) all read as formulas of real elements."""
    from alhelpers.data.formulas import FormulaError, elements_of

    sample = [str(v).strip() for v in values if not _missing(v) and str(v).strip()][:5]
    try:
        return bool(sample) and all(elements_of(v) for v in sample)
    except FormulaError:  # not formulas
        return False


def _check_columns(raw: pd.DataFrame, path: Path, *, formula: str, target: str) -> None:
    """``ValueError`` when the formula or target column is missing, naming the table's columns and
    every way to name the right ones (:func:`column_hint`), with a column of this table that looks
    like it (text that reads as formulas; numbers) filled in where there is one."""
    missing = [(kind, str(name)) for kind, name in (("formula", formula), ("target", target))
               if name not in raw.columns]
    if not missing:
        return
    columns = [str(c) for c in raw.columns]
    present = {str(formula), str(target)}
    guess = {
        "formula": next((c for c in columns if c not in present and raw[c].dtype == object
                         and _formula_like(raw[c])), None),
        "target": next((c for c in columns if c not in present and c != Key.nsites
                        and pd.api.types.is_float_dtype(raw[c])), None),
    }
    said = " and ".join(f"no {kind} column {name!r}" for kind, name in missing)
    how = "; ".join(f"name the {kind} column ({column_hint(kind, guess[kind])})" for kind, _ in missing)
    raise ValueError(f"{path.name} has {said}. Its columns are {columns}; {how}.")


def _numeric_target(raw: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """The target as floats; text that is not a number becomes NaN, with a warning naming it."""
    y = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=float)
    text = [i for i, (v, num) in enumerate(zip(raw[column], y, strict=True))
            if np.isnan(num) and not pd.isna(v)]
    if text:
        shown = ", ".join(f"{_where(path, i)}: {str(raw[column].iloc[i])!r}" for i in text[:_N_EXAMPLES])
        warnings.warn(
            f"{path.name}: {len(text)} value(s) of the target column {column!r} are not numbers, "
            f"e.g. {shown}; these rows are removed by the 'finite target' filter. Write numbers "
            f"with '.' as the decimal point, or name another target column ({column_hint('target')})",
            UserWarning,
            stacklevel=3,
        )
    return y


def _sources(raw: pd.DataFrame, default: str, path: Path) -> list[str]:
    """The ``source`` column normalised (:func:`normalize_source`), or ``default`` for every row."""
    if Key.source not in raw:
        return [default] * len(raw)
    out = [normalize_source(v, default=default) for v in raw[Key.source]]
    other = pd.Series([s for s in out if s not in ("mp", "oqmd", "file")], dtype=object)
    if len(other):
        counts = other.value_counts()
        shown = ", ".join(f"{name!r} ({n} rows)" for name, n in counts.head(_N_EXAMPLES).items())
        warnings.warn(
            f"{path.name}: {len(other)} row(s) name a source other than mp, oqmd or file: {shown}. "
            "They are kept as written, but the cross-database stage uses only rows whose source "
            "is mp (Materials Project, also 'MP', 'Materials Project') or oqmd ('OQMD').",
            UserWarning,
            stacklevel=3,
        )
    return out


def _nsites(raw: pd.DataFrame, formulas: list[str]) -> np.ndarray:
    """Atoms per cell: the table's ``nsites`` where given, else the atoms of the integer formula."""
    from alhelpers.data.formulas import atom_counts, integer_formula

    given = (pd.to_numeric(raw[Key.nsites], errors="coerce").to_numpy(dtype=float)
             if Key.nsites in raw else np.full(len(raw), np.nan))
    counted = [integer_formula(f) for f in formulas]
    return atom_counts([g if not np.isnan(g) else (c[1] if c else np.nan)
                        for g, c in zip(given, counted, strict=True)])


def read_user_table(
    path: str | Path,
    *,
    target: str = Key.target,
    formula: str = Key.formula,
    entry_id: str | None = None,
    source: str = "file",
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a user's CSV/parquet into the tidy entries table.

    ``target`` names the column with the property to learn (eV/atom for formation energy);
    ``formula`` the column with chemical formulas; ``encoding`` the text encoding of a CSV
    (``"latin-1"``/``"cp1252"`` for many Windows exports; a file that is not ``encoding`` is a
    ``ValueError`` naming the first bad byte). A ``source`` column is kept and normalised
    (``"MP"`` → ``"mp"``, ``"OQMD"`` → ``"oqmd"``, see :data:`SOURCE_ALIASES`); rows without one
    get ``source``. Known property columns (``band_gap``, ``density``, …) are kept; non-numeric
    targets become NaN (with a warning naming them) and are later dropped, and counted, by
    :func:`alhelpers.data.systems.filter_finite_target`.

    A CSV whose header has more ``;`` (or tabs) than commas is read with that delimiter, and a
    column written with decimal commas (``-1,25``) as numbers, with a ``UserWarning`` naming both.

    ``ValueError`` for a missing column (naming the table's columns and every way to name the
    right one: notebook parameter, runner flag, keyword), an empty table, or formulas pymatgen
    cannot read as written (naming the column, the lines, why, and the formula probably meant:
    ``'TIO2'``, T is tritium to pymatgen, did you mean ``'TiO2'``?).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} does not exist")
    raw = _read_raw(path, encoding)
    _check_columns(raw, path, formula=formula, target=target)
    if raw.empty:
        raise ValueError(
            f"{path.name} has no rows (columns {list(raw.columns)}): nothing to learn from; "
            "check that the file is the exported table and not just its header"
        )
    formulas = _check_formulas(raw, formula, path)
    out = pd.DataFrame(
        {
            Key.source: _sources(raw, normalize_source(source), path),
            Key.dataset: path.stem,
            Key.entry_id: (raw[entry_id].astype(str).to_numpy() if entry_id else
                           [f"{path.stem}:{i}" for i in range(len(raw))]),
            Key.formula: formulas,
            Key.nsites: _nsites(raw, formulas),
            Key.target: _numeric_target(raw, target, path),
        }
    )
    for col in PROPERTY_COLUMNS:
        if col in raw.columns and col != target:
            out[col] = raw[col].to_numpy()
        else:
            out[col] = None if col in (Key.structure, Key.is_stable) else np.nan
    return out[[*ENTRY_COLUMNS, *PROPERTY_COLUMNS]]


def read_formulas(path: str | Path, *, formula: str = Key.formula, encoding: str = "utf-8") -> list[str]:
    """The formulas of a CSV/parquet table's ``formula`` column (candidates: no target needed),
    with the checks of :func:`read_user_table` (a missing column, an empty table and formulas
    pymatgen cannot read are a ``ValueError`` naming the file, the lines and the fix)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} does not exist")
    raw = _read_raw(path, encoding)
    if formula not in raw.columns:
        raise ValueError(f"{path.name} has no formula column {str(formula)!r}; its columns are "
                         f"{[str(c) for c in raw.columns]}: name the column with the formulas")
    if raw.empty:
        raise ValueError(f"{path.name} has no rows: give at least one formula")
    return _check_formulas(raw, formula, path)
