"""Your own structures in the Track B study: any file ``ase.io`` reads that carries energies and forces.

``python -m alhelpers.run potentials --system file --data PATH [--energy-key K] [--forces-key K]
[--energy-unit eV]`` and notebook 07's ``SYSTEM = "file"`` read the file with
:func:`load_structure_file`: every frame of an extxyz, a VASP ``OUTCAR``/``vasprun.xml``, an ASE
trajectory, … Energies are total energies (the potentials fit their own per-element reference);
forces are in the energy unit per Å. A file where no frame has forces is an energies-only set.

Where the labels are looked up, frame by frame:

* the energy: ``atoms.info[K]`` or the calculator's result ``K`` with ``--energy-key K``; else the
  calculator's ``energy`` (extxyz ``energy=``, OUTCAR, vasprun) or ``atoms.info["energy"]``;
* the forces: ``atoms.arrays[K]`` or the calculator's result ``K`` with ``--forces-key K``; else the
  calculator's ``forces`` or ``atoms.arrays["forces"]``.

Checked before anything is trained, each refused with the file, the frame and (for the xyz
family) the line it starts on: a frame without an energy (naming the keys it has), non-finite
coordinates, cells or labels, a periodic cell without volume, atoms closer than 0.5 Å, forces for
some frames and not others, forces of the wrong shape, an empty file, an unknown energy unit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from ase import Atoms, units

from alhelpers.atomistic.config import system_name
from alhelpers.files import sha256_file
from alhelpers.structures import (
    StructureSet,
    frame_line,
    mixed_forces_problem,
    structure_problem,
)

__all__ = ["ENERGY_UNITS", "labelled_frames", "load_structure_file"]

#: Energy units a file's labels may be in, as eV per unit (forces: the same unit per Å).
ENERGY_UNITS: dict[str, float] = {"eV": 1.0, "meV": 1e-3, "Hartree": units.Hartree, "Ry": units.Rydberg,
                                  "kcal/mol": units.kcal / units.mol, "kJ/mol": units.kJ / units.mol}


def _factor(energy_unit: str) -> float:
    units_ = {k.lower(): v for k, v in ENERGY_UNITS.items()}
    if energy_unit.strip().lower() not in units_:
        raise ValueError(f"unknown energy unit {energy_unit!r}; choose one of {', '.join(ENERGY_UNITS)}")
    return units_[energy_unit.strip().lower()]


def _read(path: str | os.PathLike) -> list[Atoms]:
    from ase.io import read

    if not os.path.isfile(path):
        raise FileNotFoundError(f"the structure file {os.fspath(path)!r} does not exist; give the path of a file "
                                "ase.io reads (extxyz, OUTCAR, vasprun.xml, .traj …)")
    try:
        frames = read(path, index=":")
    except Exception as err:
        raise ValueError(f"{os.fspath(path)} could not be read by ase.io ({type(err).__name__}: {err}); give an "
                         "extxyz file (or any format ase.io.read knows, with the format in the file's suffix)") from err
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise ValueError(f"{os.fspath(path)} holds no structure")
    return frames


def _energy(atoms: Atoms, key: str | None) -> float | None:
    results = atoms.calc.results if atoms.calc is not None else {}
    name = key or "energy"
    for where in (atoms.info, results):
        if name in where and np.ndim(where[name]) == 0:
            return float(where[name])
    return None


def _forces(atoms: Atoms, key: str | None) -> np.ndarray | None:
    results = atoms.calc.results if atoms.calc is not None else {}
    name = key or "forces"
    for where in (atoms.arrays, results):
        if name in where:
            return np.asarray(where[name], dtype=np.float64)
    return None


def _keys(atoms: Atoms) -> str:
    results = atoms.calc.results if atoms.calc is not None else {}
    info = [k for k, v in atoms.info.items() if np.ndim(v) == 0 and isinstance(v, (int, float, np.number))]
    arrays = [k for k in atoms.arrays if k not in ("numbers", "positions")]
    return (f"its numbers: {sorted(set(info) | {k for k in results if np.ndim(results[k]) == 0})}, "
            f"its per-atom arrays: {sorted(set(arrays) | {k for k in results if np.ndim(results[k]) == 2})}")


def labelled_frames(path: str | os.PathLike, *, energy_key: str | None = None, forces_key: str | None = None,
                    energy_unit: str = "eV", require_forces: bool = False
                    ) -> tuple[list[Atoms], np.ndarray, list[np.ndarray] | None]:
    """Every frame of ``path`` with its energy (eV) and forces (eV/Å; None when no frame has any).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Anything of the module docstring's list, naming the file, frame and line.
    """
    factor = _factor(energy_unit)
    source = os.fspath(path)
    frames = _read(path)
    energies, forces = [], []
    for k, atoms in enumerate(frames):
        e = _energy(atoms, energy_key)
        if e is None:
            wanted = f"under the key {energy_key!r}" if energy_key else "(no extxyz energy=, no calculator's energy)"
            raise ValueError(f"{frame_line(source, frames, k)}: frame {k} ({atoms.get_chemical_formula()}) has no energy "
                             f"{wanted}; {_keys(atoms)}. Name the energy's key with --energy-key (ENERGY_FIELD in "
                             "notebook 07)")
        f = _forces(atoms, forces_key)
        if f is not None and f.shape != (len(atoms), 3):
            raise ValueError(f"{frame_line(source, frames, k)}: frame {k}: forces of shape {f.shape} for {len(atoms)} atoms; expected "
                             f"({len(atoms)}, 3)")
        if forces_key and f is None:
            raise ValueError(f"{frame_line(source, frames, k)}: frame {k} has no per-atom array {forces_key!r}; {_keys(atoms)}")
        energies.append(e * factor)
        forces.append(None if f is None else f * factor)
        problem = structure_problem(atoms, energies[-1], forces[-1])
        if problem:
            raise ValueError(f"{frame_line(source, frames, k)}: frame {k}: {problem}")
    has = [f is not None for f in forces]
    if require_forces and not all(has):
        k = has.index(False)
        raise ValueError(f"{frame_line(source, frames, k)}: frame {k} ({frames[k].get_chemical_formula()}) has no "
                         "forces; every labelled frame needs its energy (eV) and forces (eV/Å), e.g. extxyz with "
                         "energy= in the comment line")
    mixed = mixed_forces_problem(has, [f"frame {k}" for k in range(len(frames))], "frames")
    if mixed:
        raise ValueError(f"{source}: {mixed}")
    return frames, np.asarray(energies, dtype=np.float64), (forces if all(has) else None)


def load_structure_file(path: str | os.PathLike, *, energy_key: str | None = None, forces_key: str | None = None,
                        energy_unit: str = "eV", name: str | None = None) -> StructureSet:
    """The labelled structures of a file, as the study's :class:`StructureSet` (named
    ``file-<its name>``, :func:`~alhelpers.atomistic.config.system_name`, unless ``name`` is given; ``meta``: the file and its sha256)."""
    frames, energies, forces = labelled_frames(path, energy_key=energy_key, forces_key=forces_key,
                                               energy_unit=energy_unit)
    structures: list[Atoms] = []
    for atoms in frames:
        a = atoms.copy()
        a.calc = None
        structures.append(a)
    has_forces = forces is not None
    F: Sequence[np.ndarray] = forces if has_forces else [np.full((len(a), 3), np.nan) for a in structures]
    return StructureSet(name=name or system_name("file", os.fspath(path)), structures=structures, energy=energies,
                        forces=[np.asarray(f, dtype=np.float64) for f in F], has_forces=has_forces,
                        meta={"source_file": os.fspath(path), "sha256": sha256_file(path), "energy_unit": energy_unit,
                              "energy_key": energy_key, "forces_key": forces_key})
