"""Where a result came from: the code version, the machine, the data files' hashes.

Small, read-only helpers for the report's configuration section (and anyone who wants the same
record): nothing here changes state, and every function answers something sensible when it cannot
know (no git, no GPU).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from alhelpers.data.paths import REPO_ROOT, manifest_path
from alhelpers.files import sha256_file

__all__ = ["by_code", "code_files", "code_id", "code_version", "data_hashes", "machine", "notebook_code_hash",
           "now_utc"]


#: The package whose source is part of every result's identity.
PACKAGE_DIR = Path(__file__).resolve().parent


@functools.cache
def code_files() -> dict[str, str]:
    """sha256 (first 16 hex digits) of every source file of the ``alhelpers`` package, by its path
    relative to the repository (``alhelpers/formation/models.py``), read once per process.

    This is the code part of a result's identity (:func:`code_id`): a task, a checkpoint or a
    table made by other code is not the same result, whatever its parameters.
    """
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" not in path.parts:
            rel = path.relative_to(PACKAGE_DIR.parent).as_posix()
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def code_id(files: dict[str, str] | None = None) -> str:
    """A short hash (12 hex digits) of the package's source (:func:`code_files`, or ``files``)."""
    payload = json.dumps(code_files() if files is None else files, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def by_code(tables: Iterable[tuple[str, Any]]) -> dict[str, list[str]]:
    """Names of tables (``(name, DataFrame)`` pairs) grouped by the code ids their ``code_id``
    column records (``"not recorded"`` for a table without one): more than one group means numbers
    of different code that must not be mixed."""
    groups: dict[str, list[str]] = {}
    for name, df in tables:
        code = ", ".join(sorted(map(str, df["code_id"].dropna().unique()))) if "code_id" in df else ""
        groups.setdefault(code or "not recorded", []).append(name)
    return groups


def listing(groups: dict[str, list[str]]) -> str:
    """``key: name, name …; key: …`` (four names shown per key), for an error message."""
    return "; ".join(f"{key}: {', '.join(names[:4])}{' …' if len(names) > 4 else ''}"
                     for key, names in groups.items())


def notebook_code_hash(path: str | os.PathLike) -> str:
    """A short hash (16 hex digits) of a notebook's code cells, in order (outputs, metadata and
    Markdown cells left out): what the notebook runs."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            h.update(("".join(src) if isinstance(src, list) else src).encode())
            h.update(b"\x00")
    return h.hexdigest()[:16]


def code_version(root: Path = REPO_ROOT) -> dict[str, str]:
    """``alhelpers``' version and, in a git checkout, the commit (``+dirty`` with uncommitted
    changes to tracked files); ``"unknown"`` where git or the checkout is missing."""
    try:
        version = metadata.version("alhelpers")
    except metadata.PackageNotFoundError:
        version = "not installed"
    commit = "unknown"
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            commit = head.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
            if dirty.returncode == 0 and dirty.stdout.strip():
                commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        pass
    return {"alhelpers": version, "commit": commit}


def _total_ram_gb() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """The operating system, CPU, cores, memory and GPU (via torch, when it sees one)."""
    ram = _total_ram_gb()
    out = {"os": f"{platform.system()} {platform.release()}", "cpu": _cpu_name(),
           "cores": str(os.cpu_count() or "unknown"), "memory": f"{ram:.1f} GB" if ram else "unknown",
           "gpu": "none"}
    try:
        import torch

        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001  (a broken CUDA set-up must not break a report)
        out["gpu"] = "unknown"
    return out


def now_utc() -> str:
    """The current date and time in UTC, to the minute (``2026-12-05 16:40 UTC``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def data_hashes(root: str | Path, *, patterns: tuple[str, ...] = ("data/systems/*/*.parquet",
                                                                   "data/features/*/*/*.parquet")) -> dict[str, str]:
    """sha256 (first 16 hex digits) of the offline snapshot's tables (from its manifest, which
    every load checks) and of the stage files under ``root`` the statistics were computed from."""
    out: dict[str, str] = {}
    if manifest_path().is_file():
        from alhelpers.data.snapshot import read_manifest  # UnreadableFileError when broken

        for name, entry in sorted(read_manifest()["outputs"].items()):
            out[f"snapshot/{name}"] = entry["sha256"][:16]
    root = Path(root)
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            out[path.relative_to(root).as_posix()] = sha256_file(path)[:16]
    return out
