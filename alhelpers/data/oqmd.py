"""OQMD, live, through its public REST API over HTTP (STUDY §1).

:func:`fetch_oqmd` pages through ``https://oqmd.org/oqmdapi/formationenergy`` with
``limit``/``offset``, asking for ``fields=name,entry_id,delta_e,band_gap,stability,volume,natoms``
and ``filter=element_set=(Ti,O)`` (``,`` is AND in OQMD's ``element_set``: every listed element
must be present, others are allowed). A page of the API looks like::

    {"links": {"next": "<url of the next page>" | null, "previous": ..., "base_url": {...}},
     "resource": {},
     "data": [{"name": "TiO2", "entry_id": 4061, "delta_e": -3.3, "band_gap": 1.8,
               "stability": 0.0, "volume": 62.4, "natoms": 6}, ...],
     "meta": {"data_returned": 50, "data_available": 812, "more_data_available": true, ...},
     "response_message": "OK"}

(``meta.more_data_available`` is true on *every* page of a multi-page result, the last one
included, so unsorted paging stops on ``links.next`` being null, an empty page,
``data_available`` or the requested ``limit``.)

Stable pages. Without an ORDER BY the server's row order is not guaranteed between requests, so
an offset can shift between two pages. By default the query asks for ``sort_by=delta_e`` and
``noduplicate=True`` (one entry per duplicate group). OQMD sorts only by ``delta_e`` or
``stability`` -- qmpy's ``FormationEnergyList`` silently ignores any other ``sort_by``, so there is
no ordering by ``entry_id`` -- and pages a sorted query with ``sort_offset``: the sorted list is
cut to ``[sort_offset : sort_offset + limit]`` before the usual ``offset`` pagination runs inside
that slice. A sorted page is therefore asked for with ``sort_offset=<position>&offset=0``; its
``links.next`` is always null and its ``data_available`` is the slice size, so sorted paging
stops on a short or empty page instead. Whatever the order, an ``entry_id`` that comes back a
second time (ties in ``delta_e``, data changing between requests) is dropped and counted in
``df.attrs["dropped_duplicates"]``, so a result never holds a row twice.

Stability. OQMD's ``stability`` is the distance to the convex hull *of the other phases*: negative
for a phase below it (stable), positive above it. It is kept as given in the ``oqmd_stability``
column. ``e_above_hull`` keeps the Materials Project meaning (energy above the hull that includes
the phase itself, >= 0), which is ``max(stability, 0)``: a phase below the hull of the others
*is* the hull there, so its energy above the hull is 0. (qmpy's REST serializer already clips to
0 since 2019, so both columns usually agree; the clip here keeps ``e_above_hull`` >= 0 whatever
the server sends.) ``is_stable`` is ``stability <= 0``.

Transient failures (time-outs, connection errors, HTTP 5xx and 429, unreadable JSON) are retried
with exponential back-off; the ``sleep`` function and the ``requests.Session`` are injectable so
that tests never sleep nor touch the network.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import requests

from alhelpers.data._rows import column_dtypes, finite_float, optional_int, records_frame, validate_elements
from alhelpers.keys import ENTRY_COLUMNS, Key

__all__ = [
    "OQMD_FIELDS",
    "OQMD_URL",
    "OQMDError",
    "OQMDUnavailableError",
    "OQMD_SORT_KEYS",
    "OQMD_STABILITY",
    "build_params",
    "element_set_filter",
    "fetch_oqmd",
    "records_to_frame",
]

OQMD_URL = "https://oqmd.org/oqmdapi/formationenergy"

#: Fields requested from the formationenergy endpoint.
OQMD_FIELDS: tuple[str, ...] = (
    "name",
    "entry_id",
    "delta_e",
    "band_gap",
    "stability",
    "volume",
    "natoms",
)

#: The only ``sort_by`` values OQMD's REST API acts on (any other value is silently ignored).
OQMD_SORT_KEYS: tuple[str, ...] = ("delta_e", "stability")

#: Column holding OQMD's own ``stability`` (hull distance, negative below the hull).
OQMD_STABILITY = "oqmd_stability"

#: Longest wait honoured from a ``Retry-After`` header (seconds).
_MAX_RETRY_AFTER = 60.0

_COLUMNS: tuple[str, ...] = (
    *ENTRY_COLUMNS,
    Key.band_gap,
    Key.volume,
    Key.e_above_hull,
    OQMD_STABILITY,
    Key.is_stable,
)

_DTYPES: dict[str, str] = column_dtypes(_COLUMNS, {OQMD_STABILITY: "float64"})


class OQMDError(RuntimeError):
    """An OQMD request failed, or OQMD answered with something this client cannot use."""


class OQMDUnavailableError(OQMDError):
    """OQMD could not be reached or kept failing (time-outs, 5xx, 429) after all retries."""


# --------------------------------------------------------------------------------------------
# Request building
# --------------------------------------------------------------------------------------------



def element_set_filter(elements: Sequence[str]) -> str:
    """OQMD filter for "contains all of ``elements``": ``element_set=(Ti,O)``."""
    return f"element_set=({','.join(elements)})"


def build_params(
    elements: Sequence[str], *, limit: int, offset: int, sort_by: str | None = "delta_e"
) -> dict[str, str | int]:
    """Query parameters of the page of ``limit`` entries starting at position ``offset``.

    Sorted (``sort_by`` one of :data:`OQMD_SORT_KEYS`), the position goes in ``sort_offset`` and
    ``offset`` is 0 (qmpy paginates inside the sorted slice); unsorted, it goes in ``offset``.
    ``noduplicate=True`` is always asked for.
    """
    params: dict[str, str | int] = {
        "fields": ",".join(OQMD_FIELDS),
        "filter": element_set_filter(elements),
        "limit": limit,
        "format": "json",
        "noduplicate": "True",
    }
    if sort_by is None:
        params["offset"] = offset
    else:
        params.update({"sort_by": sort_by, "sort_offset": offset, "offset": 0})
    return params


# --------------------------------------------------------------------------------------------
# One page, with retries
# --------------------------------------------------------------------------------------------


def _backoff_delay(attempt: int, backoff: float) -> float:
    """Delay before retry number ``attempt`` (0-based): ``backoff * 2**attempt``."""
    return backoff * (2.0**attempt)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds asked for by a numeric ``Retry-After`` header (capped), else None."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _MAX_RETRY_AFTER)


def _describe(response: requests.Response) -> str:
    reason = f" {response.reason}" if response.reason else ""
    return f"HTTP {response.status_code}{reason}"


def _is_transient_status(status: int) -> bool:
    return status == 429 or 500 <= status < 600


def _read_page(response: requests.Response) -> dict[str, Any]:
    """The JSON page of a 200 response; ValueError if it is not an OQMD page."""
    payload = response.json()  # raises a ValueError subclass on non-JSON bodies
    if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), list):
        raise ValueError("response is JSON but has no 'data' list (not an OQMD page)")
    return dict(payload)


def _get_page(
    session: requests.Session,
    params: Mapping[str, Any],
    *,
    timeout: float,
    max_retries: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """GET one page, retrying transient failures ``max_retries`` times with back-off.

    Raises OQMDError at once for HTTP 4xx other than 429, and OQMDUnavailableError when the
    transient failures outlast the retries.
    """
    last_error = "no attempt made"
    for attempt in range(max_retries + 1):
        wait = _backoff_delay(attempt, backoff)
        try:
            response = session.get(OQMD_URL, params=dict(params), timeout=timeout)
        except requests.Timeout as exc:
            last_error = f"timed out after {timeout:g} s ({type(exc).__name__})"
        except requests.ConnectionError as exc:
            last_error = f"connection error ({type(exc).__name__}: {exc})"
        else:
            status = response.status_code
            if 400 <= status < 500 and status != 429:
                raise OQMDError(
                    f"OQMD rejected the request with {_describe(response)} "
                    f"(params {dict(params)}). This is not a transient error and was not "
                    f"retried; check the element symbols and the API address {OQMD_URL}, or use "
                    "the offline snapshot (source=\"snapshot\"), which works without network."
                )
            if _is_transient_status(status):
                last_error = _describe(response)
                wait = max(wait, _retry_after(response) or 0.0)
            elif status >= 300:
                raise OQMDError(f"OQMD answered with unexpected {_describe(response)}.")
            else:
                try:
                    return _read_page(response)
                except ValueError as exc:
                    last_error = f"unreadable response ({exc})"
        if attempt < max_retries:
            sleep(wait)
    raise OQMDUnavailableError(
        f"{last_error}; gave up after {max_retries + 1} attempt(s)"
    )


# --------------------------------------------------------------------------------------------
# Records -> tidy rows
# --------------------------------------------------------------------------------------------




def _malformed_reason(record: Any) -> str | None:
    """Why ``record`` cannot become a row (None when it can)."""
    if not isinstance(record, Mapping):
        return "not a JSON object"
    if record.get("entry_id") is None or not str(record["entry_id"]).strip():
        return "missing entry_id"
    if not isinstance(record.get("name"), str) or not record["name"].strip():
        return "missing name"
    if record.get("delta_e") is None:
        return "missing delta_e"
    if finite_float(record["delta_e"]) is None:
        return "non-numeric or non-finite delta_e"
    return None


def _record_to_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One tidy row from one well-formed OQMD record (see the module docstring on stability)."""
    stability = finite_float(record.get("stability"))
    band_gap = finite_float(record.get("band_gap"))
    volume = finite_float(record.get("volume"))
    return {
        Key.source: "oqmd",
        Key.dataset: "oqmd_api",
        Key.entry_id: str(record["entry_id"]).strip(),
        Key.formula: record["name"].strip(),
        Key.nsites: optional_int(record.get("natoms")),
        Key.target: finite_float(record["delta_e"]),
        Key.band_gap: math.nan if band_gap is None else band_gap,
        Key.volume: math.nan if volume is None else volume,
        Key.e_above_hull: math.nan if stability is None else max(stability, 0.0),
        OQMD_STABILITY: math.nan if stability is None else stability,
        Key.is_stable: None if stability is None else stability <= 0.0,
    }



def records_to_frame(records: Sequence[Any]) -> pd.DataFrame:
    """Tidy entries table from OQMD ``data`` records, sorted by ``entry_id``.

    Malformed records (no ``entry_id``, no ``name``, missing or non-numeric ``delta_e``) are
    dropped; their number is in ``df.attrs["dropped_malformed"]`` and the reasons in
    ``df.attrs["dropped_reasons"]``. ``volume`` is per cell, as OQMD gives it;
    ``oqmd_stability`` is OQMD's ``stability`` as given, ``e_above_hull`` is
    ``max(stability, 0)`` and ``is_stable`` is ``stability <= 0`` (all NA where OQMD has no
    stability).
    """
    return records_frame(records, malformed_reason=_malformed_reason, to_row=_record_to_row,
                         columns=_COLUMNS, dtypes=_DTYPES, id_column=Key.entry_id, limit=None)


# --------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fetched:
    """Raw records of all pages fetched (each ``entry_id`` once), why paging ended early (None if
    it did not), and how many repeated entries were dropped."""

    records: list[Any]
    failure: str | None
    pages: int
    duplicates: int = 0


def _is_last_page(
    page: Mapping[str, Any], *, received: int, requested: int, fetched: int, sorted_paging: bool
) -> bool:
    """True when ``page`` (``received`` of ``requested`` records) is the last one to ask for.

    A sorted page's links and counts describe only its own slice (see the module docstring), so
    only a short page ends sorted paging.
    """
    if received == 0:
        return True
    if sorted_paging:
        return received < requested
    links = page.get("links")
    if isinstance(links, Mapping) and "next" in links and not links["next"]:
        return True
    meta = page.get("meta")
    if isinstance(meta, Mapping):
        available = meta.get("data_available")
        if isinstance(available, int) and not isinstance(available, bool) and fetched >= available:
            return True
        if meta.get("more_data_available") is False:
            return True
    return False


def _record_key(record: Any) -> str | None:
    """The ``entry_id`` of a record as text, or None when it has none (malformed: kept for
    :func:`records_to_frame` to count)."""
    if not isinstance(record, Mapping) or record.get("entry_id") is None:
        return None
    return str(record["entry_id"]).strip() or None


def _take_new(data: Sequence[Any], seen: set[str], room: int) -> tuple[list[Any], int]:
    """Up to ``room`` records of ``data`` whose ``entry_id`` is not in ``seen`` (which is
    updated), and how many repeated ones were skipped on the way."""
    fresh: list[Any] = []
    repeated = 0
    for record in data:
        if len(fresh) >= room:
            break
        key = _record_key(record)
        if key is not None and key in seen:
            repeated += 1
            continue
        if key is not None:
            seen.add(key)
        fresh.append(record)
    return fresh, repeated


def _fetch_pages(
    symbols: Sequence[str],
    *,
    limit: int,
    page_size: int,
    sort_by: str | None,
    get_page: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> _Fetched:
    """Page through the endpoint until ``limit`` distinct records or the end of the data.

    Records whose ``entry_id`` was already received are dropped and counted (they do not count
    towards ``limit``). A failure on the first page propagates; a failure on a later page ends
    paging and is reported in ``failure`` (the records already fetched are kept).
    """
    records: list[Any] = []
    seen: set[str] = set()
    duplicates = 0
    position = 0
    pages = 0
    while len(records) < limit:
        requested = min(page_size, limit - len(records))
        params = build_params(symbols, limit=requested, offset=position, sort_by=sort_by)
        try:
            page = get_page(params)
        except OQMDUnavailableError as exc:
            if pages == 0:
                raise
            failure = f"page {pages + 1} (position {position}): {exc}"
            return _Fetched(records, failure, pages, duplicates)
        pages += 1
        data = page["data"]
        fresh, repeated = _take_new(data, seen, limit - len(records))
        records.extend(fresh)
        duplicates += repeated
        position += len(data)
        if _is_last_page(page, received=len(data), requested=requested, fetched=position,
                         sorted_paging=sort_by is not None):
            break
    return _Fetched(records, None, pages, duplicates)


def _check_options(
    limit: int, page_size: int, timeout: float, max_retries: int, backoff: float,
    sort_by: str | None,
) -> None:
    if sort_by is not None and sort_by not in OQMD_SORT_KEYS:
        raise ValueError(
            f"sort_by={sort_by!r} is not a sort key of OQMD's REST API: it sorts only by "
            f"{' or '.join(OQMD_SORT_KEYS)} and would silently ignore anything else (leaving the "
            "pages unordered). Use sort_by='delta_e' (default), 'stability', or None."
        )
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    if backoff < 0:
        raise ValueError(f"backoff must be >= 0 seconds, got {backoff}")


def fetch_oqmd(
    elements: Sequence[str],
    *,
    limit: int = 100,
    page_size: int = 50,
    timeout: float = 30.0,
    max_retries: int = 3,
    backoff: float = 1.0,
    sort_by: str | None = "delta_e",
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """OQMD entries whose composition contains all of ``elements`` (e.g. ``["Ti", "O"]``).

    Parameters
    ----------
    elements:
        Element symbols every entry must contain (others allowed).
    limit:
        At most this many distinct entries are requested (malformed ones are then dropped).
    page_size:
        Entries per request.
    timeout:
        Seconds per HTTP request.
    max_retries, backoff:
        Transient failures (time-outs, connection errors, HTTP 5xx/429, unreadable JSON) are
        retried up to ``max_retries`` times, waiting ``backoff * 2**k`` seconds before retry
        ``k`` (or the server's ``Retry-After``, if longer). HTTP 4xx other than 429 is not
        retried.
    sort_by:
        Server-side order of the pages: ``"delta_e"`` (default), ``"stability"`` (the only keys
        OQMD sorts by), or None for the server's unspecified order (offset paging, which may
        shift between pages). Note: when ``limit`` is smaller than the number of matching
        entries, a sorted query returns the ``limit`` entries with the *lowest* ``delta_e``
        (or stability), not an arbitrary sample.
    session:
        A ``requests.Session`` (or anything with its ``get``); a new one is made (and closed)
        when None.
    sleep:
        Called with each back-off delay; tests pass a recorder instead of ``time.sleep``.

    Returns
    -------
    The tidy entries table: ``source="oqmd"``, ``dataset="oqmd_api"``, ``entry_id``,
    ``formula`` (OQMD ``name``), ``nsites`` (``natoms``), ``formation_energy_per_atom``
    (``delta_e``), ``band_gap``, ``volume`` (per cell), ``e_above_hull``
    (``max(stability, 0)``, the Materials Project meaning), ``oqmd_stability`` (``stability`` as
    OQMD gives it, negative below the hull), ``is_stable`` (``stability <= 0``); rows in
    ``entry_id`` order. ``df.attrs["partial"]`` is True when a later page failed after all
    retries (the rows already fetched are kept and a warning says so);
    ``df.attrs["dropped_malformed"]`` counts dropped malformed records and
    ``df.attrs["dropped_duplicates"]`` entries that came back a second time (each with a
    warning); ``df.attrs["sort_by"]`` is the order the pages were asked in.

    Raises
    ------
    OQMDError: the first page failed (or any page got HTTP 4xx other than 429).
    ValueError: bad ``elements`` or options.
    """
    symbols = validate_elements(elements)
    _check_options(limit, page_size, timeout, max_retries, backoff, sort_by)
    own_session = session is None
    http = requests.Session() if session is None else session

    def get_page(params: Mapping[str, Any]) -> dict[str, Any]:
        return _get_page(
            http, params, timeout=timeout, max_retries=max_retries, backoff=backoff, sleep=sleep
        )

    try:
        fetched = _fetch_pages(symbols, limit=limit, page_size=page_size, sort_by=sort_by,
                               get_page=get_page)
    except OQMDUnavailableError as exc:
        raise OQMDUnavailableError(
            f"OQMD request for elements {symbols} failed on the first page: {exc}. "
            f"The server {OQMD_URL} may be down or unreachable; try again later, or use the "
            "offline snapshot (source=\"snapshot\"), which works without network."
        ) from exc
    finally:
        if own_session:
            http.close()

    frame = records_to_frame(fetched.records)
    frame.attrs["partial"] = fetched.failure is not None
    frame.attrs["pages_fetched"] = fetched.pages
    frame.attrs["sort_by"] = sort_by
    frame.attrs["dropped_duplicates"] = fetched.duplicates
    if fetched.failure is not None:
        warnings.warn(
            f"OQMD: {fetched.failure}. Keeping the {len(fetched.records)} entries fetched before "
            "the failure; the result is partial (df.attrs['partial'] is True).",
            stacklevel=2,
        )
    if fetched.duplicates:
        n = fetched.duplicates
        warnings.warn(
            f"OQMD: dropped {n} duplicate entr{'y' if n == 1 else 'ies'} (an entry_id already "
            "received came back on a later page, e.g. because the server's result shifted "
            "between requests); each entry is kept once, see df.attrs['dropped_duplicates'].",
            stacklevel=2,
        )
    dropped = frame.attrs["dropped_malformed"]
    if dropped:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(frame.attrs["dropped_reasons"].items()))
        warnings.warn(
            f"OQMD: dropped {dropped} malformed entr{'y' if dropped == 1 else 'ies'} of "
            f"{len(fetched.records)} returned ({detail}); see df.attrs['dropped_malformed'].",
            stacklevel=2,
        )
    return frame
