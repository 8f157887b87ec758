"""Pinned public data files: where they come from, where a copy is looked for, how it is checked.

A :class:`RemoteDataset` names one file of a GitHub repository at a fixed commit with the sha256
of PROVENANCE. :func:`find_dataset_file` looks for it (the ``path`` you pass,
``<cache>/potentials/`` — ``$ALHELPERS_DATA_CACHE`` or the repository's ``data_cache/`` — then
``../shared/data/<dir>/`` next to the repository), :func:`verify_file` checks it against the pinned
sha256 or the record its download left beside it, and :func:`load_pinned_xsf` does both and reads
an XSF tarball. The download helpers (:func:`http_get_to`, :func:`download_target`,
:func:`write_download_record`) serve the ``download_*`` functions of the data-set modules.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from alhelpers.atomistic.data.xsf import read_xsf_tarball
from alhelpers.data.paths import REPO_ROOT, cache_root
from alhelpers.files import DataIntegrityError, sha256_file
from alhelpers.structures import StructureSet

__all__ = [
    "DataIntegrityError",
    "RemoteDataset",
    "find_dataset_file",
    "verify_file",
    "load_pinned_xsf",
    "download_record_path",
    "download_target",
    "http_get_to",
    "write_download_record",
]

_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteDataset:
    """A pinned public data file: where it comes from, what it hashes to, where a copy may sit."""

    name: str
    filename: str
    shared_dir: str
    sha256: str
    n_structures: int
    repository: str
    commit: str
    source_path: str
    licence: str
    citation: str

    @property
    def url(self) -> str:
        """Where :func:`download_tio2` / :func:`download_lmnto` fetch the data from."""
        if self.source_path.endswith("/"):  # a folder: the repository zip archive at the commit
            return f"https://codeload.github.com/{self.repository}/zip/{self.commit}"
        return (
            f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.source_path}"
        )

    def candidates(self) -> list[Path]:
        """The places looked in when no explicit path is given, in order."""
        return [
            cache_root() / "potentials" / self.filename,
            REPO_ROOT.parent / "shared" / "data" / self.shared_dir / self.filename,
        ]


# --------------------------------------------------------------------------- finding, checking


def download_record_path(path: Path) -> Path:
    """The download record written next to a downloaded file: ``<file>.json``."""
    return path.with_name(path.name + ".json")


def find_dataset_file(spec: RemoteDataset, path: str | os.PathLike | None = None) -> Path:
    """Locate the data file of ``spec`` (explicit path, cache, shared folder) or say how to get it."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(
                f"{p} does not exist. Download the {spec.name} data with "
                f"`alhelpers.atomistic.data.download_{spec.name}()` or pass the path of "
                f"{spec.filename}."
            )
        return p
    looked = spec.candidates()
    for p in looked:
        if p.exists():
            return p
    where = "\n  ".join(str(p) for p in looked)
    raise FileNotFoundError(
        f"{spec.filename} ({spec.name}) not found; looked in\n  {where}\n"
        f"Download it (into the first place) with "
        f"`from alhelpers.atomistic.data import download_{spec.name}; download_{spec.name}()` "
        f"— source {spec.url} ({spec.repository} at commit {spec.commit[:12]}, {spec.licence}) — "
        "or pass path=... to a copy you have."
    )


def verify_file(spec: RemoteDataset, path: Path) -> dict[str, Any]:
    """Check ``path`` against the pinned sha256, or against the record its download left.

    Returns provenance for ``StructureSet.meta``.

    Raises:
        DataIntegrityError: Neither matches.
    """
    digest = sha256_file(path)
    if digest == spec.sha256:
        return {"sha256": digest, "sha256_pinned": True}
    side = download_record_path(path)
    if side.exists():
        record = json.loads(side.read_text())
        if record.get("sha256") == digest:
            return {"sha256": digest, "sha256_pinned": False, "download_record": record}
    raise DataIntegrityError(
        f"{path} has sha256 {digest[:16]}…, but the {spec.name} data pinned in PROVENANCE has "
        f"{spec.sha256[:16]}…{' and its download record does not match either' if side.exists() else ''}. "
        f"The file is corrupt, truncated or a different version: delete it and run "
        f"`download_{spec.name}()` again (or pass verify=False to read it anyway).",
        path,
    )


def load_pinned_xsf(
    spec: RemoteDataset,
    path: str | os.PathLike | None,
    references: Mapping[str, float] | None,
    limit: int | None,
    verify: bool,
) -> StructureSet:
    """Find, check (if ``verify``) and read the XSF tarball of ``spec``; provenance in ``meta``."""
    p = find_dataset_file(spec, path)
    prov = verify_file(spec, p) if verify else {"sha256": None, "sha256_pinned": None}
    ds = read_xsf_tarball(p, references=references, name=spec.name, limit=limit)
    ds.meta.update(
        prov,
        source_url=spec.url,
        repository=spec.repository,
        commit=spec.commit,
        licence=spec.licence,
        citation=spec.citation,
    )
    return ds


# --------------------------------------------------------------------------- downloading


def http_get_to(url: str, fh: IO[bytes], *, timeout: float, session: Any | None) -> str:
    """Stream ``url`` into ``fh`` and return the sha256 of what was written.

    ``session``: anything with ``requests``' ``get(url, stream=, timeout=)``; ``None``: ``requests``.

    Raises:
        ConnectionError: The request failed (network, timeout, HTTP error status).
    """
    getter = (session if session is not None else requests).get
    h = hashlib.sha256()
    try:
        resp = getter(url, stream=True, timeout=timeout)
        try:
            resp.raise_for_status()
            for chunk in resp.iter_content(chunk_size=_CHUNK):
                if chunk:
                    fh.write(chunk)
                    h.update(chunk)
        finally:
            close = getattr(resp, "close", None)
            if close is not None:
                close()
    except requests.RequestException as exc:
        raise ConnectionError(
            f"could not download {url} ({type(exc).__name__}: {exc}). Check the network, or "
            "download the file by hand and pass its path to the loader."
        ) from exc
    return h.hexdigest()


def download_target(spec: RemoteDataset, dest: str | os.PathLike | None) -> Path:
    """Where a download of ``spec`` goes: ``dest`` (a file, or a folder to put the file in), or
    ``<cache>/potentials/<filename>``."""
    if dest is None:
        return cache_root() / "potentials" / spec.filename
    d = Path(dest).expanduser()
    return d / spec.filename if d.is_dir() else d


def write_download_record(path: Path, record: dict) -> None:
    """Write ``record`` (url, commit, sha256, ...) as JSON next to the downloaded ``path``."""
    download_record_path(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
