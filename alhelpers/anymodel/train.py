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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from alhelpers.al.seeding import stream
from alhelpers.anymodel.adapter import DEFAULT_MAX_ATOMS, PotentialAdapter, batches
from alhelpers.structures import StructureSet

__all__ = ["NonFiniteLossError", "TrainConfig", "check_finite_loss", "check_labelled", "fit_adapter", "predict_adapter",
           "resolve_device"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class TrainConfig:
    """How every Track B potential is trained: :func:`fit_adapter` (any model behind an adapter) and
    :func:`~alhelpers.atomistic.train.fit_potential` (the project's potential, its fast path).

    Attributes:
        lr: Adam learning rate.
        lambda_energy: Weight ``λ_E`` of the squared energy error.
        lambda_forces: Weight ``λ_F`` of the mean squared force component error (0: energies only).
        energy_per_atom: Use the per-atom energy error ``ΔE_s/N_s`` in the loss (default) instead
            of the total-energy error.
        batch_size: Structures per Adam step.
        max_steps: When > 0, the mini-batches grow beyond ``batch_size`` so that an epoch takes at
            most this many Adam steps (:meth:`batch_for`): small sets keep ``batch_size``, large
            ones take bigger, cheaper steps. 0: always ``batch_size``.
        max_epochs: Upper limit of passes over the training structures.
        patience: Stop after this many epochs without a better validation loss.
        val_every: Evaluate the validation set every this many epochs (and in the last): the
            early stopping and the restored weights only see those epochs. A validation pass
            with forces costs as much as a third to a half of a small set's epoch.
        lr_patience: Multiply the learning rate by ``lr_factor`` after this many epochs without a
            better validation loss (training loss without a validation set); 0 disables it.
        lr_factor: The decay factor of the learning rate on a plateau.
        min_lr: The learning rate is never decayed below this.
        dtype: ``"float64"`` (default) or ``"float32"`` (1.5–2× faster on a CPU; on TiO2 the
            fitted errors agreed to three digits).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        chunk_atoms: Atoms per chunk when freezing structures and predicting (memory bound).
        freeze: Fine-tune only the model's head (the adapter's ``head`` modules, else its
            ``readouts``: for CHGNet the readout MLP), everything else kept at its pretrained
            weights (:func:`fit_adapter`; the project's potential trains every layer).
    """

    lr: float = 1e-3
    lambda_energy: float = 100.0
    lambda_forces: float = 10.0
    energy_per_atom: bool = True
    batch_size: int = 8
    max_steps: int = 0
    max_epochs: int = 100
    patience: int = 25
    val_every: int = 1
    lr_patience: int = 10
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    dtype: str = "float64"
    device: str = "cpu"
    chunk_atoms: int = 8192
    freeze: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1 or self.max_epochs < 0 or self.patience < 1 or self.max_steps < 0:
            raise ValueError("batch_size and patience must be >= 1, max_epochs and max_steps >= 0")
        if not self.lr > 0 or self.lambda_energy < 0 or self.lambda_forces < 0:
            raise ValueError("lr must be > 0 and the loss weights >= 0")
        if self.val_every < 1:
            raise ValueError(f"val_every must be >= 1, got {self.val_every}")
        if self.lr_patience < 0 or not 0 < self.lr_factor <= 1 or self.min_lr < 0:
            raise ValueError("need lr_patience >= 0, 0 < lr_factor <= 1 and min_lr >= 0")
        resolve_device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    def validates(self, epoch: int) -> bool:
        """Whether the validation set is evaluated after ``epoch`` (1-based; see ``val_every``)."""
        return epoch % self.val_every == 0 or epoch == self.max_epochs

    def batch_for(self, n_structures: int) -> int:
        """Structures per Adam step for a training set of ``n_structures``."""
        if self.max_steps <= 0:
            return self.batch_size
        return max(self.batch_size, -(-int(n_structures) // self.max_steps))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU raises."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA device; use 'cpu' or 'auto'")
    return dev


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the structures responsible."""


def check_finite_loss(per_structure: torch.Tensor, idx: np.ndarray, train: StructureSet, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the structures whose loss is not finite
    (``per_structure[k]`` is the loss of ``train`` structure ``idx[k]``)."""
    bad = np.flatnonzero(~torch.isfinite(per_structure.detach()).cpu().numpy())
    if bad.size == 0:
        return
    named = "; ".join(_labels_of(train, int(idx[b])) for b in bad[:3])
    more = f" (and {bad.size - 3} more)" if bad.size > 3 else ""
    if bad.size == len(idx) and len(idx) > 1:
        hint = ("every structure of the mini-batch: training diverged — lower the learning rate, or look for "
                "labels far outside the others")
    else:
        hint = "check these structures' labels and geometry, or drop them"
    raise NonFiniteLossError(f"the training loss became non-finite in epoch {epoch} for {named}{more}; {hint}")


def _labels_of(train: StructureSet, k: int) -> str:
    f = np.asarray(train.forces[k], dtype=np.float64)
    fmax = np.nanmax(np.abs(f)) if np.isfinite(f).any() else float("nan")
    return (f"{train.describe(k)} (energy {train.energy[k]:.6g} eV for {train.n_atoms[k]} atoms, "
            f"largest |force| {fmax:.3g} eV/Å)")


def check_labelled(data: StructureSet, what: str) -> None:
    """Raise a ValueError naming the set when it is empty or has unlabelled (NaN) energies."""
    if len(data) == 0:
        raise ValueError(f"the {what} set {data.name!r} is empty; give at least one labelled structure")
    if not np.isfinite(data.energy).all():
        bad = np.flatnonzero(~np.isfinite(data.energy))[:5].tolist()
        raise ValueError(f"the {what} set {data.name!r} has unlabelled energies (NaN) at {bad}...; label them first")




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
    v_items, v_forces, v_tg = None, False, None
    if val is not None:
        v_items = [adapter.prepare(a) for a in val.structures]
        v_forces = use_forces and val.has_forces
        v_tg = _targets(val, dtype, device, v_forces)
    params = [p for p in model.parameters() if p.requires_grad]
    frozen = []
    if cfg.freeze:  # only the head trains; the rest needs no parameter gradients (faster backward passes)
        head = tuple(f"{h}." for h in getattr(adapter, "head", adapter.readouts))
        trained = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(head)]
        if not trained:
            raise ValueError(f"freeze: the model has no trainable parameter in its head {head}")
        kept = {id(p) for p in trained}
        frozen = [p for p in params if id(p) not in kept]
        params = trained
    for p in frozen:
        p.requires_grad_(False)
    try:
        return _fit(adapter, model, params, items, tg, train, val, v_items, v_forces, v_tg, cfg, use_forces, seed)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _fit(adapter: PotentialAdapter, model: torch.nn.Module, params: list, items: list, tg, train: StructureSet,
         val: StructureSet | None, v_items: list | None, v_forces: bool, v_tg, cfg: TrainConfig, use_forces: bool,
         seed: int) -> tuple[PotentialAdapter, pd.DataFrame]:
    """The epochs of :func:`fit_adapter`: Adam on ``params``, plateaus, early stopping."""
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
        if val is not None and cfg.validates(epoch):
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
