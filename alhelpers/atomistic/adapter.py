"""The project's own potential behind the model-agnostic interface (:mod:`alhelpers.anymodel`).

:class:`OwnPotentialAdapter` wraps an :class:`~alhelpers.atomistic.model.AtomisticModel`: a
structure is prepared as its neighbour graph, a batch is frozen once
(:meth:`~alhelpers.atomistic.model.AtomisticModel.freeze`), the readout is the MLP's last
``nn.Linear`` and FEAT(RP) sketches the MLP's linear layers — exactly the features of
:mod:`alhelpers.atomistic.features` (FEAT(LL) bit for bit, FEAT(RP) to floating-point accuracy
with the same seed; a test checks both and the selections).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase import Atoms

from alhelpers.anymodel.adapter import AdapterBatch
from alhelpers.atomistic.model import AtomisticModel
from alhelpers.atomistic.neighbours import Graph, GraphCache, build_graphs

__all__ = ["OwnPotentialAdapter"]


class OwnPotentialAdapter:
    """:class:`~alhelpers.anymodel.adapter.PotentialAdapter` of an :class:`AtomisticModel`."""

    edge_modules: tuple[str, ...] = ()

    def __init__(self, model: AtomisticModel, *, cache: GraphCache | None = None) -> None:
        self.model = model
        self.cache = cache if cache is not None else GraphCache()
        last = len(model.layers) - 1
        self.readouts = (f"layers.{last}",)
        self.gradient_modules: tuple[str, ...] | None = tuple(f"layers.{k}" for k in range(last + 1))

    def prepare(self, atoms: Atoms) -> Graph:
        return build_graphs([atoms], self.model.cutoff, cache=self.cache)[0]

    def collate(self, items: Sequence[Graph]) -> AdapterBatch:
        fb = self.model.freeze(self.model.collate(list(items)))
        return AdapterBatch(fb, fb.n_structures, fb.structure)

    def energies(self, batch: AdapterBatch) -> torch.Tensor:
        return self.model(batch.data)

    def energy_and_forces(self, batch: AdapterBatch, *, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.energy_and_forces(batch.data, create_graph=create_graph)
