"""CHGNet (``chgnet``), a pretrained universal potential, behind the model-agnostic interface.

An optional extra: ``pip install "alhelpers[chgnet]"`` (``chgnet==0.4.2``, whose wheel carries the
pretrained weights, so everything works offline).

* :class:`ChgnetAdapter` — any CHGNet model: a structure becomes CHGNet's ``CrystalGraph``;
  energies are totals in eV (CHGNet predicts per atom); FEAT(LL) is the gradient with respect to
  the last linear map of the readout MLP (its rows are atoms: CHGNet applies the MLP before
  pooling); FEAT(RP) sketches every trainable module. CHGNet's modules act on atoms, bonds and
  angles, so batches for gradient features hold one structure each
  (``one_structure_per_batch``): every row of a batch then belongs to that structure.
* :func:`pretrained_chgnet` — the pretrained model of the wheel (CHGNet 0.3.0 by default).
* :func:`refit_reference` — refits CHGNet's per-element energy reference (its ``AtomRef``) by least
  squares to a user's energies: their DFT settings differ from the pretraining data by an
  element-wise offset, which fine-tuning the network should not have to learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from alhelpers.anymodel.adapter import AdapterBatch

try:
    from chgnet.model import CHGNet
except ImportError as err:  # pragma: no cover - exercised where chgnet is absent
    raise ImportError("CHGNet support needs the optional extra: pip install 'alhelpers[chgnet]' (chgnet==0.4.2)") from err

__all__ = ["ChgnetAdapter", "pretrained_chgnet", "refit_reference", "reference_energies"]

#: Modules left out of FEAT(RP): the fixed per-element reference (refitted, not trained), the
#: magnetic-moment head (not part of the energy) and the radial/angular basis frequencies.
_NOT_SKETCHED = ("composition_model", "site_wise", "bond_basis_expansion", "angle_basis_expansion")


class ChgnetAdapter:
    """:class:`~alhelpers.anymodel.adapter.PotentialAdapter` of a CHGNet model."""

    edge_modules: tuple[str, ...] = ()
    #: Rows of CHGNet's modules are atoms, bonds or angles: a batch for features is one structure.
    one_structure_per_batch = True

    def __init__(self, model: torch.nn.Module, *, prepared: dict | None = None) -> None:
        self.model = model
        last = [n for n, m in model.mlp.named_modules() if isinstance(m, torch.nn.Linear)][-1]
        self.readouts = (f"mlp.{last}",)
        self.head = ("mlp",)  # what fine-tuning with ``TrainConfig(freeze=True)`` trains: the readout MLP
        self.gradient_modules: tuple[str, ...] | None = tuple(
            n for n, m in model.named_modules()
            if n and any(True for _ in m.parameters(recurse=False)) and not n.startswith(_NOT_SKETCHED))
        self._prepared: dict = prepared if prepared is not None else {}

    def prepare(self, atoms: Atoms):
        hit = self._prepared.get(id(atoms))
        if hit is not None and hit[0] is atoms:
            return hit[1]
        from pymatgen.io.ase import AseAtomsAdaptor

        if not all(atoms.pbc):
            raise ValueError("CHGNet needs periodic structures (a cell and pbc on all three axes)")
        graph = self.model.graph_converter(AseAtomsAdaptor.get_structure(atoms))
        self._prepared[id(atoms)] = (atoms, graph)
        return graph

    def collate(self, items: Sequence) -> AdapterBatch:
        graphs = list(items)
        dev = next(self.model.parameters()).device
        graphs = [g.to(dev) for g in graphs]
        owners = torch.cat([torch.full((int(g.atomic_number.shape[0]),), k, dtype=torch.long, device=dev)
                            for k, g in enumerate(graphs)])
        return AdapterBatch(graphs, len(graphs), owners)

    def energies(self, batch: AdapterBatch) -> torch.Tensor:
        out = self.model(batch.data, task="e")
        return out["e"] * batch.n_atoms.to(out["e"].dtype)  # CHGNet predicts eV/atom

    def energy_and_forces(self, batch: AdapterBatch, *, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if create_graph:  # training: CHGNet's own forces, differentiable in the parameters
            out = self.model(batch.data, task="ef")
            return out["e"] * batch.n_atoms.to(out["e"].dtype), torch.cat(list(out["f"]), dim=0)
        # predictions: CHGNet differentiates its forces with create_graph=True always (for a force
        # loss), which makes its backward pass several times slower; here the energy is
        # differentiated once with respect to the fractional coordinates, x = f·L, so that
        # F = −∂E/∂x = −(∂E/∂f)·L⁻ᵀ (the lattice held fixed)
        with torch.enable_grad():
            energy = self.energies(batch)
            frac = [g.atom_frac_coord for g in batch.data]
            grads = torch.autograd.grad(energy.sum(), frac)
        forces = [-torch.linalg.solve(g.lattice.detach(), d.T).T for g, d in zip(batch.data, grads)]
        return energy.detach(), torch.cat(forces, dim=0).detach()


def pretrained_chgnet(version: str = "0.3.0", *, prepared: dict | None = None) -> ChgnetAdapter:
    """The pretrained CHGNet of the wheel (``"0.3.0"``, ``"0.2.0"`` or ``"r2scan"``), on the CPU,
    in float32, behind a :class:`ChgnetAdapter`."""
    model = CHGNet.load(model_name=version, use_device="cpu", verbose=False)
    return ChgnetAdapter(model, prepared=prepared)


def reference_energies(adapter: ChgnetAdapter) -> dict[int, float]:
    """The per-element reference energies (eV per atom of the element) of the model's ``AtomRef``."""
    w = adapter.model.composition_model.fc.weight.detach().cpu().double().numpy().reshape(-1)
    return {z: float(w[z - 1]) for z in range(1, w.size + 1)}


def refit_reference(adapter: ChgnetAdapter, structures: Sequence[Atoms], energies: np.ndarray) -> dict[int, float]:
    """Refit the per-element reference energies of the elements in ``structures`` so that the model
    matches the total ``energies`` (eV) best in least squares, the network unchanged; returns the
    shift applied to each element (eV/atom). Elements whose counts are collinear (all structures
    of one composition) share the shift in the minimum-norm way. Other elements keep theirs."""
    from alhelpers.anymodel.train import predict_adapter
    from alhelpers.structures import composition_matrix

    e = np.asarray(energies, dtype=np.float64).reshape(-1)
    if e.size != len(structures) or not np.isfinite(e).all():
        raise ValueError(f"need one finite energy per structure, got {e.size} for {len(structures)} structures")
    zs = sorted({int(z) for a in structures for z in a.numbers})
    pred = predict_adapter(adapter, list(structures), forces=False)[0]
    shift, *_ = np.linalg.lstsq(composition_matrix(structures, zs), e - pred, rcond=None)
    fc = adapter.model.composition_model.fc
    with torch.no_grad():
        for z, d in zip(zs, shift):
            fc.weight[0, z - 1] += float(d)
    return dict(zip(zs, (float(d) for d in shift)))
