"""The TiO2 set: 1,000 TiO2 cells (6–95 atoms, PBE) from aenet-PyTorch, with energies and forces.

Read straight out of ``tio2_dir_xsf.tar.gz`` (:func:`load_tio2`); the isolated-atom references of
the source (:data:`TIO2_REFERENCES`) are subtracted. Get a missing file with :func:`download_tio2`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from alhelpers.atomistic.data.remote import (
    RemoteDataset,
    download_target,
    http_get_to,
    load_pinned_xsf,
    write_download_record,
)
from alhelpers.files import DataIntegrityError, sha256_file
from alhelpers.structures import StructureSet

__all__ = ["TIO2", "TIO2_REFERENCES", "load_tio2", "download_tio2"]

#: Isolated-atom energies (eV) used with the TiO2 set (aenet-PyTorch example input).
TIO2_REFERENCES: dict[str, float] = {"O": -432.503149303, "Ti": -1604.604515075}

TIO2 = RemoteDataset(
    name="tio2",
    filename="tio2_dir_xsf.tar.gz",
    shared_dir="tio2_aenet",
    sha256="70e7c2ace9bec3d6fde85e2853d8477126fa6854c106be4b827c7e79513e8eb8",
    n_structures=1000,
    repository="atomisticnet/aenet-PyTorch",
    commit="c1cf315c39382663e14654ccf5bade967acebe73",
    source_path="example/dir_xsf.tar.gz",
    licence="MIT (J. Lopez-Zorrilla, N. Artrith)",
    citation="N. Artrith, A. Urban, Comput. Mater. Sci. 114, 135 (2016)",
)


def load_tio2(
    path: str | os.PathLike | None = None, *, limit: int | None = None, verify: bool = True
) -> StructureSet:
    """The 1,000 TiO2 structures (PBE) with cohesive energies and forces.

    Energies are totals minus the isolated-atom references :data:`TIO2_REFERENCES`
    (O −432.503149303 eV, Ti −1604.604515075 eV), i.e. about −5 to −7 eV/atom.

    Args:
        path: ``tio2_dir_xsf.tar.gz``; default: look in the cache, then ``../shared/data/``.
        limit: Read only the first ``limit`` structures (member-name order).
        verify: Check the sha256 first (PROVENANCE, or the record :func:`download_tio2` wrote).

    Raises:
        FileNotFoundError: Not found anywhere; the message says how to download it.
        DataIntegrityError: The file does not match its sha256.
    """
    return load_pinned_xsf(TIO2, path, TIO2_REFERENCES, limit, verify)


def download_tio2(
    dest: str | os.PathLike | None = None,
    *,
    timeout: float = 60.0,
    overwrite: bool = False,
    session: Any | None = None,
) -> Path:
    """Download ``tio2_dir_xsf.tar.gz`` from GitHub at the pinned commit and check its sha256.

    The file ``example/dir_xsf.tar.gz`` of atomisticnet/aenet-PyTorch at commit
    ``c1cf315c…`` is streamed (``requests``, with ``timeout`` seconds per socket operation) into a
    temporary file next to ``dest``, checked against the sha256 of PROVENANCE and only then renamed
    into place, so a failed or corrupt download never leaves a file that looks valid.

    Args:
        dest: A file path or a folder; default ``<cache>/potentials/tio2_dir_xsf.tar.gz``.
        timeout: Seconds for ``requests`` to wait on the connection and each read.
        overwrite: Download again even if ``dest`` already exists with the right sha256.
        session: Anything with ``requests``' ``get(url, stream=, timeout=)`` (tests pass a fake).

    Returns:
        The path of the verified file.

    Raises:
        ConnectionError: The download failed. DataIntegrityError: wrong sha256 (nothing written).
    """
    target = download_target(TIO2, dest)
    if target.exists() and not overwrite and sha256_file(target) == TIO2.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            digest = http_get_to(TIO2.url, fh, timeout=timeout, session=session)
        if digest != TIO2.sha256:
            raise DataIntegrityError(
                f"downloaded {TIO2.url} has sha256 {digest[:16]}…, expected {TIO2.sha256[:16]}… "
                "(PROVENANCE); nothing was written. Try again; if it persists the upstream file "
                "changed."
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    write_download_record(
        target,
        {"dataset": "tio2", "url": TIO2.url, "commit": TIO2.commit, "sha256": digest,
         "n_structures": TIO2.n_structures, "licence": TIO2.licence},
    )
    return target
