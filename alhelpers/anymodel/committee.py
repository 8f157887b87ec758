"""QBC(E) and QBC(F) from a committee: models behind adapters, or ASE calculators.

* :func:`committee_predictions` — every member's energies ``(M, S)`` and forces (one ``(N, 3)``
  array per member, all atoms stacked). A member is a
  :class:`~alhelpers.anymodel.adapter.PotentialAdapter` (batched) or an ASE calculator (one
  structure at a time, on a copy of each structure).
* :func:`energy_spread`, :func:`force_spread` — the committee's standard deviation (``ddof = 0``)
  of each structure's energy, and ``sqrt(mean over atoms and components of the variance of F)``:
  the one definition of QBC(E)/QBC(F) for every potential of the project.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

__all__ = ["committee_predictions", "energy_spread", "force_spread", "is_calculator"]


def is_calculator(member: Any) -> bool:
    """Whether ``member`` is an ASE calculator (rather than an adapter)."""
    return hasattr(member, "get_potential_energy") and hasattr(member, "calculate")


def committee_predictions(members: Sequence[Any], structures: Sequence[Atoms], *, forces: bool = True
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """Energies ``(M, S)`` (eV) and forces ``(M, N, 3)`` (eV/Å) or None of every member."""
    from alhelpers.anymodel.train import predict_adapter

    if len(members) < 2:
        raise ValueError(f"a committee needs at least two members, got {len(members)}")
    E, F = [], []
    for m in members:
        if is_calculator(m):
            e, f = [], []
            for a in structures:
                b = a.copy()
                b.calc = m
                e.append(float(b.get_potential_energy()))
                if forces:
                    f.append(np.asarray(b.get_forces(), dtype=np.float64))
        else:
            e, f = predict_adapter(m, structures, forces=forces)
        E.append(np.asarray(e, dtype=np.float64))
        if forces:
            F.append(np.concatenate(f, axis=0))
    return np.stack(E), (np.stack(F) if forces else None)


def energy_spread(E: np.ndarray) -> np.ndarray:
    """QBC(E): the standard deviation (``ddof = 0``) over members of each structure's energy, ``(S,)``."""
    return np.asarray(E, dtype=np.float64).std(axis=0)


def force_spread(F: np.ndarray, n_atoms: Sequence[int] | np.ndarray) -> np.ndarray:
    """QBC(F): ``sqrt(mean over atoms and components of the members' variance of F)`` per structure."""
    n = np.asarray(n_atoms, dtype=np.int64)
    var = np.asarray(F, dtype=np.float64).var(axis=0).sum(axis=1)
    per_structure = np.add.reduceat(var, np.concatenate([[0], np.cumsum(n)[:-1]]))
    return np.sqrt(per_structure / (3.0 * n))
