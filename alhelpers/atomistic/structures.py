"""The labelled structure set every part of Track B works on (STUDY §8).

A :class:`StructureSet` is a list of :class:`ase.Atoms` (positions in Å, atomic numbers, cell,
pbc) with one energy per structure (eV, *after* subtracting the isolated-atom references, so a
cohesive/atomisation energy) and one ``(n_atoms, 3)`` force array per structure (eV/Å). Energies
or forces may be missing for a pool that is labelled on demand (:mod:`alhelpers.atomistic.oracle`)
or for an energies-only set (QM9): they are ``NaN`` then, and ``has_forces`` is False.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

__all__ = ["StructureSet"]


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
            meta=dict(self.meta),
        )
