"""The run configs of Track A, one per notebook run, built from the papermill parameters.

:class:`FetchConfig` (notebook 01), :class:`FeaturizeConfig` (02) and :class:`ALConfig` (03) check
themselves on construction (:class:`~alhelpers.al.config.Saveable`) and are saved as JSON next to
what they produced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from alhelpers.al.config import Saveable, param
from alhelpers.formation.models import EnsembleConfig
from alhelpers.select import get_strategy

DEFAULT_STRATEGIES = ("random", "uncertainty", "diversity", "hybrid")

#: Track A's σ recalibrations (:attr:`ALConfig.calibration`), the default first, with how each
#: fits σ' in the report's words.
CALIBRATIONS = {
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
    #: How σ is recalibrated without the test set (:data:`CALIBRATIONS`): ``"cv"`` (the default),
    #: on cross-validation ensembles of every strategy's labelled rows, every round (three times the
    #: training of the round's own models); ``"batches"``, on the predictions each round made for
    #: the materials it then queried (made before their labels existed), with a cross-validation of
    #: the initial set, shared by all strategies, for round 0: no training after round 0, but σ'
    #: measured 25–40 % too wide on the default study (the queried materials are the uncertain ones).
    #: Neither changes a selection or an MAE; only σ', ``mae_pred`` and a stopping rule that reads it.
    calibration: str = param("cv", "CALIBRATION")
    #: Folds of the cross-validation that fits the σ recalibration (``"cv"``: every round's labelled
    #: rows; ``"batches"``: the initial set, once).
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
