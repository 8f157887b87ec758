"""Oracles: who labels the structures an active-learning loop selects (STUDY §8).

An :class:`Oracle` turns structures into reference-subtracted energies (eV) and forces (eV/Å):

* :class:`PoolOracle` — pool-based AL on a labelled set: the labels exist already and are only
  *revealed* when a structure is selected (counts what was revealed).
* :class:`CalculatorOracle` — on-the-fly AL: any ASE calculator labels what is selected, on demand.
  :func:`tblite_oracle` gives GFN2-xTB through tblite (the method of the offline MD set); a real
  user plugs in a DFT calculator the same way (``CalculatorOracle(lambda: Vasp(...), refs)``).

Isolated-atom references: :func:`isolated_atom_energies` computes them with the oracle's own
calculator, one atom in vacuum with its ground-state spin multiplicity
(:data:`GROUND_STATE_MULTIPLICITY`, passed as initial magnetic moments, which tblite turns into the
number of unpaired electrons).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from alhelpers.structures import StructureSet, same_structure

__all__ = [
    "Oracle",
    "OracleError",
    "PoolOracle",
    "CalculatorOracle",
    "tblite_oracle",
    "tblite_calculator",
    "isolated_atom_energies",
    "GROUND_STATE_MULTIPLICITY",
]

#: Ground-state spin multiplicity 2S+1 of free atoms (Hund's rules), for isolated-atom references.
GROUND_STATE_MULTIPLICITY: dict[str, int] = {
    "H": 2, "He": 1, "Li": 2, "Be": 1, "B": 2, "C": 3, "N": 4, "O": 3, "F": 2, "Ne": 1,
    "Na": 2, "Mg": 1, "Al": 2, "Si": 3, "P": 4, "S": 3, "Cl": 2, "Ar": 1,
    "K": 2, "Ca": 1, "Ti": 3, "Fe": 5, "Ni": 3, "Cu": 2, "Zn": 1, "Br": 2, "Mo": 7, "I": 2,
}


class OracleError(RuntimeError):
    """The oracle could not label a structure (the calculator failed, or a label is unknown)."""


@runtime_checkable
class Oracle(Protocol):
    """Labels structures: ``(energies (S,) in eV, forces: S arrays (n_atoms, 3) in eV/Å)``.

    Energies are reference-subtracted (total − Σ isolated-atom references), like
    :attr:`StructureSet.energy`.
    """

    def label(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]: ...


def _describe(atoms: Atoms, i: int) -> str:
    src = atoms.info.get("source")
    return f"structure {i} ({atoms.get_chemical_formula()}, {len(atoms)} atoms" + (
        f", {src})" if src else ")"
    )


class PoolOracle:
    """Reveal the known labels of a :class:`StructureSet` (pool-based active learning).

    ``reveal(indices)`` returns the labels by index into the set; ``label(structures)`` accepts the
    set's own :class:`ase.Atoms` objects (matched by identity, or failing that by species and
    positions). ``revealed`` is the set of indices whose labels have been given out.
    """

    def __init__(self, data: StructureSet) -> None:
        self.data = data
        self.revealed: set[int] = set()
        self.n_calls = 0
        self._by_id = {id(a): i for i, a in enumerate(data.structures)}

    def __len__(self) -> int:
        return len(self.data)

    def reveal(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Energies ``(k,)`` and forces of the structures at ``indices`` (copies)."""
        idx = [int(i) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        bad = [i for i in idx if not 0 <= i < len(self.data)]
        if bad:
            raise IndexError(f"indices {bad[:5]} outside the pool of {len(self.data)} structures")
        self.n_calls += 1
        self.revealed.update(idx)
        return self.data.energy[idx].copy(), [self.data.forces[i].copy() for i in idx]

    def index_of(self, atoms: Atoms) -> int:
        """Index of ``atoms`` in the pool (identity first, then equal species and positions)."""
        i = self._by_id.get(id(atoms))
        if i is not None:
            return i
        for j, a in enumerate(self.data.structures):
            if same_structure(a, atoms, atol=1e-8):
                return j
        raise OracleError(
            f"{_describe(atoms, -1)} is not in the pool {self.data.name!r}; a PoolOracle can only "
            "reveal labels it has. Use reveal(indices), or a CalculatorOracle for new structures."
        )

    def label(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.reveal([self.index_of(a) for a in structures])


class CalculatorOracle:
    """Label structures on demand with an ASE calculator.

    Each structure is copied, given a fresh calculator from ``calculator_factory`` and evaluated;
    the caller's objects are never modified. Energies are ``E_total − Σ references[symbol]``.

    Args:
        calculator_factory: A callable returning a new ASE calculator (e.g. ``EMT`` or
            ``lambda: TBLite(method="GFN2-xTB", verbosity=0)``).
        references: Isolated-atom energy (eV) per element symbol to subtract; every element that
            is labelled must be present. ``None``: subtract nothing (total energies).
        name: For messages and reports.

    Attributes:
        n_calls: Structures labelled so far (one calculator evaluation each).
        seconds: Wall time spent in the calculator, in total.
    """

    def __init__(
        self,
        calculator_factory: Callable[[], Calculator],
        references: Mapping[str, float] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.calculator_factory = calculator_factory
        self.references = None if references is None else {k: float(v) for k, v in references.items()}
        self.name = name or getattr(calculator_factory, "__name__", type(calculator_factory).__name__)
        self.n_calls = 0
        self.seconds = 0.0

    def _shift(self, atoms: Atoms, where: str) -> float:
        if self.references is None:
            return 0.0
        missing = sorted(set(atoms.get_chemical_symbols()) - set(self.references))
        if missing:
            raise OracleError(
                f"{where}: no isolated-atom reference for element(s) {missing} in oracle "
                f"{self.name!r} (known: {sorted(self.references)}). Pass references with them "
                "(e.g. from isolated_atom_energies(factory, symbols)) or references=None."
            )
        return float(sum(self.references[s] for s in atoms.get_chemical_symbols()))

    def label_one(self, atoms: Atoms, index: int = 0) -> tuple[float, np.ndarray]:
        """Energy (reference-subtracted) and forces of one structure."""
        where = _describe(atoms, index)
        shift = self._shift(atoms, where)
        work = atoms.copy()  # copies positions, cell, info, magmoms; drops the calculator
        t0 = time.perf_counter()
        try:
            work.calc = self.calculator_factory()
            energy = float(work.get_potential_energy())
            forces = np.array(work.get_forces(), dtype=np.float64)
        except Exception as exc:  # any calculator failure: say which structure
            raise OracleError(
                f"oracle {self.name!r} failed on {where}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self.seconds += time.perf_counter() - t0
            self.n_calls += 1
        if not np.isfinite(energy) or not np.isfinite(forces).all():
            raise OracleError(f"oracle {self.name!r} returned non-finite labels for {where}")
        return energy - shift, forces

    def label(self, structures: Sequence[Atoms]) -> tuple[np.ndarray, list[np.ndarray]]:
        energies, forces = [], []
        for i, atoms in enumerate(structures):
            e, f = self.label_one(atoms, i)
            energies.append(e)
            forces.append(f)
        return np.asarray(energies, dtype=np.float64), forces

    def label_set(self, data: StructureSet, indices: Sequence[int] | None = None) -> StructureSet:
        """A labelled copy of ``data`` (or of ``data.subset(indices)``) with this oracle's labels."""
        sub = data if indices is None else data.subset(indices)
        e, f = self.label(sub.structures)
        return StructureSet(
            name=sub.name, structures=sub.structures, energy=e, forces=f,
            references=dict(self.references or {}), has_forces=True,
            meta={**sub.meta, "oracle": self.name},
        )


def isolated_atom_energies(
    calculator_factory: Callable[[], Calculator],
    symbols: Sequence[str],
    *,
    multiplicities: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Energy (eV) of each element as one atom in vacuum, with the given calculator.

    The spin multiplicity (default :data:`GROUND_STATE_MULTIPLICITY`) is set as the atom's initial
    magnetic moment ``2S = multiplicity − 1``; tblite reads it as the number of unpaired electrons.
    Note that GFN2-xTB is not spin-polarised by default, so e.g. a triplet C or O atom lies
    ~0.05 eV *above* the fractionally occupied closed-shell solution; the references are a
    constant per element either way and only shift energies by a composition-linear term.
    """
    mult = dict(GROUND_STATE_MULTIPLICITY, **(multiplicities or {}))
    out: dict[str, float] = {}
    for sym in sorted(set(symbols)):
        if sym not in mult:
            raise ValueError(f"no spin multiplicity known for {sym!r}; pass multiplicities={{{sym!r}: 2S+1}}")
        atom = Atoms(sym, positions=[[0.0, 0.0, 0.0]], magmoms=[mult[sym] - 1])
        atom.calc = calculator_factory()
        out[sym] = float(atom.get_potential_energy())
    return out


def tblite_calculator(method: str = "GFN2-xTB", **kwargs) -> Calculator:
    """A quiet tblite ASE calculator (``tblite.ase.TBLite``); kwargs go to it."""
    try:
        from tblite.ase import TBLite
    except ImportError as exc:  # pragma: no cover - tblite is in the project environment
        raise ImportError("the tblite oracle needs `pip install tblite` (GFN-xTB methods)") from exc
    kwargs.setdefault("verbosity", 0)
    return TBLite(method=method, **kwargs)


def tblite_oracle(
    method: str = "GFN2-xTB",
    references: Mapping[str, float] | None | str = "auto",
    *,
    elements: Sequence[str] = ("H", "C", "N", "O"),
    **kwargs,
) -> CalculatorOracle:
    """A :class:`CalculatorOracle` running tblite (GFN2-xTB by default).

    Args:
        method: tblite method (``"GFN2-xTB"``, ``"GFN1-xTB"``, ``"IPEA1-xTB"``).
        references: ``"auto"`` computes isolated-atom references for ``elements`` with the same
            calculator (as the offline MD set does); ``None`` keeps total energies; or a dict.
        elements: Elements to compute references for when ``references="auto"``.
        **kwargs: Passed to ``tblite.ase.TBLite`` (e.g. ``accuracy``, ``electronic_temperature``).
    """

    def factory() -> Calculator:
        return tblite_calculator(method, **kwargs)

    factory.__name__ = f"tblite-{method}"
    if isinstance(references, str):
        if references != "auto":
            raise ValueError(f"references={references!r}: use 'auto', None or a dict")
        references = isolated_atom_energies(factory, list(elements))
    return CalculatorOracle(factory, references, name=f"tblite {method}")
