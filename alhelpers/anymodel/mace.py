"""MACE (``mace-torch``) behind the model-agnostic interface: an optional extra.

Install it with ``pip install "alhelpers[mace]"`` (``mace-torch==0.3.16``, which pins
``e3nn==0.4.4``). This module imports ``mace`` before ``e3nn``: the other order fails to load
e3nn's constants under torch ≥ 2.6.

* :class:`MaceAdapter` — any MACE model (``ScaleShiftMACE``/``MACE``, trained here or loaded
  from a file): structures become MACE's ``AtomicData`` graphs; FEAT(LL) is the gradient with
  respect to the last linear map of every readout (one per interaction); FEAT(RP) sketches every
  parameter (the radial networks' rows are edges).
* :func:`small_mace` — a small invariant MACE that trains on a CPU in minutes (16 channels,
  ``L = 0`` messages, 2 interactions, correlation 2, ``r_max`` 5 Å), with composition-fitted
  atomic energies and the force-RMS scale of MACE's own statistics helpers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from alhelpers.anymodel.adapter import AdapterBatch

#: Warnings mace-torch / e3nn raise on every import or model construction that say nothing to a user.
_NOISE = ("Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "The TorchScript type system")
for _text in _NOISE:
    warnings.filterwarnings("ignore", message=_text, category=UserWarning)

try:  # mace first: it sets up torch.load for e3nn's constants (import order matters)
    import mace  # noqa: F401
    from mace import data as mace_data
    from mace import modules as mace_modules
    from mace.tools import AtomicNumberTable, torch_geometric
except ImportError as err:  # pragma: no cover - exercised where mace-torch is absent
    raise ImportError("MACE support needs the optional extra: pip install 'alhelpers[mace]' "
                      "(mace-torch==0.3.16, which brings e3nn==0.4.4)") from err
from e3nn import o3  # noqa: E402  (after mace, see above)

__all__ = ["MaceAdapter", "small_mace"]


class MaceAdapter:
    """:class:`~alhelpers.anymodel.adapter.PotentialAdapter` of a MACE model.

    Args:
        model: A MACE model (single head).
        readouts: FEAT(LL)'s modules; default the last linear map of each readout block.
        prepared: A dict to keep prepared structures in (share one between adapters of the same
            elements and cutoff, e.g. the models of an AL run, to build each graph once).
    """

    gradient_modules: tuple[str, ...] | None = None

    def __init__(self, model: torch.nn.Module, *, readouts: Sequence[str] | None = None,
                 prepared: dict | None = None) -> None:
        self.model = model
        self.z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
        self.cutoff = float(model.r_max)
        names = [n for n, _ in model.named_modules()]
        if readouts is None:
            last: dict[str, str] = {}
            for n, m in model.named_modules():
                if n.startswith("readouts.") and any(True for _ in m.parameters(recurse=False)):
                    last[".".join(n.split(".")[:2])] = n
            readouts = tuple(last.values())
        self.readouts = tuple(readouts)
        self.edge_modules = tuple(n for n in names if n.endswith("conv_tp_weights"))
        self._prepared: dict = prepared if prepared is not None else {}

    def prepare(self, atoms: Atoms):
        key = (id(atoms), self.cutoff, tuple(self.z_table.zs))
        hit = self._prepared.get(key)
        if hit is not None and hit[0] is atoms:
            return hit[1]
        unknown = sorted(set(int(z) for z in atoms.numbers) - set(self.z_table.zs))
        if unknown:
            raise ValueError(f"the MACE model knows the elements {self.z_table.zs}, not {unknown}")
        cfg = mace_data.config_from_atoms(atoms)
        item = mace_data.AtomicData.from_config(cfg, z_table=self.z_table, cutoff=self.cutoff)
        self._prepared[key] = (atoms, item)
        return item

    def collate(self, items: Sequence) -> AdapterBatch:
        b = torch_geometric.Batch.from_data_list(list(items))
        ref = next(self.model.parameters())
        d = {k: (v.to(ref.device, ref.dtype) if torch.is_floating_point(v) else v.to(ref.device))
             for k, v in b.to_dict().items()}
        return AdapterBatch(d, int(b.num_graphs), d["batch"], d["batch"][d["edge_index"][0]])

    def energies(self, batch: AdapterBatch) -> torch.Tensor:
        return self.model(dict(batch.data), training=False, compute_force=False)["energy"]

    def energy_and_forces(self, batch: AdapterBatch, *, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(dict(batch.data), training=create_graph, compute_force=True)
        if create_graph:
            return out["energy"], out["forces"]
        return out["energy"].detach(), out["forces"].detach()


def small_mace(
    train: Sequence[Atoms],
    energies: np.ndarray,
    forces: Sequence[np.ndarray],
    *,
    species: Sequence[int],
    seed: int,
    r_max: float = 5.0,
    channels: int = 16,
    max_ell: int = 2,
    interactions: int = 2,
    correlation: int = 2,
    radial_mlp: Sequence[int] = (32, 32, 32),
    dtype: torch.dtype = torch.float32,
    prepared: dict | None = None,
) -> MaceAdapter:
    """A fresh small ``ScaleShiftMACE`` for ``species``, set up from the training set.

    Atomic energies ``E0`` come from a least-squares fit of ``energies`` on the compositions
    (minimum norm when they are collinear); the interaction energy is scaled by the RMS of the
    training forces and the average number of neighbours is the training set's (MACE's helpers).
    The initial weights come from ``seed`` (the global RNG is restored afterwards); ``prepared``
    is passed to :class:`MaceAdapter`.
    """
    zs = sorted(int(z) for z in species)
    z_table = AtomicNumberTable(zs)
    from alhelpers.structures import composition_matrix

    e0, *_ = np.linalg.lstsq(composition_matrix(train, zs), np.asarray(energies, dtype=np.float64), rcond=None)
    data = [mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=z_table, cutoff=r_max)
            for a in train]
    loader = torch_geometric.dataloader.DataLoader(data, batch_size=32, shuffle=False)
    avg_nb = float(mace_modules.compute_avg_num_neighbors(loader))
    f = np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1, 3) for x in forces])
    scale = float(np.sqrt(np.mean(f[np.isfinite(f).all(1)] ** 2))) if np.isfinite(f).any() else 1.0
    block = mace_modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = mace_modules.ScaleShiftMACE(
            r_max=r_max, num_bessel=8, num_polynomial_cutoff=5, max_ell=max_ell,
            interaction_cls=block, interaction_cls_first=block, num_interactions=interactions,
            num_elements=len(zs), hidden_irreps=o3.Irreps(f"{channels}x0e"), MLP_irreps=o3.Irreps(f"{channels}x0e"),
            atomic_energies=e0, avg_num_neighbors=max(avg_nb, 1.0), atomic_numbers=zs, correlation=correlation,
            gate=torch.nn.functional.silu, radial_MLP=list(radial_mlp),
            atomic_inter_scale=max(scale, 1e-3), atomic_inter_shift=0.0,
        )
    return MaceAdapter(model.to(dtype), prepared=prepared)
