"""Where data lives: one cache root that an environment variable can override.

``ALHELPERS_DATA_CACHE`` points at a folder with the layout of the repository's ``data_cache/``
(``MANIFEST.json`` + ``snapshot/``); by default it is the ``data_cache/`` folder next to the
installed package, i.e. the one committed in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "ALHELPERS_DATA_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """The data cache folder (``$ALHELPERS_DATA_CACHE`` or the repository's ``data_cache/``)."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "data_cache"


def snapshot_dir(root: Path | None = None) -> Path:
    """Folder with the committed offline snapshot parquet files."""
    return (root or cache_root()) / "snapshot"


def manifest_path(root: Path | None = None) -> Path:
    return (root or cache_root()) / "MANIFEST.json"


def system_table_path(source: str, system: str, root: Path | None = None) -> Path:
    """Where notebook 01 writes the entries of one system from one source."""
    return (root or cache_root()) / "systems" / source / f"{system}.parquet"


def features_path(source: str, descriptor: str, system: str, root: Path | None = None) -> Path:
    """Where notebook 02 writes the descriptor table of one system."""
    return (root or cache_root()) / "features" / source / descriptor / f"{system}.parquet"
