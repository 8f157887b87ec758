"""Structures at fixed positions: the frozen batch and its exact, hand-written force maps (STUDY §8).

A pool's (or a training set's) positions never change, so everything geometric of the descriptor
(:mod:`alhelpers.atomistic.descriptor`) can be computed once by :func:`freeze`: the moments, the
descriptor and per-edge radial/angular tables, kept in a :class:`FrozenBatch`. The descriptor of
other moments is then a cheap function of them (:func:`frozen_descriptor`), and forces come from
the exact linear maps :func:`frozen_position_gradient` (``∂E/∂M`` → ``∂E/∂positions``) and
:func:`frozen_descriptor_gradient` (``∂E/∂G`` → ``∂E/∂positions``), whose adjoints — needed to
train on forces — are written out too. The numbers equal those of
:func:`~alhelpers.atomistic.descriptor.compute_descriptor` and autograd through it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from alhelpers.atomistic.descriptor import (
    N_COMP,
    SQRT2,
    DescriptorConfig,
    angular_basis,
    check_cutoff,
    descriptor_from_moments,
    species_index,
    triu_selector,
)
from alhelpers.neighbours import Batch

__all__ = [
    "FrozenBatch",
    "freeze",
    "frozen_descriptor",
    "frozen_descriptor_gradient",
    "frozen_position_gradient",
    "structure_atom_index",
]

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
        moments: ``(N, C, 10)`` moments ``M`` (M2 with its trace, see
            :func:`~alhelpers.atomistic.descriptor.moments`).
        descriptor: ``(N, d)`` the raw descriptor
            (:func:`~alhelpers.atomistic.descriptor.compute_descriptor` at these positions).
        dradial, radial_over_r: ``(N·n_species, L, K)`` ``R_k'(r)`` and ``R_k(r)/r`` of each slot's
            edges (slot = centre atom × neighbour species, ``slot = atom·n_species + species``;
            zero-padded to the longest slot ``L``).
        angular: ``(N·n_species, L, 10)`` ``Y(û)``
            (:func:`~alhelpers.atomistic.descriptor.angular_basis`; ``û = Y[..., 1:4]``).
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
        per_slot = {k: getattr(self, k).narrow(1, 0, L).index_select(0, slots) for k in self._PER_SLOT}
        per_slot["neighbour"] = per_slot["neighbour"] - shift.unsqueeze(1)
        return FrozenBatch(
            cfg=self.cfg,
            species=self.species.index_select(0, atoms),
            structure=struct_new,
            n_structures=int(idx.numel()),
            n_atoms=n_new,
            moments=self.moments.index_select(0, atoms),
            descriptor=self.descriptor.index_select(0, atoms),
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


def _angular_gradient(P: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``∇_u Σ_a P_a Y_a(u)`` for coefficients ``P (..., 10)`` (``Y`` as a polynomial in ``u``), ``(..., 3)``."""
    ux, uy, uz = u.unbind(-1)
    p = P.unbind(-1)
    gx = p[1] + 2.0 * p[4] * ux + SQRT2 * (p[7] * uy + p[8] * uz)
    gy = p[2] + 2.0 * p[5] * uy + SQRT2 * (p[7] * ux + p[9] * uz)
    gz = p[3] + 2.0 * p[6] * uz + SQRT2 * (p[8] * ux + p[9] * uy)
    return torch.stack([gx, gy, gz], dim=-1)


def _angular_gradient_adjoint(lam: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_angular_gradient` in ``P``: ``λ·∇_u Y_a(u)`` for each ``a``, ``(..., 10)``."""
    ux, uy, uz = u.unbind(-1)
    lx, ly, lz = lam.unbind(-1)
    return torch.stack(
        [
            torch.zeros_like(lx), lx, ly, lz, 2.0 * lx * ux, 2.0 * ly * uy, 2.0 * lz * uz,
            SQRT2 * (lx * uy + ly * ux), SQRT2 * (lx * uz + lz * ux), SQRT2 * (ly * uz + lz * uy),
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
    check_cutoff(cfg, batch)
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
        angular = table(angular_basis(u), torch.float64)
        # moments in float64: (slots, K, L) @ (slots, L, 10)
        M = torch.bmm(table(R, torch.float64).transpose(1, 2), angular).reshape(N, n_sp * K, N_COMP)
        G = descriptor_from_moments(cfg, sp, M)
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
    return descriptor_from_moments(fb.cfg, fb.species, moments)


# --------------------------------------------------------------------------- linear maps
#
# Forward maps (used for forces) and their adjoints (used when a loss on forces is
# back-propagated), written out by hand: autograd would build several times more temporaries.


def _edges_forward(fb: FrozenBatch, w: torch.Tensor) -> torch.Tensor:
    """Moment gradients ``w (N, C, 10)`` → ``∂(Σ w ⊙ M)/∂positions (N, 3)``."""
    N, n_sp, K = fb.n_total_atoms, fb.cfg.n_species, fb.cfg.n_radial
    ws = w.reshape(N * n_sp, K, N_COMP)
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
    return gw.reshape(N, n_sp * K, N_COMP)


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
            2.0 * q[0] * mx + SQRT2 * (q[3] * my + q[4] * mz),
            2.0 * q[1] * my + SQRT2 * (q[3] * mx + q[5] * mz),
            2.0 * q[2] * mz + SQRT2 * (q[4] * mx + q[5] * my),
        ],
        dim=-1,
    )


def _invariants_vjp(cfg: DescriptorConfig, M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(∂G/∂M)ᵀ v``: descriptor gradients ``v (N, d)`` → moment gradients ``(N, C, 10)``."""
    C, N = cfg.n_channels, M.shape[0]
    m0, m1, p = M[:, :, 0], M[:, :, 1:4], M[:, :, 4:10]
    v0, v1, v2, vt = _split_descriptor(cfg, v)
    sel_t = triu_selector(C, M.dtype, M.device).T
    U1 = (v1 @ sel_t).reshape(N, C, C)
    U2 = (v2 @ sel_t).reshape(N, C, C)
    W1, W2 = U1 + U1.transpose(1, 2), U2 + U2.transpose(1, 2)
    w_m1 = torch.bmm(W1, m1)
    w_p = torch.bmm(W2, p)
    w_m0 = v0 - torch.bmm(W2, m0.unsqueeze(2)).squeeze(2) / 3.0
    if vt is not None:
        vt3 = vt.unsqueeze(2)
        w_m1 = w_m1 + vt3 * (_two_p_m1(p, m1) - (2.0 / 3.0) * m0.unsqueeze(2) * m1)
        w_p = w_p + vt3 * angular_basis(m1)[..., 4:]
        w_m0 = w_m0 - vt * (m1 * m1).sum(2) / 3.0
    return torch.cat([w_m0.unsqueeze(2), w_m1, w_p], dim=2)


def _invariants_jvp(cfg: DescriptorConfig, M: torch.Tensor, dM: torch.Tensor) -> torch.Tensor:
    """``(∂G/∂M)·δM``: moment directions ``(N, C, 10)`` → descriptor directions ``(N, d)``."""
    C, N = cfg.n_channels, M.shape[0]
    m0, m1, p = M[:, :, 0], M[:, :, 1:4], M[:, :, 4:10]
    d0, d1, dp = dM[:, :, 0], dM[:, :, 1:4], dM[:, :, 4:10]
    sel = triu_selector(C, M.dtype, M.device)
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
            (dp * angular_basis(m1)[..., 4:]).sum(2) + (grad_m1 * d1).sum(2) - d0 * (m1 * m1).sum(2) / 3.0
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
