"""The run configs of Track A, one per notebook run, built from the papermill parameters.

:class:`FetchConfig` (notebook 01), :class:`FeaturizeConfig` (02) and :class:`ALConfig` (03) check
themselves on construction (:class:`~alhelpers.al.config.Saveable`) and are saved as JSON next to
what they produced.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alhelpers.al.config import Saveable, param

DEFAULT_STRATEGIES = ("random", "uncertainty", "diversity", "hybrid")

#: Track A's σ recalibrations (:attr:`ALConfig.calibration`), the default first, with how each
#: fits σ' in the report's words.
CALIBRATIONS = {
    "cv-final": ("by cross-validation on the labelled materials alone in the final round (in the rounds before it, on "
                 "the predictions each round made for the materials it then queried, before their labels existed)"),
    "cv": "by cross-validation on the labelled materials alone",
    "batches": ("on the predictions each round made for the materials it then queried, before their labels "
                "existed (round 0: a cross-validation of the initial set)"),
}


def _canonical_system(cfg: Any) -> None:
    """Store the canonical name of ``cfg.system`` (``"O-Ti"`` → ``"Ti-O"``) in the frozen config,
    so that every spelling of a system writes and reads the same files; ``ValueError`` for a
    name that is no system (:func:`alhelpers.data.systems.canonical_system`)."""
    from alhelpers.data.systems import canonical_system

    object.__setattr__(cfg, "system", canonical_system(cfg.system))


@dataclass(frozen=True)
class EnsembleConfig:
    """Hyper-parameters of :class:`EnsembleRegressor`.

    Attributes:
        n_members: Number of ensemble members ``M``.
        hidden: Widths of the hidden layers (ReLU after each).
        lr: Adam learning rate.
        epochs: Passes over the (labelled) training rows.  With full-batch
            training (``batch_size=None``) one epoch is one Adam step.  The
            default (150) was chosen with ``benchmarks/ensemble_defaults.py``
            (real OQMD Fe and Si compounds, Magpie features, 30 and 105
            training rows, 5 seeds): test MAE within ~2 % of the best of
            50-800 epochs in every case (longer training overfits Fe at 105
            rows, shorter underfits Si), at ~0.2-0.3 s per fit on 2 CPU cores.
        batch_size: Mini-batch size; ``None`` means full batch (the labelled
            sets of the study have 30-105 rows).
        weight_decay: L2 penalty added to the gradient by Adam
            (``torch.optim.Adam(weight_decay=...)``), on all weights and biases.
            Default 0: 1e-4 made no measurable difference (< 0.5 % MAE).
        bootstrap: If ``True`` every member is trained on its own bootstrap
            resample (``n`` rows drawn with replacement, seeded) of the
            training rows; if ``False`` all members see all rows and differ only
            through their initialisation (and mini-batch order).
        device: ``"auto"`` (CUDA if available, else CPU), or any
            :class:`torch.device` string such as ``"cpu"`` or ``"cuda:0"``.
        input_clip: Standardised inputs are clipped to ``±input_clip`` (``None``:
            no clipping). The scaler is fitted on the few labelled rows only, so a
            descriptor that barely varies there (e.g. a magnetic moment that is
            ~1e-5 on 15 Ti–O rows) would otherwise reach z-scores of 10⁴ on
            other rows and wreck the predictions (measured on 105 real OQMD Fe
            rows: Magpie "minimum GSmagmom" was 0 on 104 rows and 2.3e-5 on one,
            FeNi then got z = 2.7e5 and a prediction 331 eV/atom off; test MAE
            2.9 instead of 0.14 eV/atom).  The default 10 is about the largest
            |z| a training row can have at n = 101 (sqrt(n - 1)), so training
            rows are practically never clipped.  Features that are exactly
            constant on the training rows carry no information and are fed as 0.
    """

    n_members: int = 5
    hidden: tuple[int, ...] = (128, 128)
    lr: float = 1e-3
    epochs: int = 150
    batch_size: int | None = None
    weight_decay: float = 0.0
    bootstrap: bool = False
    device: str = "auto"
    input_clip: float | None = 10.0

    def __post_init__(self) -> None:
        def _is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not _is_int(self.n_members) or self.n_members < 1:
            raise ValueError(f"n_members must be an integer >= 1, got {self.n_members!r}")
        if not isinstance(self.hidden, tuple) or len(self.hidden) == 0:
            raise ValueError(f"hidden must be a non-empty tuple of layer widths, got {self.hidden!r}")
        if not all(_is_int(h) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be integers >= 1, got {self.hidden!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not _is_int(self.epochs) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise ValueError(f"batch_size must be None or an integer >= 1, got {self.batch_size!r}")
        if not (
            isinstance(self.weight_decay, (int, float))
            and math.isfinite(self.weight_decay)
            and self.weight_decay >= 0
        ):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not isinstance(self.bootstrap, bool):
            raise ValueError(f"bootstrap must be a bool, got {self.bootstrap!r}")
        if self.input_clip is not None and not (
            isinstance(self.input_clip, (int, float))
            and not isinstance(self.input_clip, bool)
            and self.input_clip > 0
        ):
            raise ValueError(f"input_clip must be a positive number or None, got {self.input_clip!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {self.device!r}")


@dataclass(frozen=True)
class FetchConfig(Saveable):
    """Parameters of notebook 01 (fetch and clean one system from one source)."""

    system: str = param("C", "SYSTEM")
    source: str = param("snapshot", "SOURCE")
    mp_limit: int = param(500, "MP_LIMIT", minimum=1)
    oqmd_limit: int = param(100, "OQMD_LIMIT", minimum=1)
    table_path: str = param("", "TABLE_PATH")
    target_column: str = param("formation_energy_per_atom", "TARGET_COLUMN")
    formula_column: str = param("formula", "FORMULA_COLUMN")
    encoding: str = param("utf-8", "TABLE_ENCODING")
    min_sites: int = param(2, minimum=1)
    max_sites: int = param(50, minimum=1)
    max_abs_target: float = param(5.0, minimum=0)
    dedup_tol: float = param(1e-3, minimum=0)
    test_fraction: float = param(0.2, minimum=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        from alhelpers.data import SOURCES

        _canonical_system(self)
        if self.source not in SOURCES:
            raise ValueError(f"SOURCE={self.source!r} is not one of {SOURCES}")
        if self.source == "file" and not self.table_path:
            raise ValueError("SOURCE = 'file' needs TABLE_PATH (a CSV or parquet file)")
        if self.system == "all" and self.source != "file":
            raise ValueError(f"SYSTEM = 'all' keeps every row of your own table (SOURCE = 'file'); "
                             f"with SOURCE = {self.source!r} choose an element list such as 'Ti-O'")
        if not self.min_sites <= self.max_sites:
            raise ValueError(f"need min_sites <= max_sites, got {self.min_sites}, {self.max_sites}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")

    def fetch_kwargs(self) -> dict[str, Any]:
        """Keywords of :func:`alhelpers.data.fetch_system` for this config."""
        return dict(mp_limit=self.mp_limit, oqmd_limit=self.oqmd_limit, path=self.table_path or None,
                    target=self.target_column, formula_column=self.formula_column,
                    encoding=self.encoding, min_sites=self.min_sites, max_sites=self.max_sites,
                    max_abs_target=self.max_abs_target, dedup_tol=self.dedup_tol)


@dataclass(frozen=True)
class FeaturizeConfig(Saveable):
    """Parameters of notebook 02 (descriptors for one system)."""

    system: str = param("C", "SYSTEM")
    source: str = param("snapshot", "SOURCE")
    descriptor: str = param("magpie", "DESCRIPTOR")

    def __post_init__(self) -> None:
        super().__post_init__()
        from alhelpers.formation.features import DESCRIPTORS

        _canonical_system(self)

        if self.descriptor not in DESCRIPTORS:
            raise ValueError(f"DESCRIPTOR={self.descriptor!r} is not one of {DESCRIPTORS}")


@dataclass(frozen=True)
class ALConfig(Saveable):
    """Everything one active-learning run of one (system, seed) depends on."""

    system: str = param("C", "SYSTEM")
    source: str = param("snapshot", "SOURCE")
    descriptor: str = param("magpie", "DESCRIPTOR")
    seed: int = param(0, "SEED", minimum=0)
    strategies: tuple[str, ...] = param(DEFAULT_STRATEGIES, "STRATEGIES")
    n_init: int = param(30, "N_INIT", minimum=1)
    batch: int = param(15, "BATCH", minimum=1)
    rounds: int = param(6, "ROUNDS", minimum=1)
    test_fraction: float = param(0.2, "TEST_FRACTION")
    hybrid_alpha: float = param(0.6, "HYBRID_ALPHA", minimum=0)
    #: How σ is recalibrated without the test set (:data:`CALIBRATIONS`, the rule in
    #: :func:`alhelpers.formation.loop.cv_round`): ``"cv-final"`` (the default), on
    #: cross-validation ensembles of every strategy's labelled rows in the final round (every round
    #: with a stopping rule) and as ``"batches"`` before it — the final round's σ' exactly as
    #: ``"cv"``'s at about half the training; ``"cv"``, by cross-validation every round (three times
    #: the training of the round's own models); ``"batches"``, on the predictions each round made for
    #: the materials it then queried (made before their labels existed), with a cross-validation of
    #: the initial set, shared by all strategies, for round 0: no training after round 0, but σ'
    #: measured 25–40 % too wide on the default study (the queried materials are the uncertain ones).
    #: None changes a selection or an MAE; only σ', ``mae_pred`` and a stopping rule that reads it.
    calibration: str = param("cv-final", "CALIBRATION")
    #: Folds of the cross-validation that fits the σ recalibration (the rows of every round that
    #: cross-validates; the initial set, once, for the rounds that do not).
    cv_folds: int = param(3, minimum=2)
    #: Stop a strategy's labelling once its predicted test MAE (``mae_pred``, eV/atom) is at or
    #: below this; 0: never (the whole budget).
    target_mae: float = param(0.0, "TARGET_MAE", minimum=0)
    model: EnsembleConfig = field(default_factory=EnsembleConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        _canonical_system(self)
        if not self.strategies:
            raise ValueError('STRATEGIES is empty: name at least one, e.g. STRATEGIES = ["random"]')
        from alhelpers.select import get_strategy  # the registry imports torch: only where runs are configured

        for name in self.strategies:
            get_strategy(name)  # unknown name → ValueError listing the valid ones
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"STRATEGIES has duplicates: {list(self.strategies)}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"TEST_FRACTION must be in (0, 1), got {self.test_fraction}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"CALIBRATION must be one of {list(CALIBRATIONS)}, got {self.calibration!r}")

    @property
    def budget(self) -> int:
        """Labelled points the last round trains on when the pool is large enough."""
        return self.n_init + (self.rounds - 1) * self.batch

    def protocol(self) -> dict:
        """What makes two runs comparable: everything but system, descriptor, seed and strategies."""
        d = self.to_dict()
        for k in ("system", "descriptor", "seed", "strategies"):
            d.pop(k)
        return d

    @property
    def protocol_id(self) -> str:
        """A short hash of :meth:`protocol`; runs with different ids must not be compared."""
        return hashlib.sha256(json.dumps(self.protocol(), sort_keys=True, default=str).encode()).hexdigest()[:10]
