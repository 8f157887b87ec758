"""Shared by the live clients: element validation, value coercion and records → tidy frame."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd


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


def id_sort_key(entry_id: str) -> tuple[str, int, str]:
    """Natural order of ids: ``mp-2 < mp-10 < mp-149``; ids without a trailing number sort by text."""
    match = re.fullmatch(r"(.*?)(\d+)", entry_id)
    if match:
        return (match.group(1), int(match.group(2)), "")
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
    """Rows of the well-formed records, sorted by id (natural order), truncated to ``limit``.

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
