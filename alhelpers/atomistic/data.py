"""Track B data: real DFT energies and forces, the offline MD set, QM9, and seeded splits (STUDY §8).

Sets (all returned as :class:`~alhelpers.atomistic.structures.StructureSet`):

* ``tio2`` — 1,000 TiO2 cells (6–95 atoms, PBE) from aenet-PyTorch, read straight out of
  ``tio2_dir_xsf.tar.gz`` (:func:`load_tio2`); the isolated-atom references of the source
  (:data:`TIO2_REFERENCES`) are subtracted.
* ``lmnto`` — 824 AIMD frames of Li8Mo2Ni7Ti7O32 (56 atoms, PBE) from aenet-python
  (:func:`load_lmnto`); no references are subtracted (none are published with the set).
* ``offline`` — the project's own GFN2-xTB molecular-dynamics set, committed under
  ``data_cache/potentials/`` (:func:`alhelpers.atomistic.mdset.load_offline`).
* ``qm9`` — optional, energies only, from the PyPI package ``qm9pack`` (:func:`load_qm9`).

Where the two DFT tarballs are looked for, in this order: the ``path`` you pass,
``<cache>/potentials/`` (``$ALHELPERS_DATA_CACHE`` or the repository's ``data_cache/``), then
``../shared/data/<dir>/`` next to the repository. Every file is checked against the sha256 of its
PROVENANCE before it is read. Get a missing file with :func:`download_tio2` / :func:`download_lmnto`.

The XSF files of aenet hold forces in eV/Å, but ASE's XSF reader assumes Hartree/Å (the XSF
convention) and multiplies them by 27.21; :func:`read_xsf` therefore reads the structure with ASE
and the energy and forces from the text itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import requests
from ase import Atoms

from alhelpers.files import sha256_file
from alhelpers.atomistic.structures import StructureSet
from alhelpers.data.paths import REPO_ROOT, cache_root

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

#: Isolated-atom energies (eV) used with the TiO2 set (aenet-PyTorch example input).
TIO2_REFERENCES: dict[str, float] = {"O": -432.503149303, "Ti": -1604.604515075}

#: QM9 atomic reference energies U0 (Hartree) at B3LYP/6-31G(2df,p), the "atomref" table published
#: with QM9 (Ramakrishnan et al., Sci. Data 1, 140022 (2014); figshare 1057643). qm9pack does not ship
#: them; they are the same level of theory as its ``InternalEnergy_0K_au`` column.
QM9_U0_REFERENCES_HARTREE: dict[str, float] = {
    "H": -0.500273,
    "C": -37.846772,
    "N": -54.583861,
    "O": -75.064579,
    "F": -99.718730,
}

_ENERGY_RE = re.compile(r"total\s+energy\s*=\s*([-+0-9.eEdD]+)\s*(eV)?", re.IGNORECASE)
_CHUNK = 1 << 16


class DataIntegrityError(RuntimeError):
    """A data file does not match the sha256 recorded for it (corrupt, truncated or replaced)."""


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


# --------------------------------------------------------------------------- XSF


def _xsf_text(fileobj_or_path: str | os.PathLike | IO) -> tuple[str, str]:
    """The text of an XSF file and a name for messages."""
    if isinstance(fileobj_or_path, (str, os.PathLike)):
        path = Path(fileobj_or_path)
        return path.read_text(), str(path)
    data = fileobj_or_path.read()
    name = str(getattr(fileobj_or_path, "name", "<xsf stream>"))
    return (data.decode() if isinstance(data, bytes) else data), name


def _xsf_energy(text: str, name: str) -> float:
    """The ``# total energy = ... eV`` of the comment lines before the first keyword."""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if not s.startswith("#"):
            break
        m = _ENERGY_RE.search(s)
        if m:
            return float(m.group(1).replace("d", "e").replace("D", "e"))
    raise ValueError(
        f"{name}: no total energy found. aenet XSF files start with a comment line "
        "'# total energy = <value> eV'; add it (energies in eV) or use ase.io.read for "
        "structure-only files."
    )


def _xsf_atom_lines(text: str, name: str) -> list[list[str]]:
    """Tokens of the atom lines of the first image (PRIMCOORD block or ATOMS block)."""
    lines = [s for s in (ln.strip() for ln in text.splitlines()) if s and not s.startswith("#")]
    for i, line in enumerate(lines):
        if line.startswith("PRIMCOORD"):
            natoms = int(lines[i + 1].split()[0])
            return [ln.split() for ln in lines[i + 2 : i + 2 + natoms]]
        if line.startswith("ATOMS"):
            out = []
            for ln in lines[i + 1 :]:
                if ln.startswith(("ATOMS", "BEGIN")):
                    break
                out.append(ln.split())
            return out
    raise ValueError(f"{name}: no PRIMCOORD or ATOMS block; is this an XSF file?")


def read_xsf(fileobj_or_path: str | os.PathLike | IO) -> tuple[Atoms, float, np.ndarray]:
    """Read one aenet-style XSF structure with its total energy (eV) and forces (eV/Å).

    The structure (cell, pbc, species, positions) comes from ``ase.io.read(format="xsf")``. The
    energy is the first comment line ``# total energy = ... eV``; the forces are columns 5–7 of the
    atom lines ``symbol x y z fx fy fz``, read from the text because ASE would scale them by
    Hartree (it assumes Ha/Å). A file without force columns gives NaN forces.

    Args:
        fileobj_or_path: A path, or an open text/binary file object.

    Returns:
        ``(atoms, total_energy_eV, forces)`` with ``forces`` of shape ``(n_atoms, 3)``. ``atoms``
        has no calculator attached.

    Raises:
        ValueError: No total-energy line, no atom block, an unknown element, or malformed lines.
    """
    import ase.io

    text, name = _xsf_text(fileobj_or_path)
    energy = _xsf_energy(text, name)
    try:
        atoms = ase.io.read(io.StringIO(text), format="xsf")
    except KeyError as exc:  # ASE looks symbols up in ase.data.atomic_numbers
        raise ValueError(f"{name}: unknown element symbol {exc.args[0]!r}") from exc
    except (AssertionError, ValueError, IndexError, StopIteration) as exc:
        raise ValueError(f"{name}: not a readable XSF file ({type(exc).__name__}: {exc})") from exc
    tokens = _xsf_atom_lines(text, name)
    if len(tokens) != len(atoms):
        raise ValueError(f"{name}: {len(tokens)} atom lines but ASE read {len(atoms)} atoms")
    if all(len(t) >= 7 for t in tokens):
        forces = np.array([[float(x) for x in t[4:7]] for t in tokens], dtype=np.float64)
    else:
        forces = np.full((len(atoms), 3), np.nan)
    atoms.calc = None  # ASE's SinglePointCalculator would hold Hartree-scaled forces
    atoms.info["source"] = name
    atoms.info["total_energy"] = energy
    return atoms, energy, forces


def _reference_sum(atoms: Atoms, references: Mapping[str, float], where: str) -> float:
    total = 0.0
    for sym in atoms.get_chemical_symbols():
        if sym not in references:
            raise ValueError(
                f"{where}: element {sym!r} has no isolated-atom reference energy (known: "
                f"{sorted(references)}). Pass references={{..., {sym!r}: <energy in eV>}}, or "
                "references=None to keep total energies."
            )
        total += float(references[sym])
    return total


def read_xsf_tarball(
    path: str | os.PathLike,
    *,
    references: Mapping[str, float] | None,
    name: str,
    limit: int | None = None,
) -> StructureSet:
    """Read every ``*.xsf`` member of a (gzipped) tarball into a :class:`StructureSet`.

    Members are read in memory (nothing is extracted to disk) and ordered by member name, so the
    index of a structure is stable. Energies are ``total − Σ_atoms references[symbol]``.

    Args:
        path: The ``.tar.gz`` (or plain ``.tar``) file.
        references: Isolated-atom energy (eV) per element symbol; every element present must have
            one. ``None`` subtracts nothing (energies stay totals; ``StructureSet.references`` is
            then empty).
        name: Name of the returned set.
        limit: Read only the first ``limit`` members (in name order).

    Raises:
        ValueError: A member without an energy line, or an element without a reference.
    """
    path = Path(path)
    with tarfile.open(path, "r:*") as tar:  # one pass in archive order; gz cannot seek cheaply
        raw = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile() and m.name.endswith(".xsf")
        }
    if not raw:
        raise ValueError(f"{path}: no .xsf members in this archive")
    names = sorted(raw)
    if limit is not None:
        names = names[: int(limit)]
    structures, energies, forces, totals = [], [], [], []
    for member in names:
        fh = io.BytesIO(raw[member])
        fh.name = member  # type: ignore[attr-defined]
        atoms, total, f = read_xsf(fh)
        shift = 0.0 if references is None else _reference_sum(atoms, references, member)
        structures.append(atoms)
        totals.append(total)
        energies.append(total - shift)
        forces.append(f)
    has_forces = all(bool(np.isfinite(f).all()) for f in forces)
    return StructureSet(
        name=name,
        structures=structures,
        energy=np.asarray(energies),
        forces=forces,
        references={} if references is None else {k: float(v) for k, v in references.items()},
        has_forces=has_forces,
        meta={"source_file": str(path), "members": names, "total_energy": np.asarray(totals)},
    )


# --------------------------------------------------------------------------- finding files


def _sidecar(path: Path) -> Path:
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


def _verify(spec: RemoteDataset, path: Path) -> dict[str, Any]:
    """Check ``path`` against the pinned sha256, or against the record its download left.

    Returns provenance for ``StructureSet.meta``.
    """
    digest = sha256_file(path)
    if digest == spec.sha256:
        return {"sha256": digest, "sha256_pinned": True}
    side = _sidecar(path)
    if side.exists():
        record = json.loads(side.read_text())
        if record.get("sha256") == digest:
            return {"sha256": digest, "sha256_pinned": False, "download_record": record}
    raise DataIntegrityError(
        f"{path} has sha256 {digest[:16]}…, but the {spec.name} data pinned in PROVENANCE has "
        f"{spec.sha256[:16]}…{' and its download record does not match either' if side.exists() else ''}. "
        f"The file is corrupt, truncated or a different version: delete it and run "
        f"`download_{spec.name}()` again (or pass verify=False to read it anyway)."
    )


def _load(spec: RemoteDataset, path, references, limit, verify) -> StructureSet:
    p = find_dataset_file(spec, path)
    prov = _verify(spec, p) if verify else {"sha256": None, "sha256_pinned": None}
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
    return _load(TIO2, path, TIO2_REFERENCES, limit, verify)


def load_lmnto(
    path: str | os.PathLike | None = None, *, limit: int | None = None, verify: bool = True
) -> StructureSet:
    """The LMNTO AIMD frames (Li8Mo2Ni7Ti7O32, 56 atoms each, PBE) with energies and forces.

    No isolated-atom references are published with this set, so nothing is subtracted: energies
    are DFT totals (about −630 eV per frame) and ``references`` is empty. All frames have the same
    composition, so any per-species shift of the model (STUDY §8, μ_Z) absorbs the constant.

    Args and errors as :func:`load_tio2`. A file from :func:`download_lmnto` may hold more frames
    than the 824 of the pinned copy; it is verified against the record written next to it.
    """
    return _load(LMNTO, path, None, limit, verify)


# --------------------------------------------------------------------------- downloads


def _http_get_to(url: str, fh: IO[bytes], *, timeout: float, session: Any | None) -> str:
    """Stream ``url`` into ``fh`` and return the sha256 of what was written."""
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


def _default_dest(spec: RemoteDataset, dest: str | os.PathLike | None) -> Path:
    if dest is None:
        return cache_root() / "potentials" / spec.filename
    d = Path(dest).expanduser()
    return d / spec.filename if d.is_dir() else d


def _write_record(path: Path, record: dict) -> None:
    _sidecar(path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


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
    target = _default_dest(TIO2, dest)
    if target.exists() and not overwrite and sha256_file(target) == TIO2.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            digest = _http_get_to(TIO2.url, fh, timeout=timeout, session=session)
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
    _write_record(
        target,
        {"dataset": "tio2", "url": TIO2.url, "commit": TIO2.commit, "sha256": digest,
         "n_structures": TIO2.n_structures, "licence": TIO2.licence},
    )
    return target


def _pack_xsf_tarball(frames: Iterable[tuple[str, bytes]], fh: IO[bytes], folder: str) -> int:
    """Write ``folder/<name>`` members into a deterministic .tar.gz (sorted, mtime 0, root-owned)."""
    import gzip

    n = 0
    with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            d = tarfile.TarInfo(folder)
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(d)
            for name, data in sorted(frames):
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
                n += 1
    return n


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
        timeout, overwrite, session: As :func:`download_tio2`.

    Returns:
        The path of the tarball.

    Raises:
        ConnectionError: The download failed. ValueError: no ``notebooks/xsf/*.xsf`` in the archive.
    """
    target = _default_dest(LMNTO, dest)
    if target.exists() and not overwrite:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lmnto-", dir=target.parent) as tmpdir:
        archive = Path(tmpdir) / "repo.zip"
        with open(archive, "wb") as fh:
            _http_get_to(LMNTO.url, fh, timeout=timeout, session=session)
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
            n = _pack_xsf_tarball(frames, fh, "xsf")
        digest = sha256_file(packed)
        os.replace(packed, target)
    _write_record(
        target,
        {"dataset": "lmnto", "url": LMNTO.url, "commit": LMNTO.commit, "sha256": digest,
         "n_structures": n, "n_structures_pinned_copy": LMNTO.n_structures,
         "licence": LMNTO.licence,
         "note": "packed from notebooks/xsf/*.xsf of the repository zip; sorted, mtime 0"},
    )
    return target


# --------------------------------------------------------------------------- QM9


def _qm9_source(path: str | os.PathLike | None) -> Path:
    """The qm9pack wheel or data folder: ``path``, or the installed package (located, not imported)."""
    if path is None:
        import importlib.util

        spec = importlib.util.find_spec("qm9pack")  # importing it would need pkg_resources
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "QM9 needs the optional PyPI package qm9pack (a ~104 MB wheel with QM9 as CSV): "
                "`pip install qm9pack==1.0.3`, or pass path= to its wheel or its data folder."
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "data"
    p = Path(path).expanduser()
    if p.is_dir() and (p / "data" / _QM9_PARTS[0]).exists():
        return p / "data"
    if (p.is_file() and zipfile.is_zipfile(p)) or (p / _QM9_PARTS[0]).exists():
        return p
    raise FileNotFoundError(f"{p}: neither a qm9pack wheel nor a folder with {_QM9_PARTS[0]}")


_QM9_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


def load_qm9(
    limit: int | None = None,
    *,
    path: str | os.PathLike | None = None,
    references: Mapping[str, float] | None | str = "atomref",
) -> StructureSet:
    """QM9 molecules (B3LYP/6-31G(2df,p) geometries) with their energies U0, energies only.

    Read from the CSV files inside the PyPI package ``qm9pack`` (1.0.3; not a dependency of this
    project — install it yourself). Each row has the element list (``Elements``), the Cartesian
    coordinates in Å (``XYZ_Ang``) and the internal energy at 0 K in Hartree
    (``InternalEnergy_0K_au``, = QM9's U0), among other properties. The set has no forces
    (``has_forces=False``; force arrays are NaN-filled).

    qm9pack ships no atomic reference energies. By default (``references="atomref"``) the
    published QM9 atomic U0 references of the same level of theory
    (:data:`QM9_U0_REFERENCES_HARTREE`) are subtracted, giving atomisation energies (eV);
    ``references=None`` keeps total energies; a dict (eV per element) subtracts your own.

    Args:
        limit: Read only the first ``limit`` molecules (QM9 index order); the full set is 130,831
            molecules and takes a while and ~1 GB of memory to parse.
        path: The qm9pack wheel (``.whl``) or its ``data`` folder; default: the installed package.
        references: ``"atomref"``, ``None`` or a dict of eV per element symbol.

    Raises:
        ImportError: qm9pack is not installed and no path was given (says ``pip install qm9pack``).
    """
    import pandas as pd
    from ase.units import Hartree as _Ha

    source = _qm9_source(path)
    if isinstance(references, str):
        if references != "atomref":
            raise ValueError(f"references={references!r}: use 'atomref', None or a dict")
        refs: dict[str, float] | None = {k: v * _Ha for k, v in QM9_U0_REFERENCES_HARTREE.items()}
    else:
        refs = None if references is None else {k: float(v) for k, v in references.items()}
    cols = ["XYZ_file", "Index", "N_atoms", "Elements", "XYZ_Ang", "InternalEnergy_0K_au"]
    frames, remaining = [], limit
    with contextlib.ExitStack() as stack:
        zf = stack.enter_context(zipfile.ZipFile(source)) if source.is_file() else None
        for part in _QM9_PARTS:
            if remaining is not None and remaining <= 0:
                break
            fh = zf.open(f"qm9pack/data/{part}") if zf is not None else open(source / part, "rb")
            with fh:
                df = pd.read_csv(fh, usecols=cols, nrows=remaining)
            frames.append(df)
            if remaining is not None:
                remaining -= len(df)
    table = pd.concat(frames, ignore_index=True)
    structures, energies, totals, forces = [], [], [], []
    for rec in table.itertuples(index=False):
        symbols = re.findall(r"[A-Z][a-z]?", rec.Elements)
        xyz = np.array([float(x) for x in re.findall(r"[-+0-9.eE]+", rec.XYZ_Ang)])
        if xyz.size != 3 * len(symbols) or len(symbols) != int(rec.N_atoms):
            raise ValueError(f"QM9 {rec.XYZ_file}: {len(symbols)} elements but {xyz.size} coordinates")
        atoms = Atoms(symbols, positions=xyz.reshape(-1, 3))
        atoms.info.update(source=rec.XYZ_file, qm9_index=int(rec.Index))
        total = float(rec.InternalEnergy_0K_au) * _Ha
        shift = 0.0 if refs is None else _reference_sum(atoms, refs, rec.XYZ_file)
        structures.append(atoms)
        totals.append(total)
        energies.append(total - shift)
        forces.append(np.full((len(atoms), 3), np.nan))
    return StructureSet(
        name="qm9",
        structures=structures,
        energy=np.asarray(energies),
        forces=forces,
        references=refs or {},
        has_forces=False,
        meta={
            "source": str(source),
            "package": "qm9pack==1.0.3 (MIT; data: QM9, Ramakrishnan et al., Sci. Data 1, 140022 (2014))",
            "energy": "U0 = InternalEnergy_0K_au (Hartree) converted to eV",
            "references": "QM9 atomref U0 (B3LYP/6-31G(2df,p))" if isinstance(references, str)
            else ("none" if refs is None else "user"),
            "total_energy": np.asarray(totals),
        },
    )


# --------------------------------------------------------------------------- splits, dispatch


def split_indices(
    n: int, *, n_pool: int, n_val: int, n_test: int, seed: int
) -> dict[str, np.ndarray]:
    """Disjoint random pool / validation / test index sets of ``range(n)``.

    One permutation from ``numpy.random.default_rng(seed)`` is cut into ``n_pool``, ``n_val`` and
    ``n_test`` consecutive pieces; ``"rest"`` holds what is left (often empty). Indices keep the
    permutation order, so ``pool[:k]`` is a random start set.

    Raises:
        ValueError: Negative sizes, or more indices asked for than ``n``.
    """
    sizes = {"pool": n_pool, "val": n_val, "test": n_test}
    if any(int(v) < 0 for v in sizes.values()) or n < 0:
        raise ValueError(f"split sizes must be non-negative, got n={n}, {sizes}")
    total = sum(int(v) for v in sizes.values())
    if total > n:
        raise ValueError(f"n_pool + n_val + n_test = {total} exceeds the {n} structures available")
    perm = np.random.default_rng(seed).permutation(int(n)).astype(np.int64)
    out, start = {}, 0
    for key, size in sizes.items():
        out[key] = perm[start : start + int(size)]
        start += int(size)
    out["rest"] = perm[start:]
    return out


def load_dataset(name: str, **kw: Any) -> StructureSet:
    """Load a Track B set by name: ``"offline"``, ``"tio2"``, ``"lmnto"`` or ``"qm9"``.

    Keyword arguments go to :func:`alhelpers.atomistic.mdset.load_offline`, :func:`load_tio2`,
    :func:`load_lmnto` or :func:`load_qm9`.
    """
    key = name.strip().lower()
    if key == "offline":
        from alhelpers.atomistic.mdset import load_offline

        return load_offline(**kw)
    loaders: dict[str, Callable[..., StructureSet]] = {
        "tio2": load_tio2,
        "lmnto": load_lmnto,
        "qm9": load_qm9,
    }
    if key not in loaders:
        raise ValueError(f"unknown data set {name!r}; choose one of offline, tio2, lmnto, qm9")
    return loaders[key](**kw)

