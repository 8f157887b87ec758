"""Track B feature maps and diagonal kernels: one row per structure (STUDY §7–§8).

The energy of a structure is a sum over its atoms of ``E_i = c·(s_Z·NN(G̃_i) + μ_Z)``, so the
gradient of the structure energy with respect to any MLP parameter is the sum over atoms of the
per-atom gradients, each weighted by the atom's multiplier ``c·s_Z``. The rows produced here feed
:mod:`alhelpers.select.rules` (MAXDIAG / MAXDET / MAXDIST / LCMD) and the GP transform of
:mod:`alhelpers.select.features` unchanged.

* :func:`ll_features` — FEAT(LL): ``Σ_i c·s_Z·[h_i, 1]``, exactly the gradient of the structure
  energy with respect to the last linear layer's weights and bias, ``(S, H + 1)``.
* :func:`rp_features` — FEAT(RP): the :class:`~alhelpers.select.features.GradientSketch` of the
  full MLP gradient, per atom with the same matrices, summed per structure, ``(S, p)``. The
  sensitivities ``g⁽ˡ⁾ = ∂E_structure/∂z⁽ˡ⁾`` include ``c·s_Z`` and the SiLU derivatives.
* :func:`full_gradient_features` — the exact gradient with respect to all MLP weights and biases
  (layer by layer, ``nn.Linear`` order: weight ``(out, in)`` row-major, then bias); tiny models
  and tests only.
* :func:`qbc_energy`, :func:`qbc_forces` — QBC(E)/QBC(F): ensemble spread of energies and the
  root-mean-square ensemble spread of forces (population standard deviation, ``ddof = 0``).
* :func:`ae_energy`, :func:`ae_forces` — AE(E)/AE(F): errors against known labels, an ORACLE for
  benchmarks only.

Every function takes the structures as a :class:`~alhelpers.structures.StructureSet`,
a list of :class:`ase.Atoms` or of :class:`~alhelpers.neighbours.Graph` (pass a
:class:`~alhelpers.neighbours.GraphCache` to build each neighbour list once per AL
run), or an already frozen pool (:func:`~alhelpers.atomistic.train.freeze_structures`, which
saves re-freezing it every round at the cost of keeping its tables in memory). It works in
chunks of at most ``chunk_atoms`` atoms, so a pool of thousands of structures never has to fit
in memory at once. Results are float64 NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from ase import Atoms

from alhelpers.anymodel.committee import energy_spread, force_spread
from alhelpers.atomistic.frozen import FrozenBatch
from alhelpers.atomistic.model import AtomisticModel, chunk_structures
from alhelpers.atomistic.train import frozen_chunks, graphs_of, stored_frozen
from alhelpers.neighbours import Graph, GraphCache
from alhelpers.select.features import (
    DEFAULT_RP_DIM,
    GradientSketch,
    last_layer_gradient,
    segment_sum,
)
from alhelpers.structures import StructureSet

__all__ = [
    "ae_energy",
    "ae_forces",
    "ensemble_predictions",
    "force_rmse_per_structure",
    "full_gradient_features",
    "ll_features",
    "qbc_energy",
    "qbc_forces",
    "rp_features",
]

Structures = StructureSet | Sequence[Atoms] | Sequence[Graph]

#: Atoms per chunk (pool passes).
DEFAULT_CHUNK_ATOMS: int = 4096


def _graphs(data: Structures, cutoff: float, cache: GraphCache | None) -> list[Graph]:
    return graphs_of(data, cutoff, cache)


def _chunks(model: AtomisticModel, data: Structures | FrozenBatch, chunk_atoms: int, cache: GraphCache | None
            ) -> Iterator[FrozenBatch]:
    """Frozen chunks of ``data`` for ``model`` (a given :class:`FrozenBatch` is only split)."""
    if isinstance(data, FrozenBatch):
        yield from frozen_chunks(data, chunk_atoms)
        return
    graphs = _graphs(data, model.cutoff, cache)
    stored = stored_frozen(graphs, model.descriptor_cfg, model.dtype, model.device, cache)
    if stored is not None:
        yield from frozen_chunks(stored, chunk_atoms)
        return
    for idx in chunk_structures(graphs, chunk_atoms):
        yield model.freeze(model.collate(graphs, idx))


def ll_features(
    model: AtomisticModel, data: Structures | FrozenBatch, *, chunk_atoms: int = DEFAULT_CHUNK_ATOMS, cache: GraphCache | None = None
) -> np.ndarray:
    """FEAT(LL): ``Σ_atoms c·s_Z·[h_i, 1]`` per structure, ``(S, H + 1)``."""
    model.eval()
    rows = []
    for fb in _chunks(model, data, chunk_atoms, cache):
        out = model.atomic_outputs(fb)
        rows.append(last_layer_gradient(out.hidden, weight=out.multiplier, segments=out.structure,
                                        n_segments=out.n_structures))
    return torch.cat(rows).double().cpu().numpy()


def rp_features(
    model: AtomisticModel,
    data: Structures | FrozenBatch,
    *,
    p: int = DEFAULT_RP_DIM,
    seed: int,
    chunk_atoms: int = DEFAULT_CHUNK_ATOMS,
    cache: GraphCache | None = None,
) -> np.ndarray:
    """FEAT(RP): the seeded sketch of each structure's full MLP gradient, ``(S, p)``.

    The same :class:`GradientSketch` matrices (drawn once from ``seed``) are used for every atom
    and chunk, so the rows of different calls with one seed are comparable.
    """
    model.eval()
    sketch = GradientSketch(model.layer_dims, p=p, seed=seed, dtype=model.dtype, device=model.device)
    rows = []
    for fb in _chunks(model, data, chunk_atoms, cache):
        out = model.atomic_outputs(fb)
        rows.append(sketch.sketch(out.inputs, out.sensitivities, segments=out.structure, n_segments=out.n_structures))
    return torch.cat(rows).double().cpu().numpy()


def full_gradient_features(
    model: AtomisticModel, data: Structures | FrozenBatch, *, chunk_atoms: int = DEFAULT_CHUNK_ATOMS, cache: GraphCache | None = None
) -> np.ndarray:
    """Exact ``∂E_structure/∂θ`` for all MLP weights and biases, ``(S, n_params)`` (tiny models only).

    Order: per :class:`torch.nn.Linear` layer its weight ``(out, in)`` row-major, then its bias —
    the order of ``torch.cat([p.flatten() for p in layer.parameters()])``.
    """
    model.eval()
    rows = []
    for fb in _chunks(model, data, chunk_atoms, cache):
        out = model.atomic_outputs(fb)
        blocks = []
        for x, g in zip(out.inputs, out.sensitivities):
            blocks.append(torch.einsum("no,ni->noi", g, x).reshape(x.shape[0], -1))
            blocks.append(g)
        rows.append(segment_sum(torch.cat(blocks, dim=1), out.structure, out.n_structures))
    return torch.cat(rows).double().cpu().numpy()


# --------------------------------------------------------------------------- ensembles / oracle


def ensemble_predictions(
    models: Sequence[AtomisticModel],
    data: Structures | FrozenBatch,
    *,
    forces: bool = True,
    chunk_atoms: int = DEFAULT_CHUNK_ATOMS,
    cache: GraphCache | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Every member's energies ``(M, S)`` and forces ``(M, N, 3)`` (or None), and atoms per structure.

    Structures are frozen once per chunk and shared by all members when they use the same
    descriptor and dtype.
    """
    if len(models) == 0:
        raise ValueError("an ensemble needs at least one model")
    ref = models[0]
    for m in models:
        m.eval()
        if m.descriptor_cfg != ref.descriptor_cfg:
            raise ValueError("all ensemble members must use the same DescriptorConfig")
    E_parts, F_parts, n_parts = [], [], []
    for chunk in _chunks(ref, data, chunk_atoms, cache):
        n_parts.append(chunk.n_atoms.cpu().numpy())
        E_chunk, F_chunk = [], []
        for m in models:
            fb = chunk if (m.dtype, m.device) == (chunk.dtype, chunk.device) else chunk.to(m.dtype, m.device)
            if forces:
                E, F = m.energy_and_forces(fb)
                F_chunk.append(F.double().cpu().numpy())
            else:
                with torch.no_grad():
                    E = m(fb)
            E_chunk.append(E.detach().double().cpu().numpy())
        E_parts.append(np.stack(E_chunk))
        if forces:
            F_parts.append(np.stack(F_chunk))
    n_atoms = np.concatenate(n_parts).astype(np.int64)
    return np.concatenate(E_parts, axis=1), (np.concatenate(F_parts, axis=1) if forces else None), n_atoms


def qbc_energy(
    models: Sequence[AtomisticModel],
    data: Structures | FrozenBatch,
    *,
    per_atom: bool = False,
    chunk_atoms: int = DEFAULT_CHUNK_ATOMS,
    cache: GraphCache | None = None,
) -> np.ndarray:
    """QBC(E): ensemble standard deviation (``ddof=0``) of each structure's energy, ``(S,)`` eV.

    ``per_atom=True`` divides by the number of atoms (eV/atom).
    """
    E, _, n = ensemble_predictions(models, data, forces=False, chunk_atoms=chunk_atoms, cache=cache)
    sd = energy_spread(E)
    return sd / n if per_atom else sd


def qbc_forces(
    models: Sequence[AtomisticModel],
    data: Structures | FrozenBatch,
    *,
    chunk_atoms: int = DEFAULT_CHUNK_ATOMS,
    cache: GraphCache | None = None,
) -> np.ndarray:
    """QBC(F): ``sqrt(mean over atoms and components of the ensemble variance of F)``, ``(S,)`` eV/Å."""
    _, F, n = ensemble_predictions(models, data, forces=True, chunk_atoms=chunk_atoms, cache=cache)
    assert F is not None
    return force_spread(F, n)


def ae_energy(
    model: AtomisticModel,
    data: StructureSet,
    *,
    per_atom: bool = False,
    chunk_atoms: int = DEFAULT_CHUNK_ATOMS,
    cache: GraphCache | None = None,
) -> np.ndarray:
    """AE(E): ``|E_pred − E_label|`` per structure (eV, or eV/atom) — ORACLE, benchmarks only."""
    if not isinstance(data, StructureSet):
        raise TypeError("ae_energy needs a labelled StructureSet")
    E, _, n = ensemble_predictions([model], data, forces=False, chunk_atoms=chunk_atoms, cache=cache)
    err = np.abs(E[0] - data.energy)
    return err / n if per_atom else err


def ae_forces(
    model: AtomisticModel, data: StructureSet, *, chunk_atoms: int = DEFAULT_CHUNK_ATOMS, cache: GraphCache | None = None
) -> np.ndarray:
    """AE(F): root-mean-square force error over each structure's atoms and components (eV/Å) — ORACLE."""
    if not isinstance(data, StructureSet):
        raise TypeError("ae_forces needs a labelled StructureSet")
    if not data.has_forces:
        raise ValueError(f"the set {data.name!r} has no force labels (has_forces=False); use ae_energy")
    _, F, _ = ensemble_predictions([model], data, forces=True, chunk_atoms=chunk_atoms, cache=cache)
    assert F is not None
    return force_rmse_per_structure(F[0], data)


def force_rmse_per_structure(forces: np.ndarray | Sequence[np.ndarray], data: StructureSet) -> np.ndarray:
    """Root-mean-square force error over each structure's atoms and components (eV/Å), ``(S,)``,
    of predicted ``forces`` (all atoms stacked ``(N, 3)``, or one array per structure) against
    ``data``'s labels."""
    pred = forces if isinstance(forces, np.ndarray) else np.concatenate(list(forces), axis=0)
    n = data.n_atoms
    sq = ((pred - np.concatenate(data.forces, axis=0)) ** 2).sum(axis=1)
    per_structure = np.add.reduceat(sq, np.concatenate([[0], np.cumsum(n)[:-1]]))
    return np.sqrt(per_structure / (3.0 * n))
