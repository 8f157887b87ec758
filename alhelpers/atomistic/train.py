"""Training and prediction of :class:`~alhelpers.atomistic.model.AtomisticModel` (STUDY §8).

Loss per structure ``s`` with ``N_s`` atoms, averaged over the structures of a mini-batch:

    ``λ_E·(ΔE_s/N_s)² + λ_F/(3N_s)·Σ_i |ΔF_i|²``      (default, ``energy_per_atom=True``)

i.e. STUDY §8's ``λ_E·|ΔE|² + λ_F/(3N)·Σ|ΔF|²`` with the energy error taken **per atom**, so
that the 6- and 95-atom cells of a set count alike; ``energy_per_atom=False`` gives the literal
total-energy form. Defaults ``λ_E = 100`` (eV/atom)⁻², ``λ_F = 10`` (eV/Å)⁻²: on 100 real TiO2
structures (f32, 512-wide, 100 epochs, one seed) they gave 18.7 meV/atom and 0.141 eV/Å test MAE,
against 23.7 meV/atom and 0.180 eV/Å for the total-energy form with ``λ_E = 1, λ_F = 10`` and
0.45 eV/Å forces with ``λ_F = 1``. Energies-only sets (``has_forces=False``, or
``lambda_forces=0``) train on the energy term alone, which is much cheaper (no second
derivatives); structures whose forces contain NaN drop out of the force term.

Adam; the learning rate is halved after ``lr_patience`` epochs without a better validation loss;
early stopping on the validation loss (same formula, all validation structures) after
``patience`` such epochs, with the best weights restored at the end. Without a validation set
the model is trained for ``max_epochs`` (plateaus judged on the training loss) and the last
weights are kept.

Speed: a pool's positions never change, so every structure is *frozen* once per fit
(:func:`~alhelpers.atomistic.frozen.freeze`: moments, descriptor and neighbour tables); an
epoch then needs no neighbour search and no descriptor evaluation, and forces use the exact
linear map from descriptor gradients to positions (with a hand-written adjoint) instead of
differentiating the descriptor twice. Neighbour graphs can be shared across fits through a
:class:`~alhelpers.neighbours.GraphCache`, and ``init_from`` warm-starts from a
previous model (same descriptor; its scaler and composition shifts are kept).

Determinism: the initial weights come from ``seed`` (``torch.Generator``) and the mini-batch
order from ``alhelpers.al.seeding.stream(seed)``; the global RNGs and torch's thread settings are
never touched. On the CPU the same inputs give bit-identical models.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from ase import Atoms

from alhelpers.al.seeding import stream
from alhelpers.anymodel.train import (
    TrainConfig,
    check_finite_loss,
    check_labelled,
    resolve_device,
)
from alhelpers.atomistic.descriptor import DescriptorConfig
from alhelpers.atomistic.frozen import FrozenBatch, structure_atom_index
from alhelpers.atomistic.model import AtomisticModel, chunk_structures
from alhelpers.neighbours import Batch, Graph, GraphCache, build_graphs, collate
from alhelpers.structures import BadStructureError, StructureSet

__all__ = ["FrozenStore", "fit_potential", "freeze_structures", "frozen_chunks", "graphs_of", "predict", "stored_frozen"]

def freeze_structures(
    graphs: Sequence[Graph],
    cfg: DescriptorConfig,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    chunk_atoms: int = 8192,
) -> FrozenBatch:
    """Freeze ``graphs`` in chunks and join them into one :class:`FrozenBatch` (via ``select``)."""
    from alhelpers.atomistic.frozen import freeze

    if len(graphs) == 0:
        raise ValueError("no structures to freeze")
    parts = [freeze(cfg, collate(graphs, idx), dtype=dtype) for idx in chunk_structures(graphs, chunk_atoms)]
    fb = parts[0] if len(parts) == 1 else _concat_frozen(parts)
    return fb.to(device=device)


class FrozenStore:
    """Every structure of a set frozen once, for one descriptor, dtype and device.

    An AL run fits, predicts and takes features on subsets of one set round after round; with a
    store in its :class:`GraphCache` (``cache.frozen``) those gather the rows of their structures
    (:meth:`FrozenBatch.select`, trimmed to their own longest slot, so the same tensors as
    freezing them anew) instead of freezing them again: on TiO2 that was 59 of a seed's 419 s.
    Memory: 361 MiB for the 1,000 TiO2 structures in float32.
    """

    def __init__(self, graphs: Sequence[Graph], cfg: DescriptorConfig, *, dtype: torch.dtype,
                 device: torch.device | str = "cpu", chunk_atoms: int = 8192) -> None:
        self.cfg, self.dtype = cfg, dtype
        self.batch = freeze_structures(graphs, cfg, dtype=dtype, device=device, chunk_atoms=chunk_atoms)
        self._graphs = list(graphs)  # kept alive: rows are found by the graphs' identity
        self._row = {id(g): k for k, g in enumerate(self._graphs)}

    def get(self, graphs: Sequence[Graph], cfg: DescriptorConfig, dtype: torch.dtype,
            device: torch.device | str) -> FrozenBatch | None:
        """The frozen ``graphs`` (in that order), or None if any is not stored or the settings differ."""
        dev, mine = torch.device(device), self.batch.device
        if cfg != self.cfg or dtype != self.dtype or dev.type != mine.type or (dev.index or 0) != (mine.index or 0):
            return None
        rows = [self._row.get(id(g)) for g in graphs]
        if not rows or any(r is None for r in rows):
            return None
        return self.batch.select(rows)


def stored_frozen(graphs: Sequence[Graph], cfg: DescriptorConfig, dtype: torch.dtype, device: torch.device | str,
                  cache: GraphCache | None) -> FrozenBatch | None:
    """``graphs`` frozen from the cache's :class:`FrozenStore`, or None when it has none of them."""
    store = getattr(cache, "frozen", None)
    return store.get(graphs, cfg, dtype, device) if store is not None else None


def frozen_chunks(fb: FrozenBatch, chunk_atoms: int) -> Iterator[FrozenBatch]:
    """``fb`` split into consecutive chunks of at most ``chunk_atoms`` atoms (one structure at least)."""
    n = fb.n_atoms.cpu().numpy()
    start = 0
    while start < n.size:
        stop, total = start + 1, int(n[start])
        while stop < n.size and total + n[stop] <= chunk_atoms:
            total += int(n[stop])
            stop += 1
        yield fb if (start == 0 and stop == n.size) else fb.select(np.arange(start, stop))
        start = stop


def _concat_frozen(parts: Sequence[FrozenBatch]) -> FrozenBatch:
    L = max(p.dradial.shape[1] for p in parts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        if t.shape[1] == L:
            return t
        extra = torch.zeros(t.shape[0], L - t.shape[1], *t.shape[2:], dtype=t.dtype, device=t.device)
        return torch.cat([t, extra], dim=1)

    atom_offsets = np.cumsum([0] + [p.n_total_atoms for p in parts[:-1]])
    n_sp = parts[0].cfg.n_species
    neighbours = []
    for p, off in zip(parts, atom_offsets):
        centre = (torch.arange(p.n_total_atoms, device=p.neighbour.device).repeat_interleave(n_sp) + int(off)).unsqueeze(1)
        nb = pad(p.neighbour + int(off))
        if nb.shape[1] > p.neighbour.shape[1]:
            nb[:, p.neighbour.shape[1]:] = centre
        neighbours.append(nb)
    struct_offsets = np.cumsum([0] + [p.n_structures for p in parts[:-1]])
    return FrozenBatch(
        cfg=parts[0].cfg,
        species=torch.cat([p.species for p in parts]),
        structure=torch.cat([p.structure + int(o) for p, o in zip(parts, struct_offsets)]),
        n_structures=sum(p.n_structures for p in parts),
        n_atoms=torch.cat([p.n_atoms for p in parts]),
        moments=torch.cat([p.moments for p in parts]),
        descriptor=torch.cat([p.descriptor for p in parts]),
        dradial=torch.cat([pad(p.dradial) for p in parts]),
        radial_over_r=torch.cat([pad(p.radial_over_r) for p in parts]),
        angular=torch.cat([pad(p.angular) for p in parts]),
        neighbour=torch.cat(neighbours),
        slot_len=torch.cat([p.slot_len for p in parts]),
    )


@dataclass
class _Targets:
    energy: torch.Tensor  # (S,)
    forces: torch.Tensor  # (N, 3), NaN rows replaced by 0
    force_ok: torch.Tensor  # (S,) 1.0 where the structure's forces are usable
    n_atoms: torch.Tensor  # (S,)

    def select(self, idx: torch.Tensor) -> "_Targets":
        rows, _ = structure_atom_index(self.n_atoms, idx)
        return _Targets(self.energy[idx], self.forces[rows], self.force_ok[idx], self.n_atoms[idx])


def _targets(data: StructureSet, dtype: torch.dtype, device: torch.device, use_forces: bool) -> _Targets:
    n = torch.as_tensor(data.n_atoms, dtype=torch.long, device=device)
    energy = torch.as_tensor(data.energy, dtype=dtype, device=device)
    if use_forces:
        ok = np.array([np.isfinite(f).all() for f in data.forces], dtype=np.float64)
        F = np.concatenate([np.nan_to_num(np.asarray(f, dtype=np.float64)) for f in data.forces], axis=0)
    else:
        ok = np.zeros(len(data))
        F = np.zeros((int(data.n_atoms.sum()), 3))
    return _Targets(energy, torch.as_tensor(F, dtype=dtype, device=device), torch.as_tensor(ok, dtype=dtype, device=device), n)


def _loss_terms(
    model: AtomisticModel, fb: FrozenBatch, tg: _Targets, cfg: TrainConfig, use_forces: bool, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Loss per structure of the batch, energies, forces (None when not used)."""
    n = tg.n_atoms.to(tg.energy.dtype)
    if use_forces:
        E, F = model.energy_and_forces(fb, create_graph=create_graph)
    else:
        E, F = model(fb), None
    dE = E - tg.energy
    if cfg.energy_per_atom:
        dE = dE / n
    per_structure = cfg.lambda_energy * dE**2
    if F is not None:
        sq = torch.zeros_like(n).index_add(0, fb.structure, ((F - tg.forces) ** 2).sum(1))
        per_structure = per_structure + cfg.lambda_forces * tg.force_ok * sq / (3.0 * n)
    return per_structure, E, F


def graphs_of(data: StructureSet | Sequence[Atoms] | Sequence[Graph], cutoff: float, cache: GraphCache | None,
              what: str = "") -> list[Graph]:
    """The neighbour graphs of a set, a list of Atoms, or graphs already built (cutoff checked).

    A structure no graph can be built for (:class:`BadStructureError`) is named — for a
    :class:`StructureSet` by :meth:`StructureSet.describe`, with ``what`` set ("training", …).
    """
    items = data.structures if isinstance(data, StructureSet) else list(data)
    if not items:
        raise ValueError(f"no structures given: the {what + ' ' if what else ''}set is empty")
    if all(isinstance(x, Graph) for x in items):
        if any(g.cutoff + 1e-9 < cutoff for g in items):
            raise ValueError(f"graphs were built with a cutoff below the model's {cutoff} Å; rebuild them")
        return list(items)
    try:
        return build_graphs(items, cutoff, cache=cache)
    except BadStructureError as err:
        if not isinstance(data, StructureSet) or err.index is None:
            raise
        raise BadStructureError(err.reason, err.index, f"{what + ' set, ' if what else ''}{data.describe(err.index)}") from None


def fit_potential(
    train: StructureSet,
    val: StructureSet | None = None,
    cfg: TrainConfig | None = None,
    *,
    species: Sequence[int] | None = None,
    descriptor: DescriptorConfig | None = None,
    hidden: Sequence[int] = (512, 512),
    seed: int,
    cache: GraphCache | None = None,
    init_from: AtomisticModel | None = None,
    restandardise: bool = False,
    verbose: bool = False,
) -> tuple[AtomisticModel, pd.DataFrame]:
    """Train an :class:`AtomisticModel` on ``train`` with early stopping on ``val``.

    Args:
        train: Labelled training structures (energies; forces unless ``has_forces`` is False).
        val: Labelled validation structures for early stopping (None: no early stopping).
        cfg: Training hyper-parameters (default :class:`TrainConfig`).
        species: Elements the model must know (default: those of ``train`` and ``val``); pass the
            pool's species so the model can predict every pool structure.
        descriptor: Full descriptor configuration (overrides ``species``; default cutoff 6 Å).
        hidden: Hidden layer widths.
        seed: Seed of the initial weights and the mini-batch order (required: randomness is
            always passed in).
        cache: Shared neighbour-graph cache (speeds up repeated fits on one pool).
        init_from: Warm start: copy this model (descriptor, scaler, shifts and weights) instead of
            a fresh initialisation; ``hidden``/``species``/``descriptor`` are then ignored.
        restandardise: With ``init_from``: refit the feature scaler and the composition shifts
            to ``train`` (as a fresh model would) instead of keeping the copied ones. In an AL
            loop the copied ones come from the first few structures; on TiO2, keeping them left
            the warm-started model at 0.40 eV/Å where refitting them gave 0.28 (10 → 20
            structures, 40 epochs; from scratch, 80 epochs: 0.26). Refitting them while changing
            the weights so that the copied model's function is kept (first layer ``W·diag(σ'/σ)``,
            bias ``b + W·(m' − m)/σ``, species scales and shifts ``·c/c'``) behaved like keeping
            them: 0.39–0.48 eV/Å at 20 structures on TiO2 seed 0, against 0.29–0.43 from scratch
            (the jolt of the refit is what lets the warm start leave the first round's fit).
        verbose: Print one line per epoch.

    Returns:
        The trained model (best validation weights) and a per-epoch history with the columns
        ``epoch, train_loss, val_loss, val_energy_mae, val_energy_mae_per_atom, val_force_mae, lr,
        seconds`` (``lr`` after the epoch, ``seconds`` since the start of the fit); ``val_*`` are
        NaN without a validation set. ``history.attrs["best_epoch"]`` is the restored epoch.
    """
    cfg = cfg or TrainConfig()
    if cfg.freeze:
        raise ValueError("freeze=True fine-tunes a pretrained model's head (fit_adapter); the project's potential "
                         "trains from scratch, every layer")
    seed = int(seed)
    check_labelled(train, "training")
    if val is not None:
        if len(val) == 0:
            val = None
        else:
            check_labelled(val, "validation")
    device = resolve_device(cfg.device)
    dtype = cfg.torch_dtype
    use_forces = cfg.lambda_forces > 0 and train.has_forces
    t0 = time.perf_counter()

    if init_from is not None:
        model = copy.deepcopy(init_from).to(device=device, dtype=dtype)
        desc = model.descriptor_cfg
    else:
        if descriptor is None:
            sp = species if species is not None else sorted(set(train.species) | set(val.species if val is not None else ()))
            descriptor = DescriptorConfig(species=tuple(int(z) for z in sp))
        desc = descriptor
        model = AtomisticModel(desc, hidden, seed=seed, dtype=dtype).to(device)

    train_graphs = graphs_of(train, desc.cutoff, cache, "training")
    fb_train = stored_frozen(train_graphs, desc, dtype, device, cache)
    if fb_train is None:
        fb_train = freeze_structures(train_graphs, desc, dtype=dtype, device=device, chunk_atoms=cfg.chunk_atoms)
    if init_from is None or restandardise:
        model.fit_scaler(fb_train)
        model.init_shifts(train_graphs, train.energy)
    tg_train = _targets(train, dtype, device, use_forces)
    fb_val = tg_val = None
    val_forces = False
    if val is not None:
        val_graphs = graphs_of(val, desc.cutoff, cache, "validation")
        fb_val = stored_frozen(val_graphs, desc, dtype, device, cache)
        if fb_val is None:
            fb_val = freeze_structures(val_graphs, desc, dtype=dtype, device=device, chunk_atoms=cfg.chunk_atoms)
        val_forces = use_forces and val.has_forces
        tg_val = _targets(val, dtype, device, val_forces)

    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = stream(seed)
    S = len(train)
    batch = cfg.batch_for(S)
    best_loss, best_state, best_epoch = float("inf"), None, -1
    plateau_best, plateau_epoch = float("inf"), 0
    rows = []
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = rng.permutation(S)
        total, count = 0.0, 0
        for start in range(0, S, batch):
            idx = order[start : start + batch]
            if idx.size == S:  # the whole set, in its own order
                fb, tg, idx = fb_train, tg_train, np.arange(S)
            else:
                it = torch.as_tensor(idx, device=device)
                fb, tg = fb_train.select(it), tg_train.select(it)
            per_structure, _, _ = _loss_terms(model, fb, tg, cfg, use_forces, create_graph=True)
            check_finite_loss(per_structure, idx, train, epoch)
            loss = per_structure.mean()
            # grad w.r.t. the parameters only (loss.backward() would also differentiate the moments)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for p_, g_ in zip(params, grads):
                p_.grad = g_
            opt.step()
            total += float(loss.detach()) * idx.size
            count += idx.size
        row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": np.nan,
               "val_energy_mae": np.nan, "val_energy_mae_per_atom": np.nan, "val_force_mae": np.nan}
        if fb_val is not None and tg_val is not None and cfg.validates(epoch):
            model.eval()
            vloss, E, F = _loss_terms(model, fb_val, tg_val, cfg, val_forces, create_graph=False)
            vloss = vloss.detach().mean()
            dE = (E.detach() - tg_val.energy).abs()
            row["val_loss"] = float(vloss)
            row["val_energy_mae"] = float(dE.mean())
            row["val_energy_mae_per_atom"] = float((dE / tg_val.n_atoms).mean())
            if F is not None:
                atom_ok = tg_val.force_ok[fb_val.structure] > 0
                if bool(atom_ok.any()):
                    row["val_force_mae"] = float((F.detach() - tg_val.forces)[atom_ok].abs().mean())
            if row["val_loss"] < best_loss:
                best_loss, best_epoch = row["val_loss"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        monitor = row["val_loss"] if fb_val is not None else row["train_loss"]
        if monitor < plateau_best:
            plateau_best, plateau_epoch = monitor, epoch
        elif cfg.lr_patience and epoch - plateau_epoch >= cfg.lr_patience:
            for group in opt.param_groups:
                group["lr"] = max(group["lr"] * cfg.lr_factor, cfg.min_lr)
            plateau_epoch = epoch
        row["lr"] = opt.param_groups[0]["lr"]
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if verbose:
            print(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        if fb_val is not None and epoch - best_epoch >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "val_energy_mae",
                                          "val_energy_mae_per_atom", "val_force_mae", "lr", "seconds"])
    history.attrs["best_epoch"] = best_epoch if best_state is not None else len(rows)
    return model, history


def predict(
    model: AtomisticModel,
    data: StructureSet | Sequence[Atoms] | Sequence[Graph] | Batch | FrozenBatch,
    *,
    forces: bool = True,
    chunk_atoms: int = 4096,
    cache: GraphCache | None = None,
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Energies ``(S,)`` (eV) and, if ``forces``, one ``(n_s, 3)`` force array per structure (eV/Å).

    Structures are processed in chunks of at most ``chunk_atoms`` atoms. Unknown elements raise a
    :class:`ValueError` that names them.
    """
    model.eval()
    if isinstance(data, (Batch, FrozenBatch)):
        batches: list[Batch | FrozenBatch] = [data]
    else:
        graphs = graphs_of(data, model.cutoff, cache)
        stored = stored_frozen(graphs, model.descriptor_cfg, model.dtype, model.device, cache)
        if stored is not None:
            batches = list(frozen_chunks(stored, chunk_atoms))
        else:
            batches = [model.collate(graphs, idx) for idx in chunk_structures(graphs, chunk_atoms)]
    energies, force_list = [], []
    for b in batches:
        fb = b if isinstance(b, FrozenBatch) else model.freeze(b)
        if forces:
            E, F = model.energy_and_forces(fb)
            counts = fb.n_atoms.cpu().numpy()
            force_list.extend(np.split(F.double().cpu().numpy(), np.cumsum(counts)[:-1]))
        else:
            with torch.no_grad():
                E = model(fb)
        energies.append(E.detach().double().cpu().numpy())
    return np.concatenate(energies), (force_list if forces else None)
