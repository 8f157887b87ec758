"""The labelled structure set every part of Track B works on (STUDY §8).

A :class:`StructureSet` is a list of :class:`ase.Atoms` (positions in Å, atomic numbers, cell,
pbc) with one energy per structure (eV, *after* subtracting the isolated-atom references, so a
cohesive/atomisation energy) and one ``(n_atoms, 3)`` force array per structure (eV/Å). Energies
or forces may be missing for a pool that is labelled on demand (:mod:`alhelpers.atomistic.oracle`)
or for an energies-only set (QM9): they are ``NaN`` then, and ``has_forces`` is False.

What a set refuses, naming the structure (its index in the set it was read as, and its source
file where known): non-finite positions or cell vectors, a periodic structure whose cell has no
volume (the neighbour list inverts the cell), infinite energies or forces
(:class:`BadStructureError`, on construction), and, in :meth:`StructureSet.check_geometry` (the
readers call it) and whenever a neighbour graph is built, two atoms closer than
:data:`MIN_DISTANCE` — at such distances the descriptor is singular (at 0 Å: NaN) and no DFT
label is meaningful.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from alhelpers.neighbours import MIN_DISTANCE, BadStructureError, neighbour_distances

__all__ = ["MIN_DISTANCE", "BadStructureError", "StructureSet", "cell_problem", "closest_pair", "composition_matrix",
           "frame_line", "mixed_forces_problem", "same_structure", "structure_problem"]

#: A periodic cell is flat when |det| ≤ this × the product of its vector lengths (sines of its angles).
FLAT_CELL = 1e-8


def composition_matrix(structures: Sequence[Atoms], species: Sequence[int]) -> np.ndarray:
    """``(S, len(species))`` float64: how many atoms of each atomic number every structure has (the
    design matrix of per-element energy fits)."""
    return np.array([[int((a.numbers == z).sum()) for z in species] for a in structures], dtype=np.float64)


def same_structure(a: Atoms, b: Atoms, *, atol: float) -> bool:
    """Whether two structures have the same atoms in the same order, positions and cell within
    ``atol`` Å."""
    return (len(a) == len(b) and np.array_equal(a.numbers, b.numbers)
            and np.allclose(a.positions, b.positions, atol=atol, rtol=0.0)
            and np.allclose(a.cell.array, b.cell.array, atol=atol, rtol=0.0))


def closest_pair(atoms: Atoms, below: float = MIN_DISTANCE) -> tuple[int, int, float] | None:
    """The closest two atoms ``(i, j, distance)`` if any pair (with periodic images) is closer
    than ``below`` Å, else None."""
    i, j, d = neighbour_distances(atoms, below)
    if d.size == 0:
        return None
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def _too_close(atoms: Atoms, min_distance: float) -> str | None:
    pair = closest_pair(atoms, min_distance)
    if pair is None:
        return None
    i, j, d = pair
    return (f"atoms {i} and {j} ({atoms[i].symbol}, {atoms[j].symbol}) are {d:.3f} Å apart, closer than "
            f"{min_distance} Å; a duplicated or misplaced atom? Fix or drop this structure")


def cell_problem(cell: np.ndarray, pbc: Sequence[bool]) -> str | None:
    """Why a cell cannot hold a periodic structure, in words (None if it can, or if nothing is
    periodic): its three vectors must be linearly independent, since the neighbour list inverts
    the whole cell — a non-periodic direction of a slab or polymer needs a vector too."""
    if not any(bool(p) for p in pbc):
        return None
    cell = np.asarray(cell, dtype=np.float64)
    volume = abs(float(np.linalg.det(cell)))
    if volume > FLAT_CELL * float(np.prod(np.linalg.norm(cell, axis=1))):
        return None
    return (f"a periodic cell (pbc {[bool(p) for p in pbc]}) without volume: the cell vectors {cell.tolist()} are "
            f"linearly dependent (volume {volume:.3g} Å³); give three independent vectors (for a non-periodic "
            "direction, one out of the plane of the others, e.g. the vacuum gap)")


def mixed_forces_problem(with_forces: Sequence[bool], names: Sequence[str], what: str = "structures") -> str | None:
    """Why a set of structures with forces for some and none for others cannot be used, in words,
    naming the first five without (None when all or none have forces). A reader that made such a
    set energy-only would drop every force without a word; one that kept it would train the
    structures without forces on energies alone."""
    lacking = [n for n, has in zip(names, with_forces) if not has]
    if not lacking or len(lacking) == len(names):
        return None
    first = ", ".join(lacking[:5]) + (", …" if len(lacking) > 5 else "")
    return (f"{len(lacking)} of {len(names)} {what} have no force columns ({first}) and "
            f"{len(names) - len(lacking)} have them; give forces for every structure or for none (an energy-only set)")


def frame_line(source: str | os.PathLike, frames: Sequence[Atoms], k: int) -> str:
    """Where frame ``k`` of a file starts, for a message: ``path:line`` for the xyz family (a frame
    is its atom count, a comment line and one line per atom), else ``path``."""
    source = os.fspath(source)
    if not source.lower().endswith((".xyz", ".extxyz")):
        return source
    return f"{source}:{1 + sum(len(a) + 2 for a in frames[:k])}"


def structure_problem(atoms: Atoms, energy: float = float("nan"), forces: np.ndarray | None = None, *,
                      min_distance: float = MIN_DISTANCE) -> str | None:
    """What makes one structure unusable, in words (None if nothing): non-finite coordinates or
    cell, a periodic cell without volume, an infinite energy or force, NaN forces for some atoms
    only, atoms closer than ``min_distance`` Å."""
    f = np.full((len(atoms), 3), np.nan) if forces is None else forces
    return _finite_problem(atoms, energy, f) or _too_close(atoms, min_distance)


def _all_finite(data: "StructureSet") -> bool:
    """One vectorised pass: positions and cells finite, periodic cells with volume, no infinite
    label, NaN forces all-or-none."""
    pos = np.concatenate([a.positions for a in data.structures])
    cells = np.stack([a.cell[:] for a in data.structures])
    if not (np.isfinite(pos).all() and np.isfinite(cells).all()) or np.isinf(data.energy).any():
        return False
    periodic = np.array([a.pbc.any() for a in data.structures])
    if periodic.any():
        c = cells[periodic]
        if (np.abs(np.linalg.det(c)) <= FLAT_CELL * np.prod(np.linalg.norm(c, axis=2), axis=1)).any():
            return False
    F = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1) for f in data.forces])
    if np.isinf(F).any():
        return False
    if np.isnan(F).any():  # NaN forces are fine only for a whole structure (unlabelled)
        return all(np.isnan(f).all() or not np.isnan(f).any() for f in data.forces)
    return True


def _finite_problem(atoms: Atoms, energy: float, forces: np.ndarray) -> str | None:
    """What is non-finite in one structure, or its periodic cell without volume (None if nothing)."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if not np.isfinite(pos).all():
        bad = np.flatnonzero(~np.isfinite(pos).all(axis=1))
        return f"non-finite coordinates (atoms {bad[:5].tolist()}: {pos[bad[0]].tolist()})"
    if not np.isfinite(np.asarray(atoms.cell[:], dtype=np.float64)).all():
        return f"non-finite cell vectors {np.asarray(atoms.cell[:]).tolist()}"
    flat = cell_problem(atoms.cell[:], atoms.pbc)
    if flat:
        return flat
    if np.isinf(energy):
        return f"an infinite energy ({energy})"
    f = np.asarray(forces, dtype=np.float64)
    if np.isinf(f).any():
        bad = np.flatnonzero(np.isinf(f).any(axis=1))
        return f"infinite forces (atoms {bad[:5].tolist()}: {f[bad[0]].tolist()})"
    if np.isnan(f).any() and not np.isnan(f).all():
        bad = np.flatnonzero(np.isnan(f).any(axis=1))
        return (f"NaN in the forces of atoms {bad[:5].tolist()} but not of the others (NaN forces mean "
                "'not labelled' and must then be NaN for every atom)")
    return None


@dataclass
class StructureSet:
    """Structures with reference-subtracted energies (eV) and forces (eV/Å).

    Attributes:
        name: Short name of the set (``"tio2"``, ``"lmnto"``, ``"offline"``, ``"qm9"``).
        structures: One :class:`ase.Atoms` per structure.
        energy: ``(S,)`` float64 energies in eV with ``references`` subtracted; NaN = unlabelled.
        forces: ``S`` arrays of shape ``(n_atoms_s, 3)``, float64, eV/Å; NaN-filled = unlabelled.
        references: Isolated-atom energy per element symbol that was subtracted (eV).
        has_forces: False for energies-only sets (QM9).
        meta: Free-form provenance (source file, sha256, recipe, ...).
    """

    name: str
    structures: list[Atoms]
    energy: np.ndarray
    forces: list[np.ndarray]
    references: dict[str, float] = field(default_factory=dict)
    has_forces: bool = True
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.energy = np.asarray(self.energy, dtype=np.float64).reshape(-1)
        n = len(self.structures)
        if self.energy.shape[0] != n or len(self.forces) != n:
            raise ValueError(
                f"StructureSet {self.name!r}: {n} structures but {self.energy.shape[0]} energies "
                f"and {len(self.forces)} force arrays; give one of each per structure"
            )
        for s, (atoms, f) in enumerate(zip(self.structures, self.forces)):
            if np.shape(f) != (len(atoms), 3):
                raise ValueError(
                    f"StructureSet {self.name!r}: structure {s} has {len(atoms)} atoms but forces "
                    f"of shape {np.shape(f)}; expected ({len(atoms)}, 3)"
                )

        if n and not _all_finite(self):
            for s, (atoms, f) in enumerate(zip(self.structures, self.forces)):
                problem = _finite_problem(atoms, self.energy[s], f)
                if problem:
                    raise BadStructureError(f"{problem}; fix or drop it", s, self.describe(s))

    def __len__(self) -> int:
        return len(self.structures)

    @property
    def n_atoms(self) -> np.ndarray:
        """Atoms per structure, ``(S,)`` int."""
        return np.array([len(a) for a in self.structures], dtype=np.int64)

    @property
    def species(self) -> tuple[int, ...]:
        """Sorted atomic numbers present in the set."""
        return tuple(sorted({int(z) for a in self.structures for z in a.numbers}))

    def describe(self, k: int) -> str:
        """``structure k of set 'name'`` with its index in the set as read and its source file."""
        k = int(k)
        original = self.meta.get("index")
        at = "" if original is None else f" (structure {int(original[k])} as read)"
        where = [str(x) for x in (self.meta.get("source_file"), self.structures[k].info.get("source")) if x]
        src = f" [{': '.join(where)}]" if where else ""
        return f"structure {k} of {self.name!r}{at}{src}"

    def check_geometry(self, min_distance: float = MIN_DISTANCE) -> None:
        """Raise :class:`BadStructureError` naming the first structure with two atoms closer than
        ``min_distance`` Å (periodic images included)."""
        for k, atoms in enumerate(self.structures):
            problem = _too_close(atoms, min_distance)
            if problem:
                raise BadStructureError(problem, k, self.describe(k))

    def subset(self, indices: Sequence[int] | np.ndarray) -> "StructureSet":
        """The structures at ``indices`` (in that order), sharing the Atoms objects."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        return StructureSet(
            name=self.name,
            structures=[self.structures[i] for i in idx],
            energy=self.energy[idx],
            forces=[self.forces[i] for i in idx],
            references=dict(self.references),
            has_forces=self.has_forces,
            meta={**self.meta, "index": np.asarray(self.meta.get("index", np.arange(len(self))))[idx]},
        )
