"""A smooth, invariant local descriptor in the spirit of Gaussian moments (STUDY §8).

For a centre atom ``i`` and its neighbours ``j`` within the cutoff ``r_c`` (edge vector
``r_ij``, length ``r``, direction ``û``):

* radial functions ``R_k(r) = exp(−(r − μ_k)²/(2σ²)) · f_c(r)``, ``k = 1..K``, centres ``μ_k``
  evenly spaced on ``[r_min, r_c]``, width ``σ`` = their spacing, and the cosine cutoff
  ``f_c(r) = ½(cos(πr/r_c) + 1)`` (value and slope vanish at ``r_c``, so energies and forces are
  continuous as a neighbour crosses the cutoff);
* one channel ``c = (s, k)`` per neighbour species ``s`` and radial function, ``C = S·K`` channels;
* moments per channel, summed over the neighbours of species ``s``:
  ``M0_c = Σ_j R_k``, ``M1_c = Σ_j R_k û`` (a vector), ``M2_c = Σ_j R_k (û⊗û − I/3)``
  (a traceless symmetric matrix);
* rotation-invariant contractions: ``M0_c``; ``M1_c·M1_c'`` and ``M2_c:M2_c'`` for every pair
  ``c ≤ c'`` (upper triangle, ``C(C+1)/2`` each); and the cheap triple contraction
  ``M1_cᵀ M2_c M1_c`` per channel;
* a one-hot code of the centre atom's species, so one network serves every element.

Width ``d = S + C + C(C+1) + C`` (with the triple term): with the default ``K = 7`` that is
**240** for two species (TiO2) and **507** for three. Pair contractions make the width grow as
``S²``; lower ``n_radial`` for many species.

The descriptor is a smooth function of the positions (no ``|r|`` at ``r = 0``: the neighbour
lists never contain an atom's own position), invariant to translations, rotations and
reflections (of the positions and, for periodic systems, the cell together) and permutations
of atoms. Two evaluation paths give the same numbers:

* :func:`compute_descriptor` — plain torch from the positions (``index_add`` over the edge
  list, no dense ``N × N``), differentiable (twice) by autograd: the reference, used for
  structures whose positions move (finite differences, tests).
* :func:`freeze` / :class:`FrozenBatch` — for fixed positions (a pool, a training set): the
  moments and per-edge radial/angular tables are computed once; the descriptor is a cheap
  function of the moments and forces come from the exact linear map
  :func:`frozen_descriptor_gradient` (``∂E/∂G`` → ``∂E/∂positions``; its adjoint, needed
  to train on forces, is written out too). Several times faster than differentiating the
  descriptor twice during force training, with far less memory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from alhelpers.atomistic.neighbours import Batch

__all__ = [
    "DescriptorConfig",
    "FrozenBatch",
    "compute_descriptor",
    "edge_basis",
    "freeze",
    "frozen_descriptor",
    "frozen_descriptor_gradient",
    "frozen_position_gradient",
    "invariants",
    "moments",
    "species_index",
    "structure_atom_index",
]

_SQRT2 = math.sqrt(2.0)
#: Number of moment components per channel: 1 (M0) + 3 (M1) + 6 (symmetric M2, Voigt with √2).
_N_COMP = 10


@dataclass(frozen=True)
class DescriptorConfig:
    """Hyper-parameters of the descriptor.

    Attributes:
        species: Atomic numbers the descriptor knows, in channel order (e.g. ``(8, 22)``).
        cutoff: Cutoff radius ``r_c`` (Å). 6 Å suits oxides (TiO2).
        n_radial: Gaussians per neighbour species ``K``.
        r_min: Centre of the first Gaussian (Å).
        triple: Add the per-channel triple contraction ``M1ᵀ M2 M1``.
    """

    species: tuple[int, ...]
    cutoff: float = 6.0
    n_radial: int = 7
    r_min: float = 0.5
    triple: bool = True

    def __post_init__(self) -> None:
        sp = tuple(int(z) for z in self.species)
        if not sp:
            raise ValueError("DescriptorConfig.species must name at least one element")
        if len(set(sp)) != len(sp) or any(not 1 <= z <= 118 for z in sp):
            raise ValueError(f"DescriptorConfig.species must be distinct atomic numbers 1..118, got {sp}")
        object.__setattr__(self, "species", sp)
        if not self.cutoff > self.r_min >= 0:
            raise ValueError(f"need cutoff > r_min >= 0, got cutoff={self.cutoff}, r_min={self.r_min}")
        if self.n_radial < 2:
            raise ValueError(f"n_radial must be >= 2, got {self.n_radial}")

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def n_channels(self) -> int:
        """``C = S·K``."""
        return self.n_species * self.n_radial

    @property
    def width(self) -> int:
        """Descriptor length ``d``."""
        C = self.n_channels
        return self.n_species + C + C * (C + 1) + (C if self.triple else 0)

    def centres(self) -> tuple[torch.Tensor, float]:
        """Gaussian centres ``(K,)`` (float64) and width ``σ``."""
        mu = torch.linspace(self.r_min, self.cutoff, self.n_radial, dtype=torch.float64)
        return mu, (self.cutoff - self.r_min) / (self.n_radial - 1)

    def labels(self) -> list[str]:
        """A name per descriptor entry, in order."""
        names = [f"Z{z}" for z in self.species]
        ch = [f"{z}_{k}" for z in self.species for k in range(self.n_radial)]
        names += [f"M0[{c}]" for c in ch]
        C = len(ch)
        iu = torch.triu_indices(C, C)
        names += [f"M1[{ch[a]}.{ch[b]}]" for a, b in iu.T.tolist()]
        names += [f"M2[{ch[a]}:{ch[b]}]" for a, b in iu.T.tolist()]
        if self.triple:
            names += [f"M121[{c}]" for c in ch]
        return names


def species_index(cfg: DescriptorConfig, numbers: torch.Tensor) -> torch.Tensor:
    """Map atomic numbers to channel indices ``0..S-1``; unknown elements raise a clear error."""
    lut = torch.full((119,), -1, dtype=torch.long, device=numbers.device)
    lut[torch.tensor(cfg.species, dtype=torch.long, device=numbers.device)] = torch.arange(
        cfg.n_species, device=numbers.device
    )
    if numbers.numel() and (int(numbers.min()) < 0 or int(numbers.max()) > 118):
        raise ValueError(f"atomic numbers out of range 0..118: {sorted(set(numbers.tolist()))}")
    idx = lut[numbers]
    if bool((idx < 0).any()):
        from ase.data import chemical_symbols

        unknown = sorted({int(z) for z in numbers[idx < 0].tolist()})
        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
        known = ", ".join(chemical_symbols[z] for z in cfg.species)
        raise ValueError(
            f"unknown species {names}: the model only knows {known}. Train a model whose "
            f"DescriptorConfig.species includes every element of the pool (pass species=pool.species "
            f"to fit_potential), or leave these structures out"
        )
    return idx


def edge_basis(cfg: DescriptorConfig, vectors: torch.Tensor) -> torch.Tensor:
    """Per-edge moment contributions ``R_k(r)·Y_a(û)``, shape ``(E, K, 10)``.

    ``Y = [1, ûx, ûy, ûz, ûx², ûy², ûz², √2ûxûy, √2ûxûz, √2ûyûz]``: the Euclidean dot product of
    the last six entries of two moments is the Frobenius product of the symmetric matrices.
    """
    r = torch.linalg.vector_norm(vectors, dim=1)
    u = vectors / r.unsqueeze(1)
    mu, sigma = cfg.centres()
    mu = mu.to(dtype=vectors.dtype, device=vectors.device)
    fc = 0.5 * (torch.cos((math.pi / cfg.cutoff) * r) + 1.0)
    fc = torch.where(r < cfg.cutoff, fc, torch.zeros_like(fc))
    radial = torch.exp(-0.5 * ((r.unsqueeze(1) - mu) / sigma) ** 2) * fc.unsqueeze(1)
    ux, uy, uz = u.unbind(1)
    Y = torch.stack(
        [torch.ones_like(ux), ux, uy, uz, ux * ux, uy * uy, uz * uz, _SQRT2 * ux * uy, _SQRT2 * ux * uz, _SQRT2 * uy * uz],
        dim=1,
    )
    return radial.unsqueeze(2) * Y.unsqueeze(1)


def moments(cfg: DescriptorConfig, batch: Batch, species: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Moments per atom and channel, ``(N, C, 10)`` (M0, M1, and M2 *before* removing the trace).

    ``species`` is the channel index of every atom (:func:`species_index`); ``positions``
    defaults to ``batch.positions``.
    """
    pos = batch.positions if positions is None else positions
    vec = pos[batch.edge_j] - pos[batch.edge_i] + batch.shift_vectors
    phi = edge_basis(cfg, vec)
    S, K, N = cfg.n_species, cfg.n_radial, pos.shape[0]
    slot = batch.edge_i * S + species[batch.edge_j]
    out = torch.zeros(N * S, K, _N_COMP, dtype=phi.dtype, device=phi.device)
    out = out.index_add(0, slot, phi)
    return out.reshape(N, S * K, _N_COMP)


@functools.lru_cache(maxsize=32)
def _triu_selector(C: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(C·C, C(C+1)/2)`` 0/1 matrix picking the upper triangle of a flattened ``C × C`` matrix.

    A matrix product instead of advanced indexing: much cheaper to differentiate (twice).
    """
    iu0, iu1 = torch.triu_indices(C, C)
    sel = torch.zeros(C * C, iu0.numel(), dtype=dtype)
    sel[iu0 * C + iu1, torch.arange(iu0.numel())] = 1.0
    return sel.to(device)


def invariants(cfg: DescriptorConfig, M: torch.Tensor) -> torch.Tensor:
    """Rotation invariants ``[M0, M1·M1 (triu), M2:M2 (triu), M1ᵀM2M1]`` from moments ``(N, C, 10)``."""
    C = cfg.n_channels
    N = M.shape[0]
    m0 = M[:, :, 0]
    m1 = M[:, :, 1:4]
    p = M[:, :, 4:10]
    sel = _triu_selector(C, M.dtype, M.device)
    g1 = torch.bmm(m1, m1.transpose(1, 2)).reshape(N, C * C) @ sel
    # Traceless M2 = P − (M0/3) I with tr P = M0 (û unit): M2:M2' = P:P' − M0·M0'/3.
    g2 = (torch.bmm(p, p.transpose(1, 2)) - m0.unsqueeze(2) * m0.unsqueeze(1) / 3.0).reshape(N, C * C) @ sel
    parts = [m0, g1, g2]
    if cfg.triple:
        x, y, z = m1.unbind(2)
        q = torch.stack([x * x, y * y, z * z, _SQRT2 * x * y, _SQRT2 * x * z, _SQRT2 * y * z], dim=2)
        # M1ᵀ (P − M0/3 I) M1 = P:(M1⊗M1) − M0 |M1|²/3
        parts.append((p * q).sum(2) - m0 * (m1 * m1).sum(2) / 3.0)
    return torch.cat(parts, dim=1)


def compute_descriptor(
    cfg: DescriptorConfig, batch: Batch, *, species: torch.Tensor | None = None, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """The raw (unstandardised) descriptor of every atom of ``batch``, ``(N, d)``.

    Differentiable with respect to ``positions`` (default ``batch.positions``).
    """
    if batch.cutoff + 1e-9 < cfg.cutoff:
        raise ValueError(
            f"the batch's neighbour lists were built with cutoff {batch.cutoff} Å, smaller than the "
            f"descriptor cutoff {cfg.cutoff} Å; rebuild the graphs with cutoff={cfg.cutoff}"
        )
    sp = species_index(cfg, batch.numbers) if species is None else species
    M = moments(cfg, batch, sp, positions)
    onehot = torch.nn.functional.one_hot(sp, cfg.n_species).to(M.dtype)
    return torch.cat([onehot, invariants(cfg, M)], dim=1)


# --------------------------------------------------------------------------- frozen geometry
#
# A pool's positions never change, so everything geometric can be computed once: the moments
# M, the descriptor G and, per edge, R_k'(r), R_k(r)/r and Y(û). Forces then only need the chain
# rule from v = ∂E/∂G (autograd through the network) to the positions, which is *linear* in v:
# first w = (∂G/∂M)ᵀ v per atom, then per edge
#
#   ∂E/∂r_ij = û·Σ_k R_k'(r) (w_k·Y(û)) + (I − ûûᵀ)/r · ∇_u[Σ_k R_k(r) w_k·Y(u)]
#
# (w_k = w[i, (s_j, k), :]). Edges are grouped by *slot* (centre atom, neighbour species) and
# padded to the longest slot, so the radial contraction Σ_k R_k w_k is one batched matrix product
# (slots × L × K)·(slots × K × 10) and no (edges × K × 10) tensor is ever built. A loss on the
# forces is back-propagated through the hand-written adjoint of this map (force training); both
# are checked against autograd and torch.autograd.gradcheck in the tests.


@dataclass(eq=False)
class FrozenBatch:
    """Structures at fixed positions, prepared for fast energies and forces (see :func:`freeze`).

    Attributes:
        cfg: The descriptor configuration the tables were built for.
        species: ``(N,)`` channel index of each atom's element.
        structure: ``(N,)`` structure index of each atom (``0..S-1``); ``n_structures`` = S.
        n_atoms: ``(S,)`` atoms per structure.
        moments: ``(N, C, 10)`` moments ``M`` (M2 with its trace, see :func:`moments`).
        descriptor: ``(N, d)`` the raw descriptor (:func:`compute_descriptor` at these positions).
        dradial, radial_over_r: ``(N·n_species, L, K)`` ``R_k'(r)`` and ``R_k(r)/r`` of each slot's
            edges (slot = centre atom × neighbour species, ``slot = atom·n_species + species``;
            zero-padded to the longest slot ``L``).
        angular: ``(N·n_species, L, 10)`` ``Y(û)`` (see :func:`edge_basis`; ``û = Y[..., 1:4]``).
        neighbour: ``(N·n_species, L)`` neighbour atom index (padding points at the centre atom).
        slot_len: ``(S,)`` longest slot of each structure (to trim ``L`` for subsets).
    """

    cfg: DescriptorConfig
    species: torch.Tensor
    structure: torch.Tensor
    n_structures: int
    n_atoms: torch.Tensor
    moments: torch.Tensor
    descriptor: torch.Tensor
    dradial: torch.Tensor
    radial_over_r: torch.Tensor
    angular: torch.Tensor
    neighbour: torch.Tensor
    slot_len: torch.Tensor

    _PER_ATOM = ("species", "structure", "moments", "descriptor")
    _PER_SLOT = ("dradial", "radial_over_r", "angular", "neighbour")

    @property
    def n_total_atoms(self) -> int:
        return int(self.species.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.moments.dtype

    @property
    def device(self) -> torch.device:
        return self.moments.device

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> "FrozenBatch":
        """A copy with floating tensors in ``dtype`` and all tensors on ``device``."""
        dt = dtype or self.dtype

        def f(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=dt if t.is_floating_point() else t.dtype)

        fields = {k: f(getattr(self, k)) for k in (*self._PER_ATOM, *self._PER_SLOT, "n_atoms", "slot_len")}
        return FrozenBatch(cfg=self.cfg, n_structures=self.n_structures, **fields)

    def select(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> "FrozenBatch":
        """The structures at ``indices`` (in that order) as a new batch (vectorised gathers)."""
        dev = self.species.device
        if isinstance(indices, torch.Tensor):
            idx = indices.to(device=dev, dtype=torch.long).reshape(-1)
        else:
            idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1), device=dev)
        if idx.numel() == 0:
            raise ValueError("cannot select an empty set of structures")
        n_sp = self.cfg.n_species
        atoms, struct_new = structure_atom_index(self.n_atoms, idx)
        old_start = torch.cumsum(self.n_atoms, 0) - self.n_atoms
        n_new = self.n_atoms[idx]
        new_start = torch.cumsum(n_new, 0) - n_new
        slots = (atoms.unsqueeze(1) * n_sp + torch.arange(n_sp, device=dev)).reshape(-1)
        L = max(int(self.slot_len[idx].max()), 1)
        shift = (old_start[idx] - new_start)[struct_new].repeat_interleave(n_sp)
        per_slot = {k: getattr(self, k)[slots, :L] for k in self._PER_SLOT}
        per_slot["neighbour"] = per_slot["neighbour"] - shift.unsqueeze(1)
        return FrozenBatch(
            cfg=self.cfg,
            species=self.species[atoms],
            structure=struct_new,
            n_structures=int(idx.numel()),
            n_atoms=n_new,
            moments=self.moments[atoms],
            descriptor=self.descriptor[atoms],
            slot_len=self.slot_len[idx],
            **per_slot,
        )


def structure_atom_index(n_atoms: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Atom rows of the structures ``indices`` in a concatenation with ``n_atoms`` per structure.

    Returns the row index of every selected atom (structures in the order of ``indices``) and
    its new structure index ``0..len(indices)-1``.
    """
    idx = torch.as_tensor(indices, dtype=torch.long, device=n_atoms.device)
    start = torch.cumsum(n_atoms, 0) - n_atoms
    n_new = n_atoms[idx]
    struct_new = torch.repeat_interleave(torch.arange(idx.numel(), device=n_atoms.device), n_new)
    new_start = torch.cumsum(n_new, 0) - n_new
    rows = torch.arange(int(n_new.sum()), device=n_atoms.device) - new_start[struct_new] + start[idx][struct_new]
    return rows, struct_new


def _radial_and_derivative(cfg: DescriptorConfig, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sigma = cfg.centres()
    mu = mu.to(dtype=r.dtype, device=r.device)
    inside = r < cfg.cutoff
    arg = (math.pi / cfg.cutoff) * r
    fc = torch.where(inside, 0.5 * (torch.cos(arg) + 1.0), torch.zeros_like(r))
    dfc = torch.where(inside, -0.5 * (math.pi / cfg.cutoff) * torch.sin(arg), torch.zeros_like(r))
    d = (r.unsqueeze(1) - mu) / sigma
    g = torch.exp(-0.5 * d * d)
    R = g * fc.unsqueeze(1)
    dR = g * (dfc.unsqueeze(1) - (d / sigma) * fc.unsqueeze(1))
    return R, dR


def _angular(u: torch.Tensor) -> torch.Tensor:
    ux, uy, uz = u.unbind(-1)
    return torch.stack(
        [torch.ones_like(ux), ux, uy, uz, ux * ux, uy * uy, uz * uz, _SQRT2 * ux * uy, _SQRT2 * ux * uz, _SQRT2 * uy * uz],
        dim=-1,
    )


def _angular_gradient(P: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``∇_u Σ_a P_a Y_a(u)`` for coefficients ``P (..., 10)`` (``Y`` as a polynomial in ``u``), ``(..., 3)``."""
    ux, uy, uz = u.unbind(-1)
    p = P.unbind(-1)
    gx = p[1] + 2.0 * p[4] * ux + _SQRT2 * (p[7] * uy + p[8] * uz)
    gy = p[2] + 2.0 * p[5] * uy + _SQRT2 * (p[7] * ux + p[9] * uz)
    gz = p[3] + 2.0 * p[6] * uz + _SQRT2 * (p[8] * ux + p[9] * uy)
    return torch.stack([gx, gy, gz], dim=-1)


def _angular_gradient_adjoint(lam: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_angular_gradient` in ``P``: ``λ·∇_u Y_a(u)`` for each ``a``, ``(..., 10)``."""
    ux, uy, uz = u.unbind(-1)
    lx, ly, lz = lam.unbind(-1)
    return torch.stack(
        [
            torch.zeros_like(lx), lx, ly, lz, 2.0 * lx * ux, 2.0 * ly * uy, 2.0 * lz * uz,
            _SQRT2 * (lx * uy + ly * ux), _SQRT2 * (lx * uz + lz * ux), _SQRT2 * (ly * uz + lz * uy),
        ],
        dim=-1,
    )


#: Polynomial degree of each entry of ``Y`` (``u·∇_u Y_a = degree_a·Y_a``).
_DEGREE = (0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)


def freeze(cfg: DescriptorConfig, batch: Batch, *, dtype: torch.dtype | None = None) -> FrozenBatch:
    """Precompute moments, descriptor and slot tables of ``batch`` at its current positions.

    The geometry, moments and descriptor are evaluated in float64 and stored in ``dtype``
    (default: the batch's).
    """
    if batch.cutoff + 1e-9 < cfg.cutoff:
        raise ValueError(
            f"the batch's neighbour lists were built with cutoff {batch.cutoff} Å, smaller than the "
            f"descriptor cutoff {cfg.cutoff} Å; rebuild the graphs with cutoff={cfg.cutoff}"
        )
    dt = dtype or batch.positions.dtype
    dev = batch.positions.device
    sp = species_index(cfg, batch.numbers)
    N, n_sp, K = batch.n_total_atoms, cfg.n_species, cfg.n_radial
    with torch.no_grad():
        pos = batch.positions.detach().double()
        vec = pos[batch.edge_j] - pos[batch.edge_i] + batch.shift_vectors.double()
        r = torch.linalg.vector_norm(vec, dim=1)
        keep = r < cfg.cutoff
        if not bool(keep.all()):
            vec, r = vec[keep], r[keep]
            ei, ej = batch.edge_i[keep], batch.edge_j[keep]
        else:
            ei, ej = batch.edge_i, batch.edge_j
        slot = ei * n_sp + sp[ej]
        order = torch.argsort(slot, stable=True)
        slot_o, vec, r, ej = slot[order], vec[order], r[order], ej[order]
        counts = torch.bincount(slot_o, minlength=N * n_sp)
        L = max(int(counts.max()) if counts.numel() else 0, 1)
        start = torch.cumsum(counts, 0) - counts
        flat = slot_o * L + torch.arange(slot_o.numel(), device=dev) - start[slot_o]

        def table(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
            out = torch.zeros(N * n_sp * L, *values.shape[1:], dtype=dtype, device=dev)
            return out.index_copy_(0, flat, values.to(dtype)).reshape(N * n_sp, L, *values.shape[1:])

        R, dR = _radial_and_derivative(cfg, r)
        u = vec / r.unsqueeze(1)
        angular = table(_angular(u), torch.float64)
        # moments in float64: (slots, K, L) @ (slots, L, 10)
        M = torch.bmm(table(R, torch.float64).transpose(1, 2), angular).reshape(N, n_sp * K, _N_COMP)
        onehot = torch.nn.functional.one_hot(sp, n_sp).to(M.dtype)
        G = torch.cat([onehot, invariants(cfg, M)], dim=1)
        neighbour = torch.arange(N, device=dev).repeat_interleave(n_sp * L)  # padding: the centre atom
        neighbour = neighbour.index_copy_(0, flat, ej).reshape(N * n_sp, L)
        slot_structure = batch.structure.repeat_interleave(n_sp)
        slot_len = torch.zeros(batch.n_structures, dtype=torch.long, device=dev)
        slot_len = slot_len.scatter_reduce(0, slot_structure, counts, reduce="amax")
        return FrozenBatch(
            cfg=cfg, species=sp, structure=batch.structure, n_structures=batch.n_structures, n_atoms=batch.n_atoms,
            moments=M.to(dt), descriptor=G.to(dt), dradial=table(dR, dt), radial_over_r=table(R / r.unsqueeze(1), dt),
            angular=angular.to(dt), neighbour=neighbour,
            slot_len=slot_len,
        )


def frozen_descriptor(fb: FrozenBatch, moments: torch.Tensor | None = None) -> torch.Tensor:
    """The raw descriptor ``(N, d)``: the stored one, or recomputed from the given ``moments``."""
    if moments is None:
        return fb.descriptor
    onehot = torch.nn.functional.one_hot(fb.species, fb.cfg.n_species).to(moments.dtype)
    return torch.cat([onehot, invariants(fb.cfg, moments)], dim=1)


# --------------------------------------------------------------------------- linear maps
#
# Forward maps (used for forces) and their adjoints (used when a loss on forces is
# back-propagated), written out by hand: autograd would build several times more temporaries.


def _edges_forward(fb: FrozenBatch, w: torch.Tensor) -> torch.Tensor:
    """Moment gradients ``w (N, C, 10)`` → ``∂(Σ w ⊙ M)/∂positions (N, 3)``."""
    N, n_sp, K = fb.n_total_atoms, fb.cfg.n_species, fb.cfg.n_radial
    ws = w.reshape(N * n_sp, K, _N_COMP)
    A = torch.bmm(fb.dradial, ws)  # Σ_k R'_k w_k      (slots, L, 10)
    P = torch.bmm(fb.radial_over_r, ws)  # Σ_k R_k/r w_k
    Y = fb.angular
    degree = torch.tensor(_DEGREE, dtype=Y.dtype, device=Y.device)
    # ∂Φ/∂r = û (A·Y − P·(degree⊙Y)) + ∇_u(P·Y)      (the second term is tangential)
    s = ((A - P * degree) * Y).sum(-1, keepdim=True)
    g = _angular_gradient(P, Y[..., 1:4])
    f = torch.addcmul(g, Y[..., 1:4], s)
    grad = torch.zeros(N, 3, dtype=f.dtype, device=f.device).index_add_(0, fb.neighbour.reshape(-1), f.reshape(-1, 3))
    return grad - f.sum(1).reshape(N, n_sp, 3).sum(1)


def _edges_adjoint(fb: FrozenBatch, gamma: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_edges_forward`: ``γ (N, 3)`` → ``(N, C, 10)``."""
    N, n_sp, K = fb.n_total_atoms, fb.cfg.n_species, fb.cfg.n_radial
    NS, L = fb.neighbour.shape
    Y = fb.angular
    degree = torch.tensor(_DEGREE, dtype=Y.dtype, device=Y.device)
    gam = gamma[fb.neighbour.reshape(-1)].reshape(NS, L, 3) - gamma.repeat_interleave(n_sp, dim=0).unsqueeze(1)
    dt = (gam * Y[..., 1:4]).sum(-1, keepdim=True)
    dA = dt * Y
    dP = _angular_gradient_adjoint(gam, Y[..., 1:4]) - dt * (Y * degree)
    gw = torch.bmm(fb.dradial.transpose(1, 2), dA)
    gw = gw.baddbmm_(fb.radial_over_r.transpose(1, 2), dP)
    return gw.reshape(N, n_sp * K, _N_COMP)


def _split_descriptor(cfg: DescriptorConfig, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    S, C = cfg.n_species, cfg.n_channels
    n_pairs = C * (C + 1) // 2
    v0 = v[:, S : S + C]
    v1 = v[:, S + C : S + C + n_pairs]
    v2 = v[:, S + C + n_pairs : S + C + 2 * n_pairs]
    vt = v[:, S + C + 2 * n_pairs :] if cfg.triple else None
    return v0, v1, v2, vt


def _two_p_m1(p: torch.Tensor, m1: torch.Tensor) -> torch.Tensor:
    """``2·P·M1`` per channel for Voigt-stored ``p = [xx, yy, zz, √2xy, √2xz, √2yz]``."""
    mx, my, mz = m1.unbind(-1)
    q = p.unbind(-1)
    return torch.stack(
        [
            2.0 * q[0] * mx + _SQRT2 * (q[3] * my + q[4] * mz),
            2.0 * q[1] * my + _SQRT2 * (q[3] * mx + q[5] * mz),
            2.0 * q[2] * mz + _SQRT2 * (q[4] * mx + q[5] * my),
        ],
        dim=-1,
    )


def _invariants_vjp(cfg: DescriptorConfig, M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(∂G/∂M)ᵀ v``: descriptor gradients ``v (N, d)`` → moment gradients ``(N, C, 10)``."""
    C, N = cfg.n_channels, M.shape[0]
    m0, m1, p = M[:, :, 0], M[:, :, 1:4], M[:, :, 4:10]
    v0, v1, v2, vt = _split_descriptor(cfg, v)
    sel_t = _triu_selector(C, M.dtype, M.device).T
    U1 = (v1 @ sel_t).reshape(N, C, C)
    U2 = (v2 @ sel_t).reshape(N, C, C)
    W1, W2 = U1 + U1.transpose(1, 2), U2 + U2.transpose(1, 2)
    w_m1 = torch.bmm(W1, m1)
    w_p = torch.bmm(W2, p)
    w_m0 = v0 - torch.bmm(W2, m0.unsqueeze(2)).squeeze(2) / 3.0
    if vt is not None:
        vt3 = vt.unsqueeze(2)
        w_m1 = w_m1 + vt3 * (_two_p_m1(p, m1) - (2.0 / 3.0) * m0.unsqueeze(2) * m1)
        w_p = w_p + vt3 * _angular(m1)[..., 4:]
        w_m0 = w_m0 - vt * (m1 * m1).sum(2) / 3.0
    return torch.cat([w_m0.unsqueeze(2), w_m1, w_p], dim=2)


def _invariants_jvp(cfg: DescriptorConfig, M: torch.Tensor, dM: torch.Tensor) -> torch.Tensor:
    """``(∂G/∂M)·δM``: moment directions ``(N, C, 10)`` → descriptor directions ``(N, d)``."""
    C, N = cfg.n_channels, M.shape[0]
    m0, m1, p = M[:, :, 0], M[:, :, 1:4], M[:, :, 4:10]
    d0, d1, dp = dM[:, :, 0], dM[:, :, 1:4], dM[:, :, 4:10]
    sel = _triu_selector(C, M.dtype, M.device)
    X1 = torch.bmm(d1, m1.transpose(1, 2))
    X2 = torch.bmm(dp, p.transpose(1, 2)) - d0.unsqueeze(2) * m0.unsqueeze(1) / 3.0
    parts = [
        torch.zeros(N, cfg.n_species, dtype=M.dtype, device=M.device),
        d0,
        (X1 + X1.transpose(1, 2)).reshape(N, C * C) @ sel,
        (X2 + X2.transpose(1, 2)).reshape(N, C * C) @ sel,
    ]
    if cfg.triple:
        grad_m1 = _two_p_m1(p, m1) - (2.0 / 3.0) * m0.unsqueeze(2) * m1
        parts.append(
            (dp * _angular(m1)[..., 4:]).sum(2) + (grad_m1 * d1).sum(2) - d0 * (m1 * m1).sum(2) / 3.0
        )
    return torch.cat(parts, dim=1)


class _MomentForces(torch.autograd.Function):
    """``w ↦ ∂(Σ w ⊙ M)/∂positions`` (linear in ``w``) with its hand-written adjoint."""

    @staticmethod
    def forward(ctx, w, fb):  # type: ignore[override]
        ctx.fb = fb
        return _edges_forward(fb, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gamma):  # type: ignore[override]
        return _edges_adjoint(ctx.fb, gamma), None


class _DescriptorForces(torch.autograd.Function):
    """``v ↦ ∂(Σ v ⊙ G)/∂positions`` (linear in ``v``) with its hand-written adjoint."""

    @staticmethod
    def forward(ctx, v, fb):  # type: ignore[override]
        ctx.fb = fb
        return _edges_forward(fb, _invariants_vjp(fb.cfg, fb.moments, v))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gamma):  # type: ignore[override]
        fb = ctx.fb
        return _invariants_jvp(fb.cfg, fb.moments, _edges_adjoint(fb, gamma)), None


def frozen_position_gradient(fb: FrozenBatch, w: torch.Tensor) -> torch.Tensor:
    """``∂(Σ w ⊙ M)/∂positions`` ``(N, 3)`` for moment gradients ``w = ∂E/∂M`` ``(N, C, 10)``.

    Linear in ``w``; autograd back-propagates a loss on the result into ``w`` through a
    hand-written adjoint. Differentiable once: enough for force training, not for second
    derivatives of the forces.
    """
    return _MomentForces.apply(w, fb)


def frozen_descriptor_gradient(fb: FrozenBatch, v: torch.Tensor) -> torch.Tensor:
    """``∂(Σ v ⊙ G)/∂positions`` ``(N, 3)`` for descriptor gradients ``v = ∂E/∂G`` ``(N, d)``.

    The composition of the invariants' Jacobian (transposed) and :func:`frozen_position_gradient`,
    both hand-written (as is the adjoint), so force training differentiates neither the
    descriptor nor its invariants twice.
    """
    return _DescriptorForces.apply(v, fb)
