"""Training and prediction of any potential behind a :class:`~alhelpers.anymodel.adapter.PotentialAdapter`.

:func:`fit_adapter` trains with the loss, optimiser and schedule of the project's own potential
(:class:`~alhelpers.atomistic.train.TrainConfig`): per structure ``λ_E·(ΔE/N)² + λ_F/(3N)·Σ|ΔF|²``
averaged over a mini-batch, Adam, the learning rate halved on a plateau, early stopping on the
validation loss with the best weights restored. Forces come from the adapter
(:meth:`~alhelpers.anymodel.adapter.PotentialAdapter.energy_and_forces` with ``create_graph``),
so any model the adapter wraps trains the same way. The mini-batch order comes from
:func:`alhelpers.al.seeding.stream` ``(seed)``; the model's initial weights are the adapter's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from alhelpers.al.seeding import stream
from alhelpers.anymodel.adapter import DEFAULT_MAX_ATOMS, PotentialAdapter, batches
from alhelpers.atomistic.structures import StructureSet
from alhelpers.atomistic.train import TrainConfig, check_finite_loss, check_labelled, resolve_device

__all__ = ["fit_adapter", "predict_adapter"]


def _targets(data: StructureSet, dtype: torch.dtype, device: torch.device, use_forces: bool):
    F = [np.nan_to_num(np.asarray(f, dtype=np.float64)) if use_forces else np.zeros((len(a), 3))
         for a, f in zip(data.structures, data.forces)]
    ok = [bool(use_forces and np.isfinite(f).all()) for f in data.forces]
    return ([torch.as_tensor(e, dtype=dtype, device=device) for e in data.energy],
            [torch.as_tensor(f, dtype=dtype, device=device) for f in F], torch.as_tensor(ok, dtype=dtype, device=device))


def _loss(adapter: PotentialAdapter, items: Sequence[Any], idx: np.ndarray, targets, cfg: TrainConfig,
          use_forces: bool, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    E_t, F_t, ok = targets
    batch = adapter.collate([items[i] for i in idx])
    n = batch.n_atoms.to(ok.dtype)
    if use_forces:
        E, F = adapter.energy_and_forces(batch, create_graph=create_graph)
    else:
        E, F = (adapter.energies(batch) if create_graph else adapter.energies(batch).detach()), None
    dE = E - torch.stack([E_t[i] for i in idx])
    per = cfg.lambda_energy * ((dE / n) if cfg.energy_per_atom else dE) ** 2
    if F is not None:
        dF = ((F - torch.cat([F_t[i] for i in idx])) ** 2).sum(1)
        sq = torch.zeros_like(n).index_add(0, batch.atom_structure, dF)
        per = per + cfg.lambda_forces * ok[torch.as_tensor(idx, device=ok.device)] * sq / (3.0 * n)
    return per, dE.detach(), n


def fit_adapter(adapter: PotentialAdapter, train: StructureSet, val: StructureSet | None = None,
                cfg: TrainConfig | None = None, *, seed: int) -> tuple[PotentialAdapter, pd.DataFrame]:
    """Train the adapter's model in place on ``train`` (early stopping on ``val``); returns the
    adapter and a per-epoch history (``epoch, train_loss, val_loss, val_energy_mae_per_atom, lr,
    seconds``)."""
    cfg = cfg or TrainConfig()
    check_labelled(train, "training")
    if val is not None and len(val):
        check_labelled(val, "validation")
    else:
        val = None
    model = adapter.model.to(resolve_device(cfg.device))
    dtype = next(model.parameters()).dtype
    use_forces = cfg.lambda_forces > 0 and train.has_forces
    items = [adapter.prepare(a) for a in train.structures]
    device = next(model.parameters()).device
    tg = _targets(train, dtype, device, use_forces)
    if val is not None:
        v_items = [adapter.prepare(a) for a in val.structures]
        v_forces = use_forces and val.has_forces
        v_tg = _targets(val, dtype, device, v_forces)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng, t0, rows = stream(int(seed)), time.perf_counter(), []
    best = (float("inf"), None, -1)
    plateau = (float("inf"), 0)
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order, total = rng.permutation(len(train)), 0.0
        batch = cfg.batch_for(len(order))
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            per, _, _ = _loss(adapter, items, idx, tg, cfg, use_forces, create_graph=True)
            check_finite_loss(per, idx, train, epoch)
            loss = per.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.size
        row = {"epoch": epoch, "train_loss": total / len(order), "val_loss": np.nan, "val_energy_mae_per_atom": np.nan}
        if val is not None:
            model.eval()
            vl, dev, vn = 0.0, [], []
            for idx, _ in batches(adapter, v_items, val.n_atoms, max_atoms=DEFAULT_MAX_ATOMS):
                per, dE, n = _loss(adapter, v_items, idx, v_tg, cfg, v_forces, create_graph=False)
                vl += float(per.detach().mean()) * idx.size
                dev.append(dE), vn.append(n)
            row["val_loss"] = vl / len(val)
            row["val_energy_mae_per_atom"] = float((torch.cat(dev).abs() / torch.cat(vn)).mean())
            if row["val_loss"] < best[0]:
                best = (row["val_loss"], copy.deepcopy(model.state_dict()), epoch)
        monitor = row["val_loss"] if val is not None else row["train_loss"]
        if monitor < plateau[0]:
            plateau = (monitor, epoch)
        elif cfg.lr_patience and epoch - plateau[1] >= cfg.lr_patience:
            for group in opt.param_groups:
                group["lr"] = max(group["lr"] * cfg.lr_factor, cfg.min_lr)
            plateau = (plateau[0], epoch)
        row["lr"], row["seconds"] = opt.param_groups[0]["lr"], time.perf_counter() - t0
        rows.append(row)
        if val is not None and epoch - best[2] >= cfg.patience:
            break
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "val_energy_mae_per_atom", "lr", "seconds"])
    history.attrs["best_epoch"] = best[2] if best[1] is not None else len(rows)
    return adapter, history


def predict_adapter(adapter: PotentialAdapter, structures: Sequence[Any], *, forces: bool = True,
                    max_atoms: int = DEFAULT_MAX_ATOMS) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Energies ``(S,)`` (eV) and, if ``forces``, one ``(n_s, 3)`` array per structure (eV/Å)."""
    adapter.model.eval()
    items = [adapter.prepare(a) for a in structures]
    E_parts, F_parts = [], []
    for _, b in batches(adapter, items, [len(a) for a in structures], max_atoms=max_atoms):
        if forces:
            E, F = adapter.energy_and_forces(b)
            F_parts.extend(np.split(F.double().cpu().numpy(), np.cumsum(b.n_atoms.cpu().numpy())[:-1]))
        else:
            with torch.no_grad():
                E = adapter.energies(b)
        E_parts.append(E.detach().double().cpu().numpy())
    return np.concatenate(E_parts), (F_parts if forces else None)
