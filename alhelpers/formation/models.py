"""Deep-ensemble regressor for Track A (docs/study.md §3).

An ensemble of ``M`` feed-forward regressors ``d -> 128 -> 128 -> 1`` (ReLU),
trained with Adam on the mean squared error of the *standardised* target.  The
members are trained together as one batched computation: every linear layer is
stored as a stacked weight tensor of shape ``(M, d_in, d_out)`` plus a stacked
bias of shape ``(M, 1, d_out)`` and evaluated with :func:`torch.baddbmm`, so the
forward and backward passes contain no Python loop over members.  Because Adam
and the (L2-style) weight decay act element-wise, and the loss is the *sum* of
the members' own mean squared errors, optimising the stacked tensors is exactly
equivalent to optimising ``M`` independent networks.

* Inputs: standardised with a :class:`~sklearn.preprocessing.StandardScaler`
  fitted on the training rows only (refitted at every :meth:`EnsembleRegressor.fit`),
  features constant on those rows set to 0, and the z-scores clipped to
  ``±EnsembleConfig.input_clip`` (guards against descriptors that barely vary
  on a small labelled set).  The target is standardised with the training
  rows' mean and population standard deviation; outputs are mapped back.
* Prediction (eq. 1): the mean over members.
* Epistemic uncertainty (eq. 2): the **population** variance over members
  (``ddof=0``), i.e. ``np.var(members, axis=0)``.

Determinism: every random number is drawn from an explicit
:class:`torch.Generator` / :class:`numpy.random.Generator` derived from the
``seed`` given to :class:`EnsembleRegressor` (via :class:`numpy.random.SeedSequence`
with a per-purpose, per-member spawn key).  The global torch RNG is never used
or seeded, and torch's global thread settings are left alone.  On CPU the same
seed and data give bit-identical predictions; on CUDA results are reproducible
only up to the non-determinism of the GPU kernels.

The initialisation reproduces :class:`torch.nn.Linear`'s default
(Kaiming-uniform with ``a = sqrt(5)``), i.e. weights and biases are drawn from
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; member ``k`` draws its weights from its
own generator, in the same order ``nn.Linear`` would (weight then bias, layer
by layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from alhelpers.al.seeding import stream, torch_seed
from alhelpers.formation.config import EnsembleConfig

__all__ = ["EnsembleConfig", "EnsembleRegressor", "fit_ensembles"]

# Spawn keys of the independent random streams derived from the run seed.
_STREAM_INIT = 0
_STREAM_BOOTSTRAP = 1
_STREAM_SHUFFLE = 2


def _resolve_device(device: str) -> torch.device:
    """Map ``"auto"`` to CUDA when available, else CPU; pass other strings on."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _as_finite(X: Any, name: str = "X", *, ndim: int = 2) -> np.ndarray:
    """Validate ``X`` as a finite numeric array of ``ndim`` dimensions and return it as float64."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from exc
    if arr.ndim != ndim:
        shape = "(n_samples, n_features)" if ndim == 2 else "(n_samples,)"
        raise ValueError(f"{name} must be {ndim}-D {shape}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


class EnsembleRegressor:
    """Batched deep ensemble of MLP regressors (docs/study.md §3).

    Args:
        config: Hyper-parameters, see :class:`EnsembleConfig`.
        seed: Run seed (non-negative integer).  Member ``k``'s initialisation,
            its bootstrap resample and its mini-batch order come from
            independent streams derived from ``(seed, k)``.

    After :meth:`fit` the following attributes are available:

    Attributes:
        scaler_: The :class:`sklearn.preprocessing.StandardScaler` fitted on the
            training rows' features.
        active_: Boolean mask of the features that vary on the training rows;
            the others are constant there, carry no information and are fed
            to the network as 0 (see :meth:`transform_inputs`).
        y_mean_, y_std_: Mean and (population) standard deviation of the
            training targets used to standardise ``y`` (``y_std_`` is 1.0 when
            the targets are constant).
        n_features_in_: Number of input features seen in :meth:`fit`.
        weights_: Stacked weights, one tensor per layer, shape
            ``(M, d_in, d_out)`` (layer ``l`` of member ``k`` computes
            ``h @ weights_[l][k] + biases_[l][k]``).
        biases_: Stacked biases, one tensor per layer, shape ``(M, 1, d_out)``.
        bootstrap_indices_: ``(M, n)`` integer array of the training rows each
            member was trained on (``None`` when ``bootstrap=False``).
        train_loss_: Final mean (over members) MSE on the standardised target,
            evaluated after the last step on each member's own training rows.
    """

    def __init__(self, config: EnsembleConfig = EnsembleConfig(), *, seed: int) -> None:
        if not isinstance(config, EnsembleConfig):
            raise TypeError(f"config must be an EnsembleConfig, got {type(config).__name__}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.config: EnsembleConfig = config
        self.seed: int = int(seed)
        self.device: torch.device = _resolve_device(config.device)
        self.dtype: torch.dtype = torch.float32
        self.scaler_: StandardScaler | None = None
        self.active_: np.ndarray | None = None
        self.y_mean_: float | None = None
        self.y_std_: float | None = None
        self.n_features_in_: int | None = None
        self.weights_: list[torch.Tensor] | None = None
        self.biases_: list[torch.Tensor] | None = None
        self.bootstrap_indices_: np.ndarray | None = None
        self.train_loss_: float | None = None

    # ------------------------------------------------------------------ setup
    def __repr__(self) -> str:
        return f"EnsembleRegressor(config={self.config!r}, seed={self.seed})"

    @property
    def n_members(self) -> int:
        """Number of ensemble members ``M``."""
        return self.config.n_members

    def _init_parameters(self, d_in: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Stacked parameters with ``nn.Linear``'s default init, one generator per member."""
        sizes = [d_in, *self.config.hidden, 1]
        M = self.config.n_members
        per_member_w: list[list[torch.Tensor]] = [[] for _ in sizes[:-1]]
        per_member_b: list[list[torch.Tensor]] = [[] for _ in sizes[:-1]]
        for k in range(M):  # initialisation only; training is batched
            g = torch.Generator(device="cpu")
            g.manual_seed(torch_seed(self.seed, spawn_key=(_STREAM_INIT, k)))
            for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                # nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) on the
                # (out, in) weight => U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias the same.
                bound = 1.0 / math.sqrt(fan_in)
                w = torch.empty(fan_out, fan_in, dtype=self.dtype).uniform_(-bound, bound, generator=g)
                b = torch.empty(fan_out, dtype=self.dtype).uniform_(-bound, bound, generator=g)
                per_member_w[layer].append(w.t())
                per_member_b[layer].append(b.unsqueeze(0))
        weights = [torch.stack(ws).contiguous().to(self.device) for ws in per_member_w]
        biases = [torch.stack(bs).contiguous().to(self.device) for bs in per_member_b]
        return weights, biases

    # --------------------------------------------------------------- forward
    @staticmethod
    def _forward(
        x: torch.Tensor,
        weights: list[torch.Tensor],
        biases: list[torch.Tensor],
        *,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """Batched forward pass.

        Args:
            x: ``(M, n, d)`` (per-member rows) or ``(n, d)`` (shared rows).
            weights, biases: Stacked parameters.
            return_hidden: Return the last hidden activations ``(M, n, H)``
                instead of the output.

        Returns:
            ``(M, n)`` standardised outputs, or the last hidden activations.
        """
        M = weights[0].shape[0]
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(M, -1, -1)
        last = len(weights) - 1
        for layer, (w, b) in enumerate(zip(weights, biases)):
            if layer == last:
                if return_hidden:
                    return h
                return torch.baddbmm(b, h, w).squeeze(-1)
            h = torch.relu(torch.baddbmm(b, h, w))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------- fit
    def fit(self, X: np.ndarray, y: np.ndarray) -> "EnsembleRegressor":
        """Train all members from scratch on ``(X, y)``.

        A :class:`~sklearn.preprocessing.StandardScaler` is fitted on these
        rows' features and ``y`` is standardised with these rows' mean and
        standard deviation.  Every call re-initialises the parameters from the
        seed, so fitting twice on the same data gives the same model.

        Args:
            X: ``(n, d)`` finite features, ``n >= 2``.
            y: ``(n,)`` finite targets.

        Returns:
            ``self``.
        """
        fit_ensembles([X], [y], self.config, seeds=[self.seed], into=[self])
        return self

    def _setup_fit(self, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validate the data, fit the scalers, and return the per-member training tensors.

        Returns ``(x, t, rows)``: standardised inputs ``(n, d)``, standardised targets ``(n,)``
        and each member's training rows ``(M, n)`` (a bootstrap resample or ``0..n-1``).
        """
        X = _as_finite(X, "X")
        y_arr = _as_finite(y, "y", ndim=1)
        if y_arr.shape[0] != X.shape[0]:
            raise ValueError(f"X and y have different numbers of rows: {X.shape[0]} vs {y_arr.shape[0]}")
        n, d = X.shape
        if n < 2:
            raise ValueError(f"at least 2 training rows are needed, got {n}")
        if d < 1:
            raise ValueError("X must have at least one feature column")
        M = self.config.n_members
        scaler = StandardScaler().fit(X)
        y_mean = float(y_arr.mean())
        y_std = float(y_arr.std())
        if not y_std > 0:
            y_std = 1.0
        active = np.asarray(X.std(axis=0) > 0)
        x = torch.as_tensor(self._standardise(X, scaler, active), dtype=self.dtype, device=self.device)
        t = torch.as_tensor((y_arr - y_mean) / y_std, dtype=self.dtype, device=self.device)
        if self.config.bootstrap:
            rows = np.stack(
                [
                    stream(self.seed, spawn_key=(_STREAM_BOOTSTRAP, k))
                    .integers(0, n, size=n)
                    for k in range(M)
                ]
            )
            self.bootstrap_indices_ = rows
        else:
            rows = np.tile(np.arange(n), (M, 1))
            self.bootstrap_indices_ = None
        self.scaler_, self.active_ = scaler, active
        self.y_mean_, self.y_std_, self.n_features_in_ = y_mean, y_std, d
        return x, t, torch.as_tensor(rows, dtype=torch.long, device=self.device)

    # --------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if self.weights_ is None or self.scaler_ is None:
            raise RuntimeError("this EnsembleRegressor is not fitted yet: call fit(X, y) first")

    def _prepare(self, X: np.ndarray) -> torch.Tensor:
        """Validate ``X``, apply the training scaler and move it to the device."""
        return torch.as_tensor(self.transform_inputs(X), dtype=self.dtype, device=self.device)

    def _standardise(
        self,
        X: np.ndarray,
        scaler: StandardScaler | None = None,
        active: np.ndarray | None = None,
    ) -> np.ndarray:
        """Training-row scaler, features constant on the training rows zeroed, clipped.

        ``scaler``/``active`` default to the fitted ``scaler_``/``active_``.
        """
        scaler = self.scaler_ if scaler is None else scaler
        active = self.active_ if active is None else active
        assert scaler is not None and active is not None
        z = scaler.transform(X)
        z[:, ~active] = 0.0
        clip = self.config.input_clip
        return np.clip(z, -clip, clip) if clip is not None else z

    def transform_inputs(self, X: np.ndarray) -> np.ndarray:
        """The network's input for ``X``: standardised with the training rows' scaler,
        features that were constant on the training rows set to 0, and clipped to
        ``±config.input_clip``; shape ``(n, d)``, float64."""
        self._check_fitted()
        X = _as_finite(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but the ensemble was fitted with {self.n_features_in_} features"
            )
        return self._standardise(X) if X.shape[0] else X.copy()

    def predict_members_standardised(self, X: np.ndarray) -> np.ndarray:
        """Each member's output on the standardised target scale, shape ``(M, n)``."""
        xs = self._prepare(X)
        assert self.weights_ is not None and self.biases_ is not None
        with torch.no_grad():
            out = self._forward(xs, self.weights_, self.biases_)
        return out.cpu().numpy().astype(np.float64)

    def predict_members(self, X: np.ndarray) -> np.ndarray:
        """Each member's prediction in target units, shape ``(M, n)``."""
        z = self.predict_members_standardised(X)
        assert self.y_mean_ is not None and self.y_std_ is not None
        return z * self.y_std_ + self.y_mean_

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean (eq. 1) and epistemic variance (eq. 2) in target units.

        The variance is the population variance over members (``ddof=0``),
        i.e. ``np.var(self.predict_members(X), axis=0)``; its unit is the
        target unit squared.

        Returns:
            ``(mean, variance)``, each of shape ``(n,)``.
        """
        members = self.predict_members(X)
        return members.mean(axis=0), members.var(axis=0, ddof=0)

    def last_hidden(self, X: np.ndarray) -> np.ndarray:
        """Last hidden-layer activations (after ReLU) of every member, ``(M, n, hidden[-1])``."""
        xs = self._prepare(X)
        assert self.weights_ is not None and self.biases_ is not None
        with torch.no_grad():
            h = self._forward(xs, self.weights_, self.biases_, return_hidden=True)
        return h.cpu().numpy().astype(np.float64)


def fit_ensembles(
    Xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    config: EnsembleConfig = EnsembleConfig(),
    *,
    seeds: Sequence[int],
    into: Sequence[EnsembleRegressor] | None = None,
) -> list[EnsembleRegressor]:
    """Train G independent ensembles (one per dataset) together as one stacked computation.

    Ensemble ``g`` is trained on ``(Xs[g], ys[g])`` from ``seeds[g]``, with its own scalers;
    its G·M members are independent (each member's loss and Adam update involve only its own
    parameters), so this is the same model as ``EnsembleRegressor(config, seed=seeds[g]).fit``
    up to floating-point summation order — one Python training loop instead of G.
    Datasets of different sizes are trained in separate groups.
    """
    if not (len(Xs) == len(ys) == len(seeds)) or (into is not None and len(into) != len(Xs)):
        raise ValueError(f"need as many seeds as datasets: {len(Xs)} X, {len(ys)} y, {len(seeds)} seeds")
    regs = list(into) if into is not None else [EnsembleRegressor(config, seed=s) for s in seeds]
    setups = [r._setup_fit(X, y) for r, X, y in zip(regs, Xs, ys)]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (x, _, _) in enumerate(setups):
        groups.setdefault(tuple(x.shape), []).append(i)
    for idx in groups.values():
        _train_stacked([regs[i] for i in idx], [setups[i] for i in idx])
    return regs


def _train_stacked(regs: list[EnsembleRegressor], setups: list[tuple[torch.Tensor, ...]]) -> None:
    """Adam on the stacked members of several same-shaped ensembles; results split back."""
    cfg, device = regs[0].config, regs[0].device
    M = cfg.n_members
    n, d = setups[0][0].shape
    # every member's own copy of its training rows: (G·M, n, d) and (G·M, n)
    xm = torch.cat([x[rows] for x, _, rows in setups])
    tm = torch.cat([t[rows] for _, t, rows in setups])
    inits = [r._init_parameters(d) for r in regs]
    weights = [torch.cat([w[layer] for w, _ in inits]).requires_grad_(True) for layer in range(len(inits[0][0]))]
    biases = [torch.cat([b[layer] for _, b in inits]).requires_grad_(True) for layer in range(len(inits[0][1]))]
    params = [*weights, *biases]
    # The fused (single-kernel) Adam is several times cheaper per step than
    # the default per-tensor loop for these small tensors, with identical maths.
    fused = True if device.type in ("cpu", "cuda") else None
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)

    def step(xb: torch.Tensor, tb: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        pred = EnsembleRegressor._forward(xb, weights, biases)
        # Sum over members of each member's own MSE: gradients per member
        # equal those of training it alone.
        loss = (pred - tb).pow(2).mean(dim=1).sum()
        loss.backward()
        opt.step()

    bs = cfg.batch_size
    if bs is None or bs >= n:  # full batch: one Adam step per epoch
        for _ in range(cfg.epochs):
            step(xm, tm)
    else:  # mini-batches: each member has its own seeded order of its rows
        gens = []
        for r in regs:
            for k in range(M):
                g = torch.Generator(device="cpu")
                g.manual_seed(torch_seed(r.seed, spawn_key=(_STREAM_SHUFFLE, k)))
                gens.append(g)
        member = torch.arange(len(gens), device=device).unsqueeze(1)
        for _ in range(cfg.epochs):
            order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
            for start in range(0, n, bs):
                idx = order[:, start : start + bs]
                step(xm[member, idx], tm[member, idx])

    with torch.no_grad():
        final = (EnsembleRegressor._forward(xm, weights, biases) - tm).pow(2).mean(dim=1)
    for g, r in enumerate(regs):
        sl = slice(g * M, (g + 1) * M)
        r.weights_ = [w.detach()[sl].clone() for w in weights]
        r.biases_ = [b.detach()[sl].clone() for b in biases]
        r.train_loss_ = float(final[sl].mean())
