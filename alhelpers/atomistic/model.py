"""The atomistic neural-network potential of Track B (STUDY §8).

The energy of a structure is a sum of atomic energies,

    ``E = Σ_i E_i``,   ``E_i = c·(s_Z·NN(G̃_i) + μ_Z)``,

where ``G̃_i`` is atom ``i``'s descriptor (:mod:`alhelpers.atomistic.descriptor`) standardised
with per-feature mean and standard deviation of the training atoms (:meth:`AtomisticModel.fit_scaler`),
``NN`` a ``d → 512 → 512 → 1`` MLP with SiLU activations shared by all elements (the descriptor
carries a one-hot code of the centre species), ``s_Z`` a learnable per-species scale (initially
1), ``μ_Z`` a per-species shift initialised by least squares of the training energies on the
composition (:meth:`AtomisticModel.init_shifts`) and ``c`` a fixed energy scale: the RMS of the
per-atom residual energy after that composition fit (floored at 1e-3 eV). Forces are
``F = −∂E/∂positions``: by autograd through the whole model, or — at fixed positions, the fast
default — by autograd through the network and an exact hand-written map from descriptor
gradients to positions (:meth:`AtomisticModel.energy_and_forces`).

The MLP is a plain list of :class:`torch.nn.Linear` layers (:attr:`AtomisticModel.layers`) so the
gradient features of :mod:`alhelpers.atomistic.features` can read each layer's inputs and output
sensitivities (:meth:`AtomisticModel.atomic_outputs`). Initialisation draws from a
:class:`torch.Generator` seeded by the ``seed`` argument (the global RNG is never touched); the
weights follow :class:`torch.nn.Linear`'s default distribution ``U(±1/√fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from torch import nn

from alhelpers.anymodel.adapter import AdapterBatch
from alhelpers.atomistic.descriptor import (
    DescriptorConfig,
    compute_descriptor,
    species_index,
)
from alhelpers.atomistic.frozen import (
    FrozenBatch,
    freeze,
    frozen_descriptor,
    frozen_descriptor_gradient,
)
from alhelpers.neighbours import Batch, Graph, GraphCache, build_graphs, collate

__all__ = ["AtomicOutputs", "AtomisticModel", "OwnPotentialAdapter", "chunk_structures", "composition_matrix"]

#: Smallest energy scale ``c`` (eV) and smallest feature standard deviation kept by the scaler.
_MIN_SCALE = 1e-3
_MIN_STD = 1e-8


@dataclass
class AtomicOutputs:
    """Per-atom quantities the gradient features need (no autograd graph attached).

    Attributes:
        structure: ``(N,)`` structure index of each atom; ``n_structures`` structures.
        multiplier: ``(N,)`` ``c·s_Z`` — ``∂E_structure/∂NN(G̃_i)``.
        hidden: ``(N, H)`` last hidden activations ``h_i`` (input of the last linear layer).
        inputs: Per linear layer ``l`` its input ``x⁽ˡ⁻¹⁾`` ``(N, d_{l-1})`` (no bias entry);
            ``inputs[0]`` is the standardised descriptor, ``inputs[-1] is hidden``.
        sensitivities: Per layer ``g⁽ˡ⁾ = ∂E_structure/∂z⁽ˡ⁾`` ``(N, d_l)`` of the pre-activations,
            including ``c·s_Z`` and the SiLU derivatives.
        atomic_energies: ``(N,)`` ``E_i``.
    """

    structure: torch.Tensor
    n_structures: int
    multiplier: torch.Tensor
    hidden: torch.Tensor
    inputs: list[torch.Tensor]
    sensitivities: list[torch.Tensor]
    atomic_energies: torch.Tensor


def composition_matrix(graphs: Sequence[Graph], species: Sequence[int]) -> np.ndarray:
    """``(S, n_species)`` counts of each species per structure (atoms of other elements ignored)."""
    sp = np.asarray(species, dtype=np.int64)
    return np.stack([(g.numbers[:, None] == sp[None, :]).sum(0) for g in graphs]).astype(np.float64)


def chunk_structures(graphs: Sequence[Graph], chunk_atoms: int) -> list[np.ndarray]:
    """Consecutive index ranges of ``graphs`` with at most ``chunk_atoms`` atoms each (≥ 1 structure)."""
    n = np.array([g.n_atoms for g in graphs], dtype=np.int64)
    chunks, start = [], 0
    while start < n.size:
        stop = start + 1
        total = n[start]
        while stop < n.size and total + n[stop] <= chunk_atoms:
            total += n[stop]
            stop += 1
        chunks.append(np.arange(start, stop))
        start = stop
    return chunks


def _silu_grad(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


class AtomisticModel(nn.Module):
    """``E = Σ_i c·(s_Z·NN(G̃_i) + μ_Z)`` with forces by autograd (see the module docstring).

    Args:
        descriptor: The descriptor configuration (species, cutoff, basis).
        hidden: Hidden layer widths of the MLP (SiLU after each).
        seed: Seed of the generator the initial weights are drawn from.
        dtype: Floating dtype of parameters and buffers (float64 by default; float32 is ~2× faster).
    """

    def __init__(
        self,
        descriptor: DescriptorConfig,
        hidden: Sequence[int] = (512, 512),
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        self.descriptor_cfg = descriptor
        self.hidden_sizes = tuple(int(h) for h in hidden)
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden_sizes}")
        self.seed = int(seed)
        dims = [descriptor.width, *self.hidden_sizes, 1]
        # skip_init: nn.Linear's own initialisation would draw from (and advance) the global RNG
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, a, b, dtype=dtype) for a, b in zip(dims[:-1], dims[1:])
        )
        gen = torch.Generator(device="cpu")
        gen.manual_seed(self.seed)
        with torch.no_grad():
            for lin in self.layers:
                bound = 1.0 / math.sqrt(lin.in_features)
                lin.weight.copy_(torch.empty(lin.weight.shape, dtype=torch.float64).uniform_(-bound, bound, generator=gen))
                lin.bias.copy_(torch.empty(lin.bias.shape, dtype=torch.float64).uniform_(-bound, bound, generator=gen))
        S = descriptor.n_species
        self.species_scale = nn.Parameter(torch.ones(S, dtype=dtype))
        self.register_buffer("species_shift", torch.zeros(S, dtype=dtype))
        self.register_buffer("energy_scale", torch.ones((), dtype=dtype))
        self.register_buffer("feature_mean", torch.zeros(descriptor.width, dtype=dtype))
        self.register_buffer("feature_std", torch.ones(descriptor.width, dtype=dtype))

    # ------------------------------------------------------------------ properties

    @property
    def dtype(self) -> torch.dtype:
        return self.species_scale.dtype

    @property
    def device(self) -> torch.device:
        return self.species_scale.device

    @property
    def species(self) -> tuple[int, ...]:
        return self.descriptor_cfg.species

    @property
    def cutoff(self) -> float:
        return self.descriptor_cfg.cutoff

    @property
    def layer_dims(self) -> list[int]:
        """``[d, H_1, ..., 1]``."""
        return [self.layers[0].in_features, *(lin.out_features for lin in self.layers)]

    def collate(self, graphs: Sequence[Graph], indices: Sequence[int] | np.ndarray | None = None) -> Batch:
        """:func:`~alhelpers.neighbours.collate` on this model's device (positions in float64)."""
        return collate(graphs, indices, dtype=torch.float64, device=self.device)

    # ------------------------------------------------------------------ fitting helpers

    def raw_descriptors(self, data: Sequence[Graph] | Batch | FrozenBatch, *, chunk_atoms: int = 8192) -> torch.Tensor:
        """Unstandardised descriptors of all atoms of ``data`` (no autograd graph), ``(N, d)``."""
        with torch.no_grad():
            if isinstance(data, FrozenBatch):
                return frozen_descriptor(self._check_frozen(data))
            if isinstance(data, Batch):
                return compute_descriptor(self.descriptor_cfg, data).to(self.dtype)
            out = [frozen_descriptor(self.freeze(self.collate(data, idx))) for idx in chunk_structures(data, chunk_atoms)]
        if not out:
            return torch.zeros(0, self.descriptor_cfg.width, dtype=self.dtype, device=self.device)
        return torch.cat(out, dim=0)

    def fit_scaler(self, data: Sequence[Graph] | Batch | FrozenBatch | torch.Tensor) -> "AtomisticModel":
        """Set the feature mean/std buffers from the training atoms.

        ``data``: the training structures (graphs or a batch) or their raw descriptors ``(N, d)``.
        Features constant on those atoms get std 1 (they only shift by the mean).
        """
        G = data if isinstance(data, torch.Tensor) else self.raw_descriptors(data)
        if G.ndim != 2 or G.shape[0] == 0 or G.shape[1] != self.descriptor_cfg.width:
            raise ValueError(f"fit_scaler needs descriptors of shape (N > 0, {self.descriptor_cfg.width}), got {tuple(G.shape)}")
        G = G.to(device=self.device, dtype=torch.float64)
        mean = G.mean(0)
        std = G.std(0, unbiased=False)
        std = torch.where(std > _MIN_STD * (1.0 + mean.abs()), std, torch.ones_like(std))
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)
        return self

    def init_shifts(self, graphs: Sequence[Graph], energies: np.ndarray, *, scale: float | None = None) -> "AtomisticModel":
        """Composition fit of the energies: set ``μ_Z`` and the energy scale ``c``.

        Least squares ``E_s ≈ Σ_Z n_{s,Z}·e_Z`` (minimum-norm when compositions are collinear,
        e.g. all stoichiometric TiO2); ``c`` is the RMS of ``(E_s − Σ_Z n_{s,Z} e_Z)/n_s`` floored
        at 1e-3 eV unless ``scale`` is given; ``μ_Z = e_Z / c``.
        """
        y = np.asarray(energies, dtype=np.float64).reshape(-1)
        if y.shape[0] != len(graphs) or y.shape[0] == 0:
            raise ValueError(f"init_shifts needs one energy per structure (got {y.shape[0]} for {len(graphs)})")
        if not np.isfinite(y).all():
            raise ValueError("init_shifts: the training energies contain NaN/inf (unlabelled structures?)")
        X = composition_matrix(graphs, self.species)
        e, *_ = np.linalg.lstsq(X, y, rcond=None)
        n = np.array([g.n_atoms for g in graphs], dtype=np.float64)
        resid = (y - X @ e) / n
        c = float(scale) if scale is not None else max(float(np.sqrt(np.mean(resid**2))), _MIN_SCALE)
        if not c > 0:
            raise ValueError(f"scale must be > 0, got {c}")
        self.energy_scale.fill_(c)
        self.species_shift.copy_(torch.as_tensor(e / c, dtype=self.dtype))
        return self

    # ------------------------------------------------------------------ evaluation

    def freeze(self, batch: Batch) -> FrozenBatch:
        """:func:`~alhelpers.atomistic.frozen.freeze` for this model's descriptor and dtype."""
        return freeze(self.descriptor_cfg, batch, dtype=self.dtype)

    def _check_frozen(self, fb: FrozenBatch) -> FrozenBatch:
        if fb.cfg != self.descriptor_cfg:
            raise ValueError(f"the frozen batch was built for {fb.cfg}, but the model uses {self.descriptor_cfg}")
        return fb if fb.dtype == self.dtype else fb.to(dtype=self.dtype)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for k, lin in enumerate(self.layers):
            x = lin(x)
            if k < last:
                x = nn.functional.silu(x)
        return x.squeeze(1)

    def _head_standardised(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic energies from standardised descriptors ``x`` and channel indices."""
        return self.energy_scale * (self.species_scale[species] * self._mlp(x) + self.species_shift[species])

    def _head(self, G: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic energies from raw descriptors ``G`` and channel indices."""
        return self._head_standardised((G.to(self.dtype) - self.feature_mean) / self.feature_std, species)

    def standardised_descriptors(self, batch: Batch | FrozenBatch) -> torch.Tensor:
        """``G̃ = (G − mean)/std`` of every atom, ``(N, d)``."""
        if isinstance(batch, FrozenBatch):
            G = frozen_descriptor(self._check_frozen(batch))
        else:
            G = compute_descriptor(self.descriptor_cfg, batch)
        return (G.to(self.dtype) - self.feature_mean) / self.feature_std

    def atomic_energies(self, batch: Batch | FrozenBatch, *, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``E_i`` of every atom, ``(N,)``; for a :class:`Batch` differentiable in ``positions``."""
        if isinstance(batch, FrozenBatch):
            fb = self._check_frozen(batch)
            return self._head(frozen_descriptor(fb), fb.species)
        sp = species_index(self.descriptor_cfg, batch.numbers)
        pos = batch.positions if positions is None else positions
        G = compute_descriptor(self.descriptor_cfg, batch, species=sp, positions=pos)
        return self._head(G, sp)

    @staticmethod
    def _sum_per_structure(batch: Batch | FrozenBatch, atomic: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch.n_structures, dtype=atomic.dtype, device=atomic.device)
        return out.index_add(0, batch.structure, atomic)

    def forward(self, batch: Batch | FrozenBatch) -> torch.Tensor:
        """Structure energies ``(S,)`` (eV)."""
        return self._sum_per_structure(batch, self.atomic_energies(batch))

    def energy_and_forces(
        self, batch: Batch | FrozenBatch, *, create_graph: bool = False, method: str = "auto"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies ``(S,)`` and forces ``F = −∂E/∂positions`` ``(N, 3)``.

        ``method="autograd"`` differentiates the whole model, descriptor included, with respect to
        the batch's positions. ``"frozen"`` (and ``"auto"``, the default) uses fixed positions:
        autograd gives ``∂E/∂G`` through the network only, and the exact linear map
        :func:`~alhelpers.atomistic.frozen.frozen_descriptor_gradient` carries it to the
        positions — the same forces several times faster and with far less memory. A
        :class:`Batch` is frozen first (:meth:`freeze`); a :class:`FrozenBatch` only supports
        ``"frozen"``/``"auto"``. ``create_graph=True`` keeps the graph of energies and forces
        (for a force loss); otherwise both results are detached.
        """
        if method not in ("auto", "frozen", "autograd"):
            raise ValueError(f"method must be 'auto', 'frozen' or 'autograd', got {method!r}")
        if method == "autograd":
            if isinstance(batch, FrozenBatch):
                raise ValueError("method='autograd' needs a Batch with positions, not a FrozenBatch")
            pos = batch.positions.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                E = self._sum_per_structure(batch, self.atomic_energies(batch, positions=pos))
                (grad,) = torch.autograd.grad(E.sum(), pos, create_graph=create_graph)
        else:
            fb = self._check_frozen(batch) if isinstance(batch, FrozenBatch) else self.freeze(batch)
            x = ((fb.descriptor - self.feature_mean) / self.feature_std).detach().requires_grad_(True)
            with torch.enable_grad():
                E = self._sum_per_structure(fb, self._head_standardised(x, fb.species))
                (v,) = torch.autograd.grad(E.sum(), x, create_graph=create_graph)
                grad = frozen_descriptor_gradient(fb, v / self.feature_std)
        if not create_graph:
            return E.detach(), -grad.detach()
        return E, -grad

    @torch.no_grad()
    def atomic_outputs(self, batch: Batch | FrozenBatch) -> AtomicOutputs:
        """Layer inputs, output sensitivities and multipliers of every atom (see :class:`AtomicOutputs`)."""
        if isinstance(batch, FrozenBatch):
            sp = self._check_frozen(batch).species
        else:
            sp = species_index(self.descriptor_cfg, batch.numbers)
        x = self.standardised_descriptors(batch)
        inputs, pre = [], []
        last = len(self.layers) - 1
        h = x
        for k, lin in enumerate(self.layers):
            inputs.append(h)
            z = lin(h)
            pre.append(z)
            if k < last:
                h = nn.functional.silu(z)
        mult = self.energy_scale * self.species_scale[sp]
        g = mult.unsqueeze(1)
        sens = [g]
        for k in range(last, 0, -1):
            g = (g @ self.layers[k].weight) * _silu_grad(pre[k - 1])
            sens.append(g)
        atomic = mult * pre[-1].squeeze(1) + self.energy_scale * self.species_shift[sp]
        return AtomicOutputs(
            structure=batch.structure,
            n_structures=batch.n_structures,
            multiplier=mult,
            hidden=inputs[-1],
            inputs=inputs,
            sensitivities=sens[::-1],
            atomic_energies=atomic,
        )

    def as_adapter(self) -> "OwnPotentialAdapter":
        """This model behind the model-agnostic interface of :mod:`alhelpers.anymodel`
        (:func:`alhelpers.anymodel.select.as_adapter` asks a model for it)."""
        return OwnPotentialAdapter(self)

    def config(self) -> dict:
        """Everything needed to rebuild an untrained copy: ``AtomisticModel(**model.config())``."""
        return {"descriptor": self.descriptor_cfg, "hidden": self.hidden_sizes, "seed": self.seed, "dtype": self.dtype}


# --------------------------------------------------------------------------- the adapter
# The project's potential behind the model-agnostic interface (:mod:`alhelpers.anymodel`): a
# structure is prepared as its neighbour graph, a batch is frozen once (:meth:`AtomisticModel.freeze`),
# the readout is the MLP's last ``nn.Linear`` and FEAT(RP) sketches the MLP's linear layers —
# exactly the features of :mod:`alhelpers.atomistic.features` (FEAT(LL) bit for bit, FEAT(RP) to
# floating-point accuracy with the same seed; a test checks both and the selections).


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
