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
included, so paging stops on ``links.next`` being null, an empty page, ``data_available`` or the
requested ``limit``.)

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

from alhelpers.data._rows import finite_float, optional_int, records_frame, validate_elements
from alhelpers.keys import ENTRY_COLUMNS, Key

__all__ = [
    "OQMD_FIELDS",
    "OQMD_URL",
    "OQMDError",
    "OQMDUnavailableError",
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

#: Longest wait honoured from a ``Retry-After`` header (seconds).
_MAX_RETRY_AFTER = 60.0

_COLUMNS: tuple[str, ...] = (
    *ENTRY_COLUMNS,
    Key.band_gap,
    Key.volume,
    Key.e_above_hull,
    Key.is_stable,
)

_DTYPES: dict[str, str] = {
    Key.source: "object",
    Key.dataset: "object",
    Key.entry_id: "object",
    Key.formula: "object",
    Key.nsites: "Int64",
    Key.target: "float64",
    Key.band_gap: "float64",
    Key.volume: "float64",
    Key.e_above_hull: "float64",
    Key.is_stable: "boolean",
}


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


def build_params(elements: Sequence[str], *, limit: int, offset: int) -> dict[str, str | int]:
    """Query parameters of one page."""
    return {
        "fields": ",".join(OQMD_FIELDS),
        "filter": element_set_filter(elements),
        "limit": limit,
        "offset": offset,
        "format": "json",
    }


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
    """One tidy row from one well-formed OQMD record."""
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
        Key.e_above_hull: math.nan if stability is None else stability,
        Key.is_stable: None if stability is None else stability <= 0.0,
    }



def records_to_frame(records: Sequence[Any]) -> pd.DataFrame:
    """Tidy entries table from OQMD ``data`` records, sorted by ``entry_id``.

    Malformed records (no ``entry_id``, no ``name``, missing or non-numeric ``delta_e``) are
    dropped; their number is in ``df.attrs["dropped_malformed"]`` and the reasons in
    ``df.attrs["dropped_reasons"]``. ``volume`` is per cell, as OQMD gives it;
    ``is_stable`` is ``stability <= 0`` (NA where OQMD has no stability).
    """
    return records_frame(records, malformed_reason=_malformed_reason, to_row=_record_to_row,
                         columns=_COLUMNS, dtypes=_DTYPES, id_column=Key.entry_id, limit=None)


# --------------------------------------------------------------------------------------------
# Paging
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fetched:
    """Raw records of all pages fetched, and why paging ended early (None if it did not)."""

    records: list[Any]
    failure: str | None
    pages: int


def _is_last_page(page: Mapping[str, Any], *, received: int, fetched: int) -> bool:
    """True when ``page`` (with ``received`` records) is the last one to ask for."""
    if received == 0:
        return True
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


def _fetch_pages(
    symbols: Sequence[str],
    *,
    limit: int,
    page_size: int,
    get_page: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> _Fetched:
    """Page through the endpoint until ``limit`` records or the end of the data.

    A failure on the first page propagates; a failure on a later page ends paging and is
    reported in ``failure`` (the records already fetched are kept).
    """
    records: list[Any] = []
    offset = 0
    pages = 0
    while len(records) < limit:
        params = build_params(symbols, limit=min(page_size, limit - len(records)), offset=offset)
        try:
            page = get_page(params)
        except OQMDUnavailableError as exc:
            if pages == 0:
                raise
            return _Fetched(records, f"page {pages + 1} (offset {offset}): {exc}", pages)
        pages += 1
        data = page["data"]
        records.extend(data[: limit - len(records)])
        offset += len(data)
        if _is_last_page(page, received=len(data), fetched=offset):
            break
    return _Fetched(records, None, pages)


def _check_options(limit: int, page_size: int, timeout: float, max_retries: int, backoff: float) -> None:
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
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """OQMD entries whose composition contains all of ``elements`` (e.g. ``["Ti", "O"]``).

    Parameters
    ----------
    elements:
        Element symbols every entry must contain (others allowed).
    limit:
        At most this many entries are requested (malformed ones are then dropped).
    page_size:
        Entries per request (``limit``/``offset`` pagination).
    timeout:
        Seconds per HTTP request.
    max_retries, backoff:
        Transient failures (time-outs, connection errors, HTTP 5xx/429, unreadable JSON) are
        retried up to ``max_retries`` times, waiting ``backoff * 2**k`` seconds before retry
        ``k`` (or the server's ``Retry-After``, if longer). HTTP 4xx other than 429 is not
        retried.
    session:
        A ``requests.Session`` (or anything with its ``get``); a new one is made (and closed)
        when None.
    sleep:
        Called with each back-off delay; tests pass a recorder instead of ``time.sleep``.

    Returns
    -------
    The tidy entries table: ``source="oqmd"``, ``dataset="oqmd_api"``, ``entry_id``,
    ``formula`` (OQMD ``name``), ``nsites`` (``natoms``), ``formation_energy_per_atom``
    (``delta_e``), ``band_gap``, ``volume`` (per cell), ``e_above_hull`` (``stability``),
    ``is_stable`` (``stability <= 0``). ``df.attrs["partial"]`` is True when a later page failed
    after all retries (the rows already fetched are kept and a warning says so);
    ``df.attrs["dropped_malformed"]`` counts dropped malformed records (with a warning).

    Raises
    ------
    OQMDError: the first page failed (or any page got HTTP 4xx other than 429).
    ValueError: bad ``elements`` or options.
    """
    symbols = validate_elements(elements)
    _check_options(limit, page_size, timeout, max_retries, backoff)
    own_session = session is None
    http = requests.Session() if session is None else session

    def get_page(params: Mapping[str, Any]) -> dict[str, Any]:
        return _get_page(
            http, params, timeout=timeout, max_retries=max_retries, backoff=backoff, sleep=sleep
        )

    try:
        fetched = _fetch_pages(symbols, limit=limit, page_size=page_size, get_page=get_page)
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
    if fetched.failure is not None:
        warnings.warn(
            f"OQMD: {fetched.failure}. Keeping the {len(fetched.records)} entries fetched before "
            "the failure; the result is partial (df.attrs['partial'] is True).",
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
