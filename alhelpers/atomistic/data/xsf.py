"""XSF files of aenet: one structure with its total energy and forces, and tarballs of them.

The XSF files of aenet hold forces in eV/Å, but ASE's XSF reader assumes Hartree/Å (the XSF
convention) and multiplies them by 27.21; :func:`read_xsf` therefore reads the structure with ASE
and the energy and forces from the text itself.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

import numpy as np
from ase import Atoms

from alhelpers.atomistic.structures import StructureSet

__all__ = ["read_xsf", "read_xsf_tarball", "reference_sum", "pack_xsf_tarball"]

_ENERGY_RE = re.compile(r"total\s+energy\s*=\s*([-+0-9.eEdD]+)\s*(eV)?", re.IGNORECASE)


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


def reference_sum(atoms: Atoms, references: Mapping[str, float], where: str) -> float:
    """Σ over the atoms of ``references[symbol]`` (eV); a missing element raises, naming ``where``."""
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
        shift = 0.0 if references is None else reference_sum(atoms, references, member)
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


def pack_xsf_tarball(frames: Iterable[tuple[str, bytes]], fh: IO[bytes], folder: str) -> int:
    """Write ``folder/<name>`` members into a deterministic .tar.gz (sorted, mtime 0, root-owned).

    Returns the number of members written.
    """
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
