"""QM9 (optional): molecules with their energies U0, energies only, from the PyPI package qm9pack."""

from __future__ import annotations

import contextlib
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from ase import Atoms

from alhelpers.atomistic.data.xsf import reference_sum
from alhelpers.structures import StructureSet

__all__ = ["QM9_U0_REFERENCES_HARTREE", "load_qm9"]

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

_QM9_PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")


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
        shift = 0.0 if refs is None else reference_sum(atoms, refs, rec.XYZ_file)
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
