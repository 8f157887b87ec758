"""Track B data: real DFT energies and forces, the offline MD set, QM9, and seeded splits (STUDY §8).

Sets (all returned as :class:`~alhelpers.structures.StructureSet`, by name through
:func:`load_dataset`), one module each:

* ``tio2`` (:mod:`.tio2`) — 1,000 TiO2 cells (6–95 atoms, PBE) from aenet-PyTorch, read straight
  out of ``tio2_dir_xsf.tar.gz`` (:func:`load_tio2`); the isolated-atom references of the source
  (:data:`TIO2_REFERENCES`) are subtracted.
* ``lmnto`` (:mod:`.lmnto`) — 824 AIMD frames of Li8Mo2Ni7Ti7O32 (56 atoms, PBE) from
  aenet-python (:func:`load_lmnto`); no references are subtracted (none are published with the set).
* ``offline`` (:mod:`.offline`, with :mod:`.md`) — the project's own GFN2-xTB molecular-dynamics
  set, committed under ``data_cache/potentials/`` (:func:`load_offline`); rebuilt with
  ``python -m alhelpers.atomistic.data.offline build``.
* ``qm9`` (:mod:`.qm9`) — optional, energies only, from the PyPI package ``qm9pack`` (:func:`load_qm9`).

Shared: :mod:`.xsf` (the XSF readers), :mod:`.remote` (pinned files: finding, sha256 checks,
downloads) and :mod:`.splits` (:func:`split_indices`).

Where the two DFT tarballs are looked for, in this order: the ``path`` you pass,
``<cache>/potentials/`` (``$ALHELPERS_DATA_CACHE`` or the repository's ``data_cache/``), then
``../shared/data/<dir>/`` next to the repository. Every file is checked against the sha256 of its
PROVENANCE before it is read. Get a missing file with :func:`download_tio2` / :func:`download_lmnto`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alhelpers.atomistic.data.lmnto import LMNTO, download_lmnto, load_lmnto
from alhelpers.atomistic.data.qm9 import QM9_U0_REFERENCES_HARTREE, load_qm9
from alhelpers.atomistic.data.remote import RemoteDataset, find_dataset_file
from alhelpers.atomistic.data.splits import split_indices
from alhelpers.atomistic.data.tio2 import (
    TIO2,
    TIO2_REFERENCES,
    download_tio2,
    load_tio2,
)
from alhelpers.atomistic.data.xsf import read_xsf, read_xsf_tarball
from alhelpers.files import DataIntegrityError, sha256_file
from alhelpers.structures import StructureSet

__all__ = [
    "DataIntegrityError",
    "RemoteDataset",
    "TIO2",
    "LMNTO",
    "TIO2_REFERENCES",
    "QM9_U0_REFERENCES_HARTREE",
    "read_xsf",
    "read_xsf_tarball",
    "find_dataset_file",
    "load_tio2",
    "load_lmnto",
    "download_tio2",
    "download_lmnto",
    "load_qm9",
    "split_indices",
    "load_dataset",
    "sha256_file",
]


def load_dataset(name: str, **kw: Any) -> StructureSet:
    """Load a Track B set by name: ``"offline"``, ``"tio2"``, ``"lmnto"`` or ``"qm9"``.

    Keyword arguments go to :func:`alhelpers.atomistic.data.offline.load_offline`,
    :func:`load_tio2`, :func:`load_lmnto` or :func:`load_qm9`.
    """
    key = name.strip().lower()
    if key == "offline":
        # imported here, not above: if the package imported it, `python -m
        # alhelpers.atomistic.data.offline` would find the module loaded before it runs
        from alhelpers.atomistic.data.offline import load_offline

        return load_offline(**kw)
    loaders: dict[str, Callable[..., StructureSet]] = {
        "tio2": load_tio2,
        "lmnto": load_lmnto,
        "qm9": load_qm9,
    }
    if key not in loaders:
        raise ValueError(f"unknown data set {name!r}; choose one of offline, tio2, lmnto, qm9 (your own structures: "
                         "alhelpers.atomistic.data.user.load_structure_file, or SYSTEM = 'file' with DATA = its path)")
    return loaders[key](**kw)
