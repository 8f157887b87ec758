"""The run config of Track B (notebook 07, ``python -m alhelpers.run potentials``).

One :class:`PotentialsConfig` per (system, seed, batch): everything a run depends on, the seed
and the strategies included, checked on construction and saved as JSON next to the results.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from alhelpers.al.config import Saveable, param
from alhelpers.anymodel.select import check_label_free, parse_potential_method
from alhelpers.anymodel.train import TrainConfig
from alhelpers.select.features import DEFAULT_RP_DIM
from alhelpers.select.methods import Method

__all__ = ["CHGNET_TRAIN", "DEFAULT_STRATEGIES", "MACE_TRAIN", "METHODS", "MODELS", "NOTEBOOK_STRATEGIES", "PRETRAINED",
           "STUDY_TRAIN", "WARM_TRAIN", "PotentialsConfig", "resolve_strategies", "run_label", "system_name"]

#: Every method of STUDY §7 for a potential (``random`` is MAXDIAG on RND under its usual name).
METHODS: tuple[str, ...] = (
    "random", "maxdiag-qbc-e", "maxdiag-qbc-f", "maxdiag-ae-e", "maxdiag-ae-f",
    "maxdiag-gp-ll", "maxdiag-gp-rp", "maxdet-gp-ll", "maxdet-gp-rp",
    "maxdist-gp-ll", "maxdist-gp-rp", "maxdist-feat-ll", "maxdist-feat-rp",
    "lcmd-feat-ll", "lcmd-feat-rp",
)
#: The seven strategies of the Track B study (TiO2 learning curves).
DEFAULT_STRATEGIES: tuple[str, ...] = (
    "random", "maxdiag-qbc-f", "maxdiag-gp-ll", "maxdet-gp-ll", "maxdist-feat-ll", "lcmd-feat-ll", "lcmd-feat-rp",
)

#: Notebook 07's default strategies: four that teach the contrast (the baseline, a committee, a
#: batch method on the GP posterior, a clustering method) in minutes; ``STRATEGIES = "study"``
#: runs the study's seven (:data:`DEFAULT_STRATEGIES`, the runner's default).
NOTEBOOK_STRATEGIES: tuple[str, ...] = ("random", "maxdiag-qbc-f", "maxdet-gp-ll", "lcmd-feat-ll")


def resolve_strategies(strategies: str | list[str] | tuple[str, ...]) -> tuple[str, ...] | str | list[str]:
    """``"study"`` → the study's seven strategies (:data:`DEFAULT_STRATEGIES`); anything else as given
    (and checked by :class:`PotentialsConfig`)."""
    return DEFAULT_STRATEGIES if isinstance(strategies, str) and strategies.strip().lower() == "study" else strategies


#: Training settings of the Track B study: float32 (the same errors as float64 at about half the
#: time, measured on TiO2), at most 80 epochs with early stopping, on a CUDA GPU when there is one.
STUDY_TRAIN = TrainConfig(dtype="float32", max_epochs=80, patience=20, device="auto")
#: Training settings of the rounds that warm-start from the previous round's model (round 0 is
#: always trained from scratch with ``train``): at most 25 epochs, a shorter patience, at most 7
#: Adam steps per epoch (mini-batches of 8 up to 56 structures, 15 at 100), a learning rate of
#: 3e-4 (the model is already fitted: a fine-tuning rate) and the validation set evaluated every
#: other epoch (a validation pass with forces cost a third to a half of a warm epoch).
#: Chosen by measurement on TiO2 (training sets growing 10 → 100 by 10 in a random order, seeds
#: 0–2): final test force MAE 0.149 / 0.161 / 0.151 eV/Å against 0.145 / 0.162 / 0.151 from
#: scratch with 80 epochs (energies 27.6 / 22.4 / 25.1 against 22.9 / 20.2 / 24.4 meV/atom);
#: mini-batches of 8 throughout: 0.149 / 0.165 / 0.145; 15 warm epochs: 0.159 / 0.181 (worse);
#: keeping the first round's scaler and shifts instead of refitting them: 0.46 eV/Å at 20
#: structures against 0.27. The learning rate: with 1e-3 the final energies of the study's
#: warm-started runs were 1.5–3 meV/atom worse than from scratch (the last rounds end at a large
#: rate); on seed 0 (random, MAXDET + GP(LL), 100 structures) 1e-3 gave 31.9 / 19.1 meV/atom and
#: 0.151 / 0.138 eV/Å, 3e-4 26.0 / 15.6 meV/atom and 0.154 / 0.139 eV/Å; validating every other
#: epoch (1e-3) 27.7 / 18.2 meV/atom, 0.149 / 0.138 eV/Å; both (these settings) 26.4 / 15.4
#: meV/atom, 0.150 / 0.141 eV/Å. Over the study's 5 seeds and 7 strategies these settings give
#: energies within 1 meV/atom of training from scratch or better for five strategies (QBC(F) +3.0,
#: MAXDIST +1.2) and forces 0.5–5 % higher (README, "Warm starts against training from scratch").
WARM_TRAIN = TrainConfig(dtype="float32", lr=3e-4, max_epochs=25, patience=10, val_every=2, lr_patience=5,
                         max_steps=7, device="auto")
#: Training settings of the small MACE (:func:`alhelpers.anymodel.mace.small_mace`): a larger
#: learning rate than the project's potential (1e-3 left it at 160 meV/atom after 36 epochs on
#: 100 TiO2 structures, 1e-2 at 82) and at most 60 epochs.
MACE_TRAIN = TrainConfig(dtype="float32", lr=1e-2, max_epochs=60, patience=15, lr_patience=8)
#: The potentials a run can train: ``gm``, the project's Gaussian-moment network
#: (:mod:`alhelpers.atomistic.model`); ``mace``, a small MACE from scratch, or ``chgnet``, the
#: pretrained universal potential CHGNet fine-tuned, both through the model-agnostic path
#: (:mod:`alhelpers.anymodel`; they need the optional ``mace-torch`` / ``chgnet``).
MODELS: tuple[str, ...] = ("gm", "mace", "chgnet")
#: Fine-tuning the pretrained CHGNet: a small learning rate (the pretrained weights are already
#: good: 1e-3 forgets them), few epochs, early stopping on the validation split.
CHGNET_TRAIN = TrainConfig(dtype="float32", lr=1e-4, max_epochs=20, patience=6, lr_patience=4)
#: Models that exist before any label (pretrained): their features can choose the start set.
PRETRAINED: tuple[str, ...] = ("chgnet",)
#: Each model's training settings when a run does not give its own, and whether it warm-starts.
MODEL_TRAINING: dict[str, tuple[TrainConfig | None, bool]] = {"mace": (MACE_TRAIN, False),
                                                               "chgnet": (CHGNET_TRAIN, False)}


def system_name(system: str, data: str = "") -> str:
    """The name a run is filed under: ``system``, or for ``system="file"`` ``file-<name of the
    data file>`` in file-name-safe characters (``file-my_md`` for ``my_md.extxyz``)."""
    if system != "file":
        return system
    stem = Path(data).name.split(".")[0] or "data"
    return "file-" + (re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "data")


def run_label(system: str, model: str = "gm") -> str:
    """A Track B run's name in file names: the system, with the model unless it is ``gm``
    (``tio2``, ``tio2-mace``)."""
    return system if model == "gm" else f"{system}-{model}"


@dataclass(frozen=True)
class PotentialsConfig(Saveable):
    """Everything one Track B run (one system, one seed, all its strategies) depends on.

    Attributes:
        system: The structure data set (``offline``, ``tio2``, ``lmnto``, ``qm9``).
        model: The potential (:data:`MODELS`): ``gm`` (the project's) or ``mace``.
        seed: Seed of the split, the start set, the models and the selections.
        strategies: Method names (``random`` or ``<rule>-<kernel>``, see
            :mod:`alhelpers.select.methods`).
        n_pool, n_val, n_test: Split sizes (disjoint, from the seed).
        n_init, batch, max_size: Start set, structures added per round, stop size.
        ensemble: Models of the QBC kernels (the evaluated potential is member 0).
        rp_dim: Sketch dimension p of FEAT(RP).
        hidden: Hidden layer widths of the per-atom MLP (``gm``; MACE has its own small shape).
        cutoff: Descriptor cutoff in Å (None: the descriptor's default).
        train: Training hyper-parameters (default :data:`STUDY_TRAIN`); each model's seed is
            derived from ``seed``, the member and the round.
        warm_start: Start each round's training (after round 0) from the previous round's
            model, with ``warm_train``'s settings; its feature scaler and composition shifts are
            refitted to the new training set (keeping the old ones from the 10 first structures
            cost accuracy). Each round's models are checkpointed, so a resumed run is exact.
            False: every round from scratch with ``train`` (the protocol before warm starts).
        warm_train: Training hyper-parameters of the warm-started rounds (default :data:`WARM_TRAIN`).
    """

    system: str = param("offline", "SYSTEM")
    model: str = param("gm", "MODEL")
    seed: int = param(0, "SEED", minimum=0)
    strategies: tuple[str, ...] = param(DEFAULT_STRATEGIES, "STRATEGIES")
    n_pool: int = param(700, minimum=1)
    n_val: int = param(50, minimum=0)
    n_test: int = param(250, minimum=1)
    n_init: int = param(10, "N_INIT", minimum=1)
    batch: int = param(10, "BATCH", minimum=1)
    max_size: int = param(100, "MAX_SIZE", minimum=1)
    ensemble: int = param(3, minimum=1)
    rp_dim: int = param(DEFAULT_RP_DIM, minimum=1)
    hidden: tuple[int, ...] = param((512, 512))
    cutoff: float | None = param(None)
    train: TrainConfig = field(default_factory=lambda: STUDY_TRAIN)
    warm_start: bool = param(True, "WARM_START")
    warm_train: TrainConfig = field(default_factory=lambda: WARM_TRAIN)
    #: Stop a strategy's labelling once its predicted test error (``mae_pred``: force MAE in eV/Å,
    #: or energy MAE in eV/atom for QBC(E) and sets without forces) is at or below this; 0: never.
    target_mae: float = param(0.0, "TARGET_MAE", minimum=0)
    #: How the start set is chosen: ``random`` (the first ``n_init`` of the seeded pool order), or,
    #: for a model that exists before any label (``chgnet``), a rule on its pretrained gradient
    #: features: ``maxdet-feat-ll``, ``lcmd-feat-rp``, … (MAXDET, MAXDIST or LCMD on FEAT(LL)/FEAT(RP)).
    init_method: str = param("random", "INIT_METHOD")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model not in MODELS:
            raise ValueError(f"MODEL = {self.model!r} is not one of {MODELS}")
        if not self.strategies:
            raise ValueError('STRATEGIES is empty: name at least one, e.g. STRATEGIES = ["random"]')
        methods = self.methods  # every name parsed once, here; the run reads the typed methods
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"STRATEGIES has duplicates: {list(self.strategies)}")
        if self.n_init > self.n_pool:
            raise ValueError(f"n_init ({self.n_init}) cannot exceed n_pool ({self.n_pool})")
        if self.max_size < self.n_init:
            raise ValueError(f"MAX_SIZE ({self.max_size}) must be >= N_INIT ({self.n_init})")
        if (self.train.freeze or self.warm_train.freeze) and self.model not in PRETRAINED:
            raise ValueError(f"FREEZE = True fine-tunes only the head of a pretrained model (MODEL in {PRETRAINED}); "
                             f"{self.model!r} is trained from scratch")
        if self.init_method != "random":
            try:
                check_label_free(methods[self.init_method], "the start set")
            except ValueError as err:
                raise ValueError(f"INIT_METHOD = {self.init_method!r}: {err}") from None
            if self.model not in PRETRAINED:
                raise ValueError(f"INIT_METHOD = {self.init_method!r} needs a model that exists before any label "
                                 f"(MODEL in {PRETRAINED}); {self.model!r} is trained from scratch")

    @cached_property
    def methods(self) -> dict[str, Method]:
        """Each strategy's name (and the start set's ``init_method``) as its typed method."""
        names = (*self.strategies, *((self.init_method,) if self.init_method != "random" else ()))
        return {name: parse_potential_method(name) for name in names}

    @property
    def label(self) -> str:
        """The run's name in file names (:func:`run_label`)."""
        return run_label(self.system, self.model)

    @property
    def rounds(self) -> int:
        """Rounds (models trained) until ``max_size``: the start set plus one per batch."""
        return 1 + math.ceil((self.max_size - self.n_init) / self.batch)

    @classmethod
    def for_system(cls, system: str, n_structures: int, **overrides) -> PotentialsConfig:
        """Split sizes scaled to a set: 700/50/250 for TiO2 (1,000), the same proportions elsewhere."""
        if n_structures >= 1000:
            sizes = {"n_pool": 700, "n_val": 50, "n_test": 250}
        else:
            sizes = {"n_pool": int(0.7 * n_structures), "n_val": max(1, int(0.05 * n_structures))}
            sizes["n_test"] = n_structures - sizes["n_pool"] - sizes["n_val"]
        train, warm = MODEL_TRAINING.get(overrides.get("model", "gm"), (None, True))
        if train is not None and "train" not in overrides:
            sizes.update(train=train, warm_start=warm, warm_train=train)  # MACE: measured from scratch only
        return cls(system=system, **{**sizes, **overrides})

    @classmethod
    def smoke(cls, system: str, **overrides) -> PotentialsConfig:
        """A tiny run to check the pipeline in seconds (small split and network, few epochs)."""
        model = overrides.get("model", "gm")
        train = TrainConfig(max_epochs=15, patience=5, dtype="float32")
        if model in PRETRAINED:  # a pretrained model is already good: three epochs of its own fine-tuning
            train = replace(MODEL_TRAINING[model][0], max_epochs=3, patience=2)
        kw = dict(system=system, n_pool=40, n_val=8, n_test=16, n_init=4, batch=4, max_size=12, ensemble=2,
                  rp_dim=64, hidden=(32, 32), train=train,
                  warm_train=train if model in PRETRAINED else TrainConfig(max_epochs=8, patience=4, dtype="float32"),
                  warm_start=MODEL_TRAINING.get(model, (None, True))[1])
        return cls(**{**kw, **overrides})
