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
* :func:`~alhelpers.atomistic.frozen.freeze` / :class:`~alhelpers.atomistic.frozen.FrozenBatch`
  (:mod:`alhelpers.atomistic.frozen`) — for fixed positions (a pool, a training set): the
  moments and per-edge radial/angular tables are computed once; the descriptor is a cheap
  function of the moments (:func:`descriptor_from_moments`) and forces come from an exact,
  hand-written linear map. Several times faster than differentiating the descriptor twice
  during force training, with far less memory.

This module holds the configuration and the maths shared by both paths: the per-edge basis
(:func:`edge_basis`, :func:`angular_basis`), the moments and their invariants.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from alhelpers.neighbours import Batch

__all__ = [
    "N_COMP",
    "SQRT2",
    "DescriptorConfig",
    "angular_basis",
    "check_cutoff",
    "compute_descriptor",
    "descriptor_from_moments",
    "edge_basis",
    "invariants",
    "moments",
    "species_index",
    "triu_selector",
]

#: ``√2``, the weight of the off-diagonal entries of a Voigt-stored symmetric matrix.
SQRT2 = math.sqrt(2.0)
#: Number of moment components per channel: 1 (M0) + 3 (M1) + 6 (symmetric M2, Voigt with √2).
N_COMP = 10


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


def check_cutoff(cfg: DescriptorConfig, batch: Batch) -> None:
    """ValueError when ``batch``'s neighbour lists are shorter-ranged than the descriptor's cutoff."""
    if batch.cutoff + 1e-9 < cfg.cutoff:
        raise ValueError(
            f"the batch's neighbour lists were built with cutoff {batch.cutoff} Å, smaller than the "
            f"descriptor cutoff {cfg.cutoff} Å; rebuild the graphs with cutoff={cfg.cutoff}"
        )


def angular_basis(u: torch.Tensor) -> torch.Tensor:
    """``Y(u) = [1, ux, uy, uz, ux², uy², uz², √2uxuy, √2uxuz, √2uyuz]`` along a last axis of ``u (..., 3)``.

    The Euclidean dot product of the last six entries of two moments is the Frobenius product of
    the symmetric matrices.
    """
    ux, uy, uz = u.unbind(-1)
    return torch.stack(
        [torch.ones_like(ux), ux, uy, uz, ux * ux, uy * uy, uz * uz, SQRT2 * ux * uy, SQRT2 * ux * uz, SQRT2 * uy * uz],
        dim=-1,
    )


def edge_basis(cfg: DescriptorConfig, vectors: torch.Tensor) -> torch.Tensor:
    """Per-edge moment contributions ``R_k(r)·Y_a(û)``, shape ``(E, K, 10)`` (``Y``: :func:`angular_basis`)."""
    r = torch.linalg.vector_norm(vectors, dim=1)
    u = vectors / r.unsqueeze(1)
    mu, sigma = cfg.centres()
    mu = mu.to(dtype=vectors.dtype, device=vectors.device)
    fc = 0.5 * (torch.cos((math.pi / cfg.cutoff) * r) + 1.0)
    fc = torch.where(r < cfg.cutoff, fc, torch.zeros_like(fc))
    radial = torch.exp(-0.5 * ((r.unsqueeze(1) - mu) / sigma) ** 2) * fc.unsqueeze(1)
    return radial.unsqueeze(2) * angular_basis(u).unsqueeze(1)


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
    out = torch.zeros(N * S, K, N_COMP, dtype=phi.dtype, device=phi.device)
    out = out.index_add(0, slot, phi)
    return out.reshape(N, S * K, N_COMP)


@functools.lru_cache(maxsize=32)
def triu_selector(C: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
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
    sel = triu_selector(C, M.dtype, M.device)
    g1 = torch.bmm(m1, m1.transpose(1, 2)).reshape(N, C * C) @ sel
    # Traceless M2 = P − (M0/3) I with tr P = M0 (û unit): M2:M2' = P:P' − M0·M0'/3.
    g2 = (torch.bmm(p, p.transpose(1, 2)) - m0.unsqueeze(2) * m0.unsqueeze(1) / 3.0).reshape(N, C * C) @ sel
    parts = [m0, g1, g2]
    if cfg.triple:
        x, y, z = m1.unbind(2)
        q = torch.stack([x * x, y * y, z * z, SQRT2 * x * y, SQRT2 * x * z, SQRT2 * y * z], dim=2)
        # M1ᵀ (P − M0/3 I) M1 = P:(M1⊗M1) − M0 |M1|²/3
        parts.append((p * q).sum(2) - m0 * (m1 * m1).sum(2) / 3.0)
    return torch.cat(parts, dim=1)


def descriptor_from_moments(cfg: DescriptorConfig, species: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """The raw descriptor ``(N, d)``: one-hot centre species (channel indices ``species``) and the invariants of ``M``."""
    onehot = torch.nn.functional.one_hot(species, cfg.n_species).to(M.dtype)
    return torch.cat([onehot, invariants(cfg, M)], dim=1)


def compute_descriptor(
    cfg: DescriptorConfig, batch: Batch, *, species: torch.Tensor | None = None, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """The raw (unstandardised) descriptor of every atom of ``batch``, ``(N, d)``.

    Differentiable with respect to ``positions`` (default ``batch.positions``).
    """
    check_cutoff(cfg, batch)
    sp = species_index(cfg, batch.numbers) if species is None else species
    return descriptor_from_moments(cfg, sp, moments(cfg, batch, sp, positions))
