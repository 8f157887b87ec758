"""Small notebook helpers: record values that tests and the runner read back from executed notebooks.

A notebook calls ``record(n_rows=..., mae=...)`` in its last cell; the values are stored in the cell
output under a JSON mime type (and named in one short line of text), so that ``read_records(executed.ipynb)`` returns
them as a dict — without scraping printed text and without extra dependencies.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MIME = "application/vnd.alhelpers.record+json"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any) -> str:
    """A value as one short phrase: scalars as they are, collections by their size."""
    if isinstance(value, dict):
        return f"{len(value)} entries"
    if isinstance(value, list):
        return f"{len(value)} items" if len(value) != 1 else "1 item"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def summary_text(data: dict[str, Any]) -> str:
    """The one-line text a notebook shows for its recorded values (never the values twice)."""
    return ("Recorded for the study runner and the tests (alhelpers.nb.read_records reads them back): "
            + "; ".join(f"{k} = {_short(v)}" for k, v in data.items()) + ".")


def record(**values: Any) -> None:
    """Store ``values`` in the notebook's output for :func:`read_records`, shown as one short line.

    The full values travel under a JSON mime type that Jupyter does not render; what the reader
    sees is :func:`summary_text`. Nothing is returned, so a ``record(...)`` that ends a cell does
    not print the values a second time as the cell's result.
    """
    from IPython.display import display

    data = _jsonable(values)
    display({MIME: data, "text/plain": summary_text(data)}, raw=True)


def read_records(notebook: str | Path) -> dict[str, Any]:
    """All values recorded with :func:`record` in an executed notebook (later ones win).

    A truncated or corrupt notebook raises :class:`alhelpers.files.UnreadableFileError` naming it.
    """
    from alhelpers.files import read_json

    return records_of(read_json(notebook, todo="Run that notebook again (the study runner reruns it)."))


def records_of(nb: Any) -> dict[str, Any]:
    """The recorded values of a loaded notebook (a dict or ``nbformat`` node)."""
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if MIME in data:
                payload = data[MIME]
                out.update(json.loads(payload) if isinstance(payload, str) else payload)
    return out
