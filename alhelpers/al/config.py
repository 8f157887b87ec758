"""One config object per notebook run, built from the papermill parameters and saved with the results.

The objects validate themselves on construction, so a wrong parameter fails in the first cell
with a message that names the notebook parameter and shows a valid value, not twenty minutes
later. Papermill's ``-r SEED 0`` passes the *string* ``"0"``; a string seed, a string where a list
of names is expected, or a zero batch are refused here rather than silently changing the results.
"""

from __future__ import annotations

import json
import math
import numbers
import platform
from dataclasses import MISSING, asdict, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

#: Every package that computes a number of the results (fits, features, statistics, figures).
_VERSIONED = ("alhelpers", "numpy", "pandas", "scipy", "statsmodels", "scikit-learn", "torch", "pymatgen",
              "matminer", "ase", "matscipy", "seaborn", "matplotlib", "pyarrow", "papermill")


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour the results depend on."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def param(default: Any = MISSING, name: str = "", *, minimum: float | None = None,
          default_factory: Any = MISSING) -> Any:
    """A config field that is a notebook parameter: ``name`` (e.g. ``"SEED"``) is used in errors,
    ``minimum`` is the smallest valid value."""
    meta = {"param": name, "minimum": minimum}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def _example(name: str, value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    shown = json.dumps(value) if isinstance(value, (list, str)) else repr(value)
    return f"{name} = {shown}"


def _type_error(annotation: str, value: Any) -> str | None:
    """Why ``value`` does not fit the field's ``annotation`` (a string, as stored); None if it does."""
    options = [a.strip() for a in annotation.split("|")]
    if "None" in options:
        if value is None:
            return None
        options.remove("None")
    kind = options[0] if len(options) == 1 else ""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "int" and not is_int:
        return "must be a whole number"
    if kind == "float" and not (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return "must be a number"
    if kind == "float" and not math.isfinite(float(value)):
        return "must be a finite number"
    if kind == "str" and not isinstance(value, str):
        return "must be a string"
    if kind == "bool" and type(value).__name__ not in ("bool", "bool_"):
        return "must be True or False"
    if kind.startswith("tuple["):
        item = kind[len("tuple["):].split(",")[0].strip()
        if isinstance(value, str):
            return "must be a list, not a single string"
        if not isinstance(value, (list, tuple)):
            return "must be a list"
        for v in value:
            if _type_error(item, v):
                return f"must be a list of {'names' if item == 'str' else item + ' values'}"
    return None


def check_fields(obj: Any) -> None:
    """Check every field of a config dataclass against its annotation and ``minimum``.

    Raises ``ValueError`` naming the notebook parameter (or the field) with an example of a valid
    value, e.g. ``SEED must be a whole number, e.g. SEED = 0; got '0' (str)``.
    """
    for f in fields(obj):
        value = getattr(obj, f.name)
        name = f.metadata.get("param") or f.name
        default = f.default if f.default is not MISSING else None
        why = _type_error(str(f.type), value)
        minimum = f.metadata.get("minimum")
        if why is None and minimum is not None and value is not None and value < minimum:
            why = f"must be >= {minimum:g}"
        if why:
            example = _example(name, default) if default is not None else ""
            raise ValueError(f"{name} {why}{', e.g. ' + example if example else ''}; "
                             f"got {value!r} ({type(value).__name__})")


class Saveable:
    """Base of the run configs: type-checked on construction, saved as JSON next to the results."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if str(f.type).startswith("tuple[") and isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> Path:
        """Write the config and the package versions as JSON (atomically)."""
        from alhelpers.files import write_json

        payload = {"config": self.to_dict(), "kind": type(self).__name__, "versions": package_versions()}
        return write_json(path, payload, indent=2)
