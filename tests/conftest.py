"""Shared fixtures: small real rows from the committed offline snapshot."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Notebook kernels and torch: one thread each so parallel test workers do not oversubscribe 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def snapshot() -> pd.DataFrame:
    from alhelpers.data import load_snapshot

    return load_snapshot()


@pytest.fixture(scope="session")
def tio2_entries() -> pd.DataFrame:
    """The cleaned Ti–O system of the snapshot (148 real entries)."""
    from alhelpers.data import fetch_system

    entries, _ = fetch_system("snapshot", "Ti-O")
    return entries
