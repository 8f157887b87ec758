"""Shared by the live clients: element validation, value coercion, the column dtypes and records → tidy frame."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from alhelpers.keys import Key

#: pandas dtype of every column an entries table may have (the one schema both live clients fill).
ENTRY_DTYPES: dict[str, str] = {
    Key.source: "object",
    Key.dataset: "object",
    Key.entry_id: "object",
    Key.formula: "object",
    Key.nsites: "Int64",
    Key.target: "float64",
    Key.energy_per_atom: "float64",
    Key.band_gap: "float64",
    Key.density: "float64",
    Key.volume: "float64",
    Key.e_above_hull: "float64",
    Key.is_stable: "boolean",
    Key.structure: "object",
}


def column_dtypes(columns: Sequence[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The dtype of each of ``columns``, in order: from :data:`ENTRY_DTYPES`, or ``extra`` for a source's own columns."""
    known = {**ENTRY_DTYPES, **(extra or {})}
    return {c: known[c] for c in columns}


def validate_elements(elements: Sequence[str]) -> list[str]:
    """Element symbols as a list; ValueError naming the bad ones."""
    from pymatgen.core import Element

    if isinstance(elements, str):
        raise ValueError(f"elements must be a list of symbols such as ['Ti', 'O'], not {elements!r}")
    symbols = [str(e).strip() for e in elements]
    if not symbols:
        raise ValueError("elements is empty; give at least one element symbol, e.g. ['Ti', 'O']")
    bad = [s for s in symbols if not Element.is_valid_symbol(s)]
    if bad:
        raise ValueError(f"not element symbols: {bad}; use symbols such as 'Ti', 'O', 'Fe'")
    return list(dict.fromkeys(symbols))


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None when missing, non-numeric or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def optional_int(value: Any) -> int | None:
    number = finite_float(value)
    return int(number) if number is not None and number == int(number) else None


#: A numbered id: optional prefix, then digits (``mp-149``, OQMD's ``4061``).
_NUMBERED_ID = re.compile(r"(.*?)(\d+)")

#: A letter-style Materials Project id (emmet-core ``AlphaID``): a prefix with its separator,
#: then lowercase letters only (``mp-hilze``, ``mp-aahilze``).
_LETTER_ID = re.compile(r"([A-Za-z]+[-:_])([a-z]+)")


def letter_id_value(letters: str) -> int:
    """The integer a letter-style id body stands for: base 26 written with ``a``-``z``.

    ``a`` is the digit 0, so leading ``a``'s are padding: ``hilze``, ``aahilze`` -> 3347530
    (the first id the Materials Project minted after the numbered ``mp-3347529``); ``lxf`` ->
    8039 (the letter form of ``mp-8039``). Same rule as emmet-core's ``AlphaID``.
    """
    value = 0
    for char in letters:
        value = value * 26 + (ord(char) - ord("a"))
    return value


def id_sort_key(entry_id: str) -> tuple[str, int, str]:
    """Natural order of ids: by prefix, then by the number the id stands for, then by text.

    Numbered ids compare by their integer (``mp-2 < mp-10 < mp-149``; OQMD ``9 < 10``).
    Letter-style Materials Project ids compare by their value (:func:`letter_id_value`), not
    by their text, so ``mp-zz`` (675) < ``mp-baa`` (676), padded and unpadded forms of one id
    sit together, and new ids follow the numbered ones they were minted after
    (``mp-3347529 < mp-hilze``). Ids of neither form sort by text.
    """
    numbered = _NUMBERED_ID.fullmatch(entry_id)
    if numbered:
        return (numbered.group(1), int(numbered.group(2)), entry_id)
    lettered = _LETTER_ID.fullmatch(entry_id)
    if lettered:
        return (lettered.group(1), letter_id_value(lettered.group(2)), entry_id)
    return (entry_id, -1, entry_id)


def records_frame(
    records: Iterable[Any],
    *,
    malformed_reason: Callable[[Any], str | None],
    to_row: Callable[[Any], dict[str, Any]],
    columns: Sequence[str],
    dtypes: Mapping[str, str],
    id_column: str,
    limit: int | None = None,
) -> pd.DataFrame:
    """Rows of the well-formed records, sorted by id (:func:`id_sort_key`), truncated to ``limit``.

    Malformed records are dropped and counted: ``df.attrs["dropped_malformed"]`` and the reasons
    in ``df.attrs["dropped_reasons"]``.
    """
    reasons: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    for record in records:
        reason = malformed_reason(record)
        if reason is None:
            rows.append(to_row(record))
        else:
            reasons[reason] += 1
    rows.sort(key=lambda r: id_sort_key(r[id_column]))
    if limit is not None:
        rows = rows[:limit]
    frame = pd.DataFrame(rows, columns=list(columns)).astype(dict(dtypes))
    frame.attrs["dropped_malformed"] = int(sum(reasons.values()))
    frame.attrs["dropped_reasons"] = dict(reasons)
    return frame
