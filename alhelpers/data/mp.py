"""Materials Project, live, through the official ``mp-api`` client (STUDY §1).

:func:`fetch_mp` queries ``MPRester().materials.summary.search`` for the entries whose
composition contains *all* the given elements, with an explicit ``fields=`` list, and turns the
summary documents into the project's tidy entries table (one row per material, columns named by
:class:`alhelpers.keys.Key`).

GNoMe materials are excluded unless asked for (``include_gnome=False`` is always passed
explicitly: the mp-api default is True, which mixes the GNoMe r2SCAN structures into "all
materials"); the value used is in ``df.attrs["include_gnome"]``. Material ids are kept as the
client gives them, numbered (``mp-149``) or letter-style (``mp-hilze``, emmet-core's
``AlphaID``); they are ordered by :func:`alhelpers.data._rows.id_sort_key`, never parsed as
numbers.

Needs ``mp-api >= 0.46.1``: ``include_gnome`` appeared in 0.45.0, and ``_sort_fields`` is a
declared parameter of ``summary.search`` only from 0.46.1 (0.45.8-0.46.0 reject it as an unknown
keyword, older releases raise TypeError).

The API key comes from the environment variable ``MP_API_KEY`` or, on Google Colab, from the
notebook's secrets (:func:`resolve_mp_api_key`) -- never from a notebook cell or a papermill
parameter. The key is never printed, logged or stored in the result.

The MPRester is created through an injectable ``rester_factory`` so that tests run against a fake
transport; nothing in this module touches the network at import time.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
from monty.json import MontyEncoder

from alhelpers.data._rows import column_dtypes, finite_float, optional_int, records_frame, validate_elements
from alhelpers.keys import ENTRY_COLUMNS, PROPERTY_COLUMNS, Key

__all__ = [
    "MP_API_KEY_NAME",
    "MP_SUMMARY_FIELDS",
    "MPQueryError",
    "MissingAPIKeyError",
    "build_summary_search_kwargs",
    "docs_to_frame",
    "fetch_mp",
    "resolve_mp_api_key",
]

#: Name of the environment variable and of the Colab secret that hold the key.
MP_API_KEY_NAME = "MP_API_KEY"

#: Summary-document fields requested from the API (always passed explicitly as ``fields=``).
MP_SUMMARY_FIELDS: tuple[str, ...] = (
    "material_id",
    "formula_pretty",
    "nsites",
    "formation_energy_per_atom",
    "energy_per_atom",
    "band_gap",
    "density",
    "volume",
    "energy_above_hull",
    "is_stable",
    "structure",
)

#: Largest page the MP API serves in one request.
_MAX_CHUNK_SIZE = 1000

_FLOAT_FIELDS: dict[str, str] = {
    Key.energy_per_atom: "energy_per_atom",
    Key.band_gap: "band_gap",
    Key.density: "density",
    Key.volume: "volume",
    Key.e_above_hull: "energy_above_hull",
}

_COLUMNS: tuple[str, ...] = (*ENTRY_COLUMNS, *PROPERTY_COLUMNS)

_DTYPES: dict[str, str] = column_dtypes(_COLUMNS)


class MissingAPIKeyError(RuntimeError):
    """No Materials Project API key was found (neither ``MP_API_KEY`` nor a Colab secret)."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or _missing_key_message())


class MPQueryError(RuntimeError):
    """The Materials Project query failed (network, server or key problem)."""


def _missing_key_message() -> str:
    return (
        "No Materials Project API key found. Set it in one of two ways: "
        f"(1) the environment variable {MP_API_KEY_NAME} (e.g. `export {MP_API_KEY_NAME}=...` in "
        "the shell that starts Python or Jupyter), or "
        "(2) on Google Colab, the '🔑 Secrets' panel in the left sidebar: add a secret named "
        f"{MP_API_KEY_NAME} and allow this notebook to access it. "
        "Get a key at https://next-gen.materialsproject.org/api. Never paste the key into a "
        "notebook cell. Without a key, the offline snapshot (source=\"snapshot\") is used: it "
        "needs neither network nor key."
    )


# --------------------------------------------------------------------------------------------
# API key
# --------------------------------------------------------------------------------------------


def _clean_key(value: object) -> str | None:
    """A usable key string, or None for missing/blank values."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _colab_secret(name: str) -> str | None:
    """The Colab secret ``name``, or None outside Colab or when it is missing/inaccessible."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return _clean_key(userdata.get(name))
    except Exception:  # SecretNotFoundError, NotebookAccessError, TimeoutException, ...
        return None


def resolve_mp_api_key(env: Mapping[str, str] | None = None) -> str | None:
    """The Materials Project API key, or None when none is configured.

    Looks in the environment variable ``MP_API_KEY`` (``env`` defaults to ``os.environ``) first,
    then in the Colab secrets (``google.colab.userdata.get("MP_API_KEY")``, only when
    ``google.colab`` is importable; any error there counts as "no key"). The key is never printed
    or logged.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    return _clean_key(environ.get(MP_API_KEY_NAME)) or _colab_secret(MP_API_KEY_NAME)


# --------------------------------------------------------------------------------------------
# Query
# --------------------------------------------------------------------------------------------


def _default_rester_factory(api_key: str) -> Any:
    """A real ``MPRester`` (imported lazily: importing mp_api is slow and needs no network)."""
    from mp_api.client import MPRester

    return MPRester(api_key, mute_progress_bars=True)



def build_summary_search_kwargs(
    elements: Sequence[str], *, limit: int, include_gnome: bool = False
) -> dict[str, Any]:
    """Keyword arguments for ``mpr.materials.summary.search``.

    ``elements`` means "contains all of these" (other elements allowed). The server sorts by
    ``material_id`` and only ``ceil(limit / chunk_size)`` pages are downloaded, so large systems
    (C, Fe, Si) do not pull tens of thousands of structures. Deprecated materials are excluded.
    ``include_gnome`` is always sent (mp-api turns False into the server filter
    ``batch_id_not_eq=gnome_r2scan_statics``).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    chunk_size = min(limit, _MAX_CHUNK_SIZE)
    return {
        "elements": list(elements),
        "deprecated": False,
        "include_gnome": bool(include_gnome),
        "fields": list(MP_SUMMARY_FIELDS),
        "chunk_size": chunk_size,
        "num_chunks": math.ceil(limit / chunk_size),
        "_sort_fields": "material_id",
    }


def _scrub(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` masked."""
    return text.replace(secret, "***") if secret else text


def _search_summary(
    api_key: str, search_kwargs: Mapping[str, Any], rester_factory: Callable[[str], Any]
) -> list[Any]:
    """Run the summary search; errors are re-raised as MPQueryError without the key in them."""
    try:
        with rester_factory(api_key) as mpr:
            return list(mpr.materials.summary.search(**search_kwargs))
    except Exception as exc:  # mp_api raises MPRestError, requests errors, ValueError, ...
        detail = _scrub(f"{type(exc).__name__}: {exc}", api_key)
        raise MPQueryError(
            f"Materials Project summary search for elements {search_kwargs.get('elements')} "
            f"failed ({detail}). Check that {MP_API_KEY_NAME} holds a valid key and that "
            "api.materialsproject.org is reachable, or use the offline snapshot "
            "(source=\"snapshot\")."
        ) from None


# --------------------------------------------------------------------------------------------
# Documents -> tidy rows
# --------------------------------------------------------------------------------------------


def _doc_get(doc: Any, name: str) -> Any:
    """Field ``name`` of a summary document: pydantic model (attribute) or dict (key).

    mp_api's partial documents raise AttributeError for fields that were not returned; that
    counts as missing.
    """
    if isinstance(doc, Mapping):
        return doc.get(name)
    return getattr(doc, name, None)




def _optional_bool(value: Any) -> bool | None:
    return bool(value) if isinstance(value, bool) else None


def _structure_json(value: Any) -> str | None:
    """A pymatgen Structure (or its dict) serialised as ``json.dumps(structure.as_dict())``."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        from pymatgen.core import Structure

        try:
            value = Structure.from_dict(dict(value))
        except Exception:  # malformed structure dict: keep the entry, without structure
            return None
    if not hasattr(value, "as_dict"):
        return None
    return json.dumps(value.as_dict(), cls=MontyEncoder)


def _malformed_reason(doc: Any) -> str | None:
    """Why ``doc`` cannot become a row (None when it can)."""
    if not _clean_key(str(_doc_get(doc, "material_id") or "")):
        return "missing material_id"
    if not _clean_key(_doc_get(doc, "formula_pretty")):
        return "missing formula_pretty"
    target = _doc_get(doc, "formation_energy_per_atom")
    if target is None:
        return "missing formation_energy_per_atom"
    if finite_float(target) is None:
        return "non-numeric or non-finite formation_energy_per_atom"
    return None


def _doc_to_row(doc: Any) -> dict[str, Any]:
    """One tidy row from one well-formed summary document."""
    row: dict[str, Any] = {
        Key.source: "mp",
        Key.dataset: "mp_api",
        Key.entry_id: str(_doc_get(doc, "material_id")).strip(),
        Key.formula: str(_doc_get(doc, "formula_pretty")).strip(),
        Key.nsites: optional_int(_doc_get(doc, "nsites")),
        Key.target: finite_float(_doc_get(doc, "formation_energy_per_atom")),
    }
    for column, field in _FLOAT_FIELDS.items():
        number = finite_float(_doc_get(doc, field))
        row[column] = math.nan if number is None else number
    row[Key.is_stable] = _optional_bool(_doc_get(doc, "is_stable"))
    row[Key.structure] = _structure_json(_doc_get(doc, "structure"))
    return row



def docs_to_frame(docs: Sequence[Any], *, limit: int | None = None) -> pd.DataFrame:
    """Tidy entries table from mp_api summary documents (models or dicts).

    Malformed documents (no ``material_id``, no formula, missing or non-numeric formation energy)
    are dropped; their number is in ``df.attrs["dropped_malformed"]`` and the reasons in
    ``df.attrs["dropped_reasons"]``. Rows are sorted by ``material_id`` (natural order, numbered
    and letter-style ids alike: :func:`alhelpers.data._rows.id_sort_key`) and then truncated to
    ``limit``.
    """
    return records_frame(docs, malformed_reason=_malformed_reason, to_row=_doc_to_row,
                         columns=_COLUMNS, dtypes=_DTYPES, id_column=Key.entry_id, limit=limit)


def _dropped_message(reasons: Mapping[str, int], total: int) -> str:
    n = sum(reasons.values())
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    return (
        f"Materials Project: dropped {n} malformed entr{'y' if n == 1 else 'ies'} of {total} "
        f"returned ({detail}); see df.attrs['dropped_malformed']."
    )


def fetch_mp(
    elements: Sequence[str],
    *,
    limit: int = 500,
    include_gnome: bool = False,
    api_key: str | None = None,
    rester_factory: Callable[[str], Any] | None = None,
) -> pd.DataFrame:
    """Materials Project entries whose composition contains all of ``elements``.

    Parameters
    ----------
    elements:
        Element symbols the entries must all contain, e.g. ``["Ti", "O"]`` (others allowed).
    limit:
        At most this many rows. The server is asked for the first ``limit`` materials in
        ``material_id`` order; rows are sorted by ``material_id`` before truncating, so the
        result is deterministic. Malformed entries are dropped after that, so slightly fewer
        rows may come back.
    include_gnome:
        Also return the GNoMe materials (Google DeepMind's r2SCAN structures hosted by MP).
        Default False: only the Materials Project's own computed materials, whose energies come
        from MP's usual GGA/GGA+U(+r2SCAN) mixing scheme.
    api_key:
        The key; by default :func:`resolve_mp_api_key` (``MP_API_KEY`` or Colab secrets).
    rester_factory:
        ``key -> context manager with .materials.summary.search(**kwargs)``; defaults to
        ``MPRester(key, mute_progress_bars=True)``. Tests inject a fake here.

    Returns
    -------
    The tidy entries table: ``source="mp"``, ``dataset="mp_api"``, ``entry_id`` (material_id),
    ``formula``, ``nsites``, ``formation_energy_per_atom`` and the property columns;
    ``structure`` is ``json.dumps(Structure.as_dict())`` or None. ``df.attrs["dropped_malformed"]``
    counts the dropped malformed entries (a warning says how many and why);
    ``df.attrs["include_gnome"]`` is the ``include_gnome`` value the query used.

    Raises
    ------
    MissingAPIKeyError: no key configured (the message says how to set one).
    MPQueryError: the query itself failed (the key is masked in the message).
    ValueError: bad ``elements`` or ``limit``.
    """
    symbols = validate_elements(elements)
    search_kwargs = build_summary_search_kwargs(symbols, limit=limit, include_gnome=include_gnome)
    key = _clean_key(api_key) or resolve_mp_api_key()
    if key is None:
        raise MissingAPIKeyError()
    factory = rester_factory or _default_rester_factory
    docs = _search_summary(key, search_kwargs, factory)
    frame = docs_to_frame(docs, limit=limit)
    frame.attrs["include_gnome"] = search_kwargs["include_gnome"]
    if frame.attrs["dropped_malformed"]:
        warnings.warn(_dropped_message(frame.attrs["dropped_reasons"], len(docs)), stacklevel=2)
    return frame
