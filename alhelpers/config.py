"""One config object per notebook run, built from the papermill parameters and saved with the results.

The objects validate themselves on construction, so a wrong parameter fails in the first cell
with a message that says what to change, not twenty minutes later.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from alhelpers.data.paths import cache_root

_VERSIONED = ("alhelpers", "numpy", "pandas", "scikit-learn", "torch", "pymatgen", "matminer",
              "pyarrow", "papermill")


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour the results depend on."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class _Saveable:
    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    def save(self, path: str | Path) -> Path:
        """Write the config and the package versions as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"config": self.to_dict(), "kind": type(self).__name__, "versions": package_versions()}
        path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
        return path

    @property
    def data_root(self) -> Path:
        d = getattr(self, "data_dir", "")
        return Path(d).expanduser().resolve() if d else cache_root()


@dataclass(frozen=True)
class FetchConfig(_Saveable):
    """Parameters of notebook 01 (fetch and clean one system from one source)."""

    system: str = "C"
    source: str = "snapshot"
    mp_limit: int = 500
    oqmd_limit: int = 100
    table_path: str = ""
    target_column: str = "formation_energy_per_atom"
    data_dir: str = ""  # "" → data_cache/ (or $ALHELPERS_DATA_CACHE)
    min_sites: int = 2
    max_sites: int = 50
    max_abs_target: float = 5.0
    dedup_tol: float = 1e-3
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        from alhelpers.data import SOURCES, system_elements

        if self.source not in SOURCES:
            raise ValueError(f"source={self.source!r} is not one of {SOURCES}")
        if self.source == "file" and not self.table_path:
            raise ValueError("source='file' needs table_path (a CSV or parquet file)")
        if not (self.source == "file" and self.system == "all"):
            system_elements(self.system)
        if not 1 <= self.min_sites <= self.max_sites:
            raise ValueError(f"need 1 <= min_sites <= max_sites, got {self.min_sites}, {self.max_sites}")
        if self.mp_limit < 1 or self.oqmd_limit < 1:
            raise ValueError("mp_limit and oqmd_limit must be positive")


@dataclass(frozen=True)
class FeaturizeConfig(_Saveable):
    """Parameters of notebook 02 (descriptors for one system)."""

    system: str = "C"
    source: str = "snapshot"
    descriptor: str = "magpie"
    data_dir: str = ""

    def __post_init__(self) -> None:
        from alhelpers.features import DESCRIPTORS

        if self.descriptor not in DESCRIPTORS:
            raise ValueError(f"descriptor={self.descriptor!r} is not one of {DESCRIPTORS}")
