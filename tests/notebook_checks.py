"""What a reader of an executed notebook must (not) see — shared by the notebook tests.

* The recorded values (:func:`alhelpers.nb.record`) are stored once, shown as one short line, and
  never printed a second time (as the cell's ``Out[]`` or as text).
* Every figure a notebook saves (:func:`alhelpers.plots.save`: a ``.png`` among its recorded
  ``outputs``) is also displayed, as an image output tagged with the file's name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alhelpers.nb import MIME, records_of, summary_text


def _texts(output: dict) -> list[str]:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return ["".join(text) if isinstance(text, list) else text]
    data = output.get("data", {})
    out = []
    for mime in ("text/plain", "text/html", "text/markdown"):
        if mime in data:
            value = data[mime]
            out.append("".join(value) if isinstance(value, list) else value)
    return out


def _parts(line: str) -> tuple[str, set[str]]:
    head, _, values = line.rstrip(".").partition(": ")
    return head, set(values.split("; "))


def _reprs(value: Any) -> list[str]:
    """The ways a recorded value would look if printed: its ``str`` and its JSON."""
    return [str(value), json.dumps(value), json.dumps(value, ensure_ascii=False)]


def check_readable(path: str | Path) -> dict:
    """Assert the two rules above for an executed notebook; returns its records."""
    nb = json.loads(Path(path).read_text())
    records = records_of(nb)
    carriers = [o for c in nb["cells"] for o in c.get("outputs", []) if MIME in o.get("data", {})]
    assert len(carriers) == 1, f"{path}: {len(carriers)} outputs carry recorded values, expected 1"
    shown = carriers[0]["data"]["text/plain"]
    shown = "".join(shown) if isinstance(shown, list) else shown
    # the same line up to the order of the values (the stored JSON keeps its keys sorted)
    assert _parts(shown) == _parts(summary_text(records)), f"{path}: the record's text is not its one-line summary"
    long_values = [v for v in records.values() if isinstance(v, (dict, list)) and len(str(v)) > 40]
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            if output is carriers[0]:
                continue
            assert output.get("output_type") != "execute_result" or not any(
                t.strip().startswith("{") for t in _texts(output)), f"{path}: a cell's result prints a raw dict"
            for text in _texts(output):
                for value in long_values:
                    assert not any(r in text for r in _reprs(value)), \
                        f"{path}: a recorded value is printed again: {str(value)[:80]}…"
    saved = [Path(p).name for p in records.get("outputs", []) if str(p).endswith(".png")]
    displayed = [o.get("metadata", {}).get("alhelpers", {}).get("saved_as")
                 for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    missing = [name for name in saved if name not in displayed]
    assert not missing, f"{path}: saved but never displayed: {missing}"
    return records
