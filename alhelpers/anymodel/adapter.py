"""The small interface between BMDAL and any PyTorch potential: :class:`PotentialAdapter`.

BMDAL needs four things from a model whose structure energy is a sum of per-atom contributions:

1. its PyTorch module (:attr:`PotentialAdapter.model`);
2. a way to turn :class:`ase.Atoms` into the model's input, a few structures at a time
   (:meth:`~PotentialAdapter.prepare` once per structure, :meth:`~PotentialAdapter.collate` per
   batch), with the structure index of every atom (and of every edge, for message-passing
   models) in the returned :class:`AdapterBatch`;
3. the structure energies of a batch, differentiable in the parameters
   (:meth:`~PotentialAdapter.energies`), and energies with forces
   (:meth:`~PotentialAdapter.energy_and_forces`) for training and for QBC(F);
4. the names of its modules that matter for the features: :attr:`~PotentialAdapter.readouts`
   (the last layer: FEAT(LL) is the exact gradient of the structure energy with respect to
   their parameters), :attr:`~PotentialAdapter.gradient_modules` (the parameters FEAT(RP)
   sketches; ``None``: every parametrised module) and :attr:`~PotentialAdapter.edge_modules`
   (modules whose rows are edges, not atoms).

Nothing else: the feature maps (:mod:`alhelpers.anymodel.gradients`) hook the named modules,
capture each one's per-row inputs and, from one backward pass of the batch's summed energy,
each row's output sensitivity; the selection rules are :mod:`alhelpers.select`'s. An adapter is
a short file: see :mod:`alhelpers.anymodel.mace` and :class:`alhelpers.atomistic.model.OwnPotentialAdapter`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from ase import Atoms

__all__ = ["AdapterBatch", "PotentialAdapter", "batches", "chunk_by_atoms"]

#: Atoms per batch in feature and prediction passes (memory bound).
DEFAULT_MAX_ATOMS: int = 4096


@dataclass
class AdapterBatch:
    """One collated batch of structures, as the model takes it.

    Attributes:
        data: The model's input (whatever :meth:`PotentialAdapter.energies` accepts).
        n_structures: Structures in the batch.
        atom_structure: ``(N,)`` structure index (``0 … n_structures − 1``) of every atom.
        edge_structure: ``(n_edges,)`` structure index of every edge, or None without edges.
    """

    data: Any
    n_structures: int
    atom_structure: torch.Tensor
    edge_structure: torch.Tensor | None = None

    @property
    def n_atoms(self) -> torch.Tensor:
        """``(S,)`` atoms per structure."""
        return torch.bincount(self.atom_structure, minlength=self.n_structures)


@runtime_checkable
class PotentialAdapter(Protocol):
    """What BMDAL needs of a potential (see the module docstring)."""

    model: torch.nn.Module
    #: Module names (``model.named_modules()``) of the last layer: FEAT(LL).
    readouts: tuple[str, ...]
    #: Module names whose parameters FEAT(RP) sketches; None: every module that owns parameters.
    gradient_modules: tuple[str, ...] | None
    #: Module names whose rows are edges (their structure comes from ``edge_structure``).
    edge_modules: tuple[str, ...]

    def prepare(self, atoms: Atoms) -> Any:
        """One structure in the model's own per-structure form (neighbour list included)."""

    def collate(self, items: Sequence[Any]) -> AdapterBatch:
        """A batch of prepared structures."""

    def energies(self, batch: AdapterBatch) -> torch.Tensor:
        """``(S,)`` structure energies (eV), differentiable in the model's parameters."""

    def energy_and_forces(self, batch: AdapterBatch, *, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(S,)`` and forces ``(N, 3)`` (eV/Å); with ``create_graph`` both stay
        differentiable in the parameters (a force loss)."""


def chunk_by_atoms(n_atoms: Sequence[int] | np.ndarray, max_atoms: int) -> list[np.ndarray]:
    """Consecutive index ranges with at most ``max_atoms`` atoms each (at least one structure each)."""
    n = np.asarray(n_atoms, dtype=np.int64).reshape(-1)
    if max_atoms < 1:
        raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
    chunks, start = [], 0
    while start < n.size:
        stop, total = start + 1, int(n[start])
        while stop < n.size and total + n[stop] <= max_atoms:
            total += int(n[stop])
            stop += 1
        chunks.append(np.arange(start, stop))
        start = stop
    return chunks


def batches(adapter: PotentialAdapter, items: Sequence[Any], n_atoms: Sequence[int] | np.ndarray, *,
            max_atoms: int = DEFAULT_MAX_ATOMS) -> Iterator[tuple[np.ndarray, AdapterBatch]]:
    """``(positions, batch)`` for consecutive chunks of prepared ``items`` of at most ``max_atoms`` atoms."""
    for idx in chunk_by_atoms(n_atoms, max_atoms):
        yield idx, adapter.collate([items[i] for i in idx])
