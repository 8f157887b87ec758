"""The LMNTO set: 824 AIMD frames of Li8Mo2Ni7Ti7O32 (56 atoms, PBE) from aenet-python.

Read from ``lmnto_xsf.tar.gz`` (:func:`load_lmnto`); no references are subtracted (none are
published with the set). Get a missing file with :func:`download_lmnto`.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from alhelpers.atomistic.data.remote import (
    RemoteDataset,
    download_target,
    http_get_to,
    load_pinned_xsf,
    write_download_record,
)
from alhelpers.atomistic.data.xsf import pack_xsf_tarball
from alhelpers.files import DataIntegrityError, sha256_file
from alhelpers.structures import StructureSet

__all__ = ["LMNTO", "load_lmnto", "download_lmnto"]

LMNTO = RemoteDataset(
    name="lmnto",
    filename="lmnto_xsf.tar.gz",
    shared_dir="lmnto_aenet",
    sha256="8975bb5b86099b63e7aae1508f06a4b832914611e074417d2f043161098161e8",
    n_structures=824,
    repository="atomisticnet/aenet-python",
    commit="eb2bca77f319feed279268a3607fe0be0e4c98c1",
    source_path="notebooks/xsf/",
    licence="MPL-2.0",
    citation="Cooper et al., 2020 (AIMD at 400 K of Li8Mo2Ni7Ti7O32)",
)


def load_lmnto(
    path: str | os.PathLike | None = None, *, limit: int | None = None, verify: bool = True
) -> StructureSet:
    """The LMNTO AIMD frames (Li8Mo2Ni7Ti7O32, 56 atoms each, PBE) with energies and forces.

    No isolated-atom references are published with this set, so nothing is subtracted: energies
    are DFT totals (about −630 eV per frame) and ``references`` is empty. All frames have the same
    composition, so any per-species shift of the model (STUDY §8, μ_Z) absorbs the constant.

    Args and errors as :func:`~alhelpers.atomistic.data.tio2.load_tio2`. A file from
    :func:`download_lmnto` may hold more frames than the 824 of the pinned copy; it is verified
    against the record written next to it.
    """
    return load_pinned_xsf(LMNTO, path, None, limit, verify)


def download_lmnto(
    dest: str | os.PathLike | None = None,
    *,
    timeout: float = 120.0,
    overwrite: bool = False,
    session: Any | None = None,
) -> Path:
    """Download the LMNTO frames from GitHub at the pinned commit and pack them as a tarball.

    Fetches the zip archive of atomisticnet/aenet-python at commit ``eb2bca77…`` from
    codeload.github.com (streamed to a temporary file), takes every ``notebooks/xsf/*.xsf`` and
    writes them as ``xsf/<name>.xsf`` into ``lmnto_xsf.tar.gz`` — the layout of the pinned copy.

    The pinned copy (PROVENANCE) holds 824 frames; the upstream folder may hold a different
    number, and the packed bytes cannot match that sha256 anyway, so the sha256 of PROVENANCE is
    not checked here. Instead the frame count and the sha256 of the file written are recorded
    next to it (``lmnto_xsf.tar.gz.json``), and :func:`load_lmnto` verifies against that record.

    Args:
        dest: A file path or a folder; default ``<cache>/potentials/lmnto_xsf.tar.gz``.
        timeout, overwrite, session: As :func:`~alhelpers.atomistic.data.tio2.download_tio2`.

    Returns:
        The path of the tarball.

    Raises:
        ConnectionError: The download failed. ValueError: no ``notebooks/xsf/*.xsf`` in the archive.
    """
    target = download_target(LMNTO, dest)
    if target.exists() and not overwrite:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lmnto-", dir=target.parent) as tmpdir:
        archive = Path(tmpdir) / "repo.zip"
        with open(archive, "wb") as fh:
            http_get_to(LMNTO.url, fh, timeout=timeout, session=session)
        pattern = re.compile(r"^[^/]+/" + re.escape(LMNTO.source_path) + r"([^/]+\.xsf)$")
        try:
            with zipfile.ZipFile(archive) as zf:
                frames = [
                    (m.group(1), zf.read(info))
                    for info in zf.infolist()
                    if (m := pattern.match(info.filename))
                ]
        except zipfile.BadZipFile as exc:
            raise DataIntegrityError(f"{LMNTO.url} did not return a zip archive: {exc}") from exc
        if not frames:
            raise ValueError(
                f"no {LMNTO.source_path}*.xsf in the archive of {LMNTO.repository} at "
                f"{LMNTO.commit[:12]}"
            )
        packed = Path(tmpdir) / LMNTO.filename
        with open(packed, "wb") as fh:
            n = pack_xsf_tarball(frames, fh, "xsf")
        digest = sha256_file(packed)
        os.replace(packed, target)
    write_download_record(
        target,
        {"dataset": "lmnto", "url": LMNTO.url, "commit": LMNTO.commit, "sha256": digest,
         "n_structures": n, "n_structures_pinned_copy": LMNTO.n_structures,
         "licence": LMNTO.licence,
         "note": "packed from notebooks/xsf/*.xsf of the repository zip; sorted, mtime 0"},
    )
    return target
