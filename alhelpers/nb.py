"""Small notebook helpers: record values that tests and the runner read back from executed notebooks.

A notebook calls ``record(n_rows=..., mae=...)`` in its last cell; the values are shown as text and
stored in the cell output under a JSON mime type, so that ``read_records(executed.ipynb)`` returns
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


def record(**values: Any) -> dict[str, Any]:
    """Display ``values`` in the notebook and store them for :func:`read_records`."""
    from IPython.display import display

    data = _jsonable(values)
    text = "\n".join(f"{k} = {v}" for k, v in data.items())
    display({MIME: data, "text/plain": text}, raw=True)
    return data


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
