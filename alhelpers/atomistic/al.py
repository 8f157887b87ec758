"""The round body of Track B: batch-mode deep AL for interatomic potentials (STUDY §7–§8).

One run = one system, one seed, all its strategies: start from ``n_init`` random pool structures,
train the potential (:func:`~alhelpers.atomistic.train.fit_potential`, early stopping on a fixed
validation split), score it on a fixed test split, select the next ``batch`` structures with the
strategy (:func:`~alhelpers.atomistic.selection.select_batch`), ask the oracle for their labels,
and repeat until ``max_size`` structures are labelled. Resuming, checkpoints and pool exhaustion
are the shared driver's (:func:`alhelpers.al.rounds.run_rounds`); the round's checkpoint carries
the labels the oracle returned that round, so a resumed run never asks the oracle again.

Every random choice comes from :mod:`alhelpers.al.seeding`: the split and the start set from the
seed alone (all strategies of a seed share them, and their round-0 model), each model from
(seed, member, round), each selection from (seed, strategy, round).

Result rows (:data:`POTENTIAL_COLUMNS`, names of :class:`alhelpers.keys.Key`): energies per atom
in eV/atom, forces per Cartesian component in eV/Å (MAXE: the largest absolute component error),
``unc_pearson``: Pearson correlation over the test structures between the strategy's uncertainty
(:func:`~alhelpers.atomistic.selection.uncertainty`) and the error (QBC(F)/AE(F)/feature kernels
against each structure's RMS force error, QBC(E) against |ΔE|/atom) and the calibration columns of
that uncertainty (:mod:`alhelpers.calibration`: raw and recalibrated on the validation split,
``sigma_scale``, ``mae_pred``); times in seconds: ``fit_s``
(the evaluated potential), ``feature_s`` (features, GP transform, and the extra ensemble members a
QBC kernel needs), ``query_s`` (the rule), ``label_s`` (the oracle).
"""

from __future__ import annotations

import abc
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.al.checkpoints import RoundCheckpoints, run_folder
from alhelpers.al.rounds import Step, Track, run_rounds
from alhelpers.al.seeding import seed_int, stream
from alhelpers.anymodel.select import parse_potential_method
from alhelpers.anymodel.train import resolve_device
from alhelpers.atomistic.config import PotentialsConfig
from alhelpers.atomistic.data import split_indices
from alhelpers.atomistic.features import force_rmse_per_structure
from alhelpers.atomistic.oracle import Oracle, PoolOracle
from alhelpers.atomistic.selection import select_batch, uncertainty
from alhelpers.atomistic.train import FrozenStore, fit_potential, graphs_of, predict
from alhelpers.calibration import ROUND_COLUMNS, round_calibration, stop_reason
from alhelpers.neighbours import GraphCache
from alhelpers.structures import StructureSet

__all__ = ["POTENTIAL_COLUMNS", "data_hash", "potential_metrics", "queried_structures", "run_potentials"]

POTENTIAL_COLUMNS: tuple[str, ...] = (
    "system", "model", "strategy", "batch", "seed", "round", "n_labelled", "n_atoms_labelled",
    "energy_mae", "energy_rmse", "energy_maxe", "force_mae", "force_rmse", "force_maxe",
    "unc_pearson", *ROUND_COLUMNS, "fit_s", "feature_s", "query_s", "label_s", "epochs", "note",
)

#: Sets of at most this many atoms are frozen once per run (:class:`FrozenStore`: TiO2, 22k atoms,
#: takes 361 MiB in float32); larger ones (QM9) are frozen chunk by chunk as they are used.
FROZEN_STORE_MAX_ATOMS = 60_000

#: Stream key of the FEAT(RP) matrices of the test-set uncertainty (the model streams use the
#: member number 0 … ensemble − 1 in this place, so this one never meets them).
UNCERTAINTY_STREAM = 99

#: The uncertainty a strategy without its own (``random``, AE) reports: the GP posterior of FEAT(LL).
DEFAULT_UNCERTAINTY = parse_potential_method("maxdiag-gp-ll")


# --------------------------------------------------------------------------- metrics


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def potential_metrics(data: StructureSet, energies: np.ndarray, forces: Sequence[np.ndarray] | None) -> dict[str, float]:
    """Energy errors per atom (eV/atom) and force component errors (eV/Å) against ``data``'s labels."""
    n = data.n_atoms.astype(np.float64)
    de = (np.asarray(energies, dtype=np.float64) - data.energy) / n
    out = {"energy_mae": float(np.abs(de).mean()), "energy_rmse": float(np.sqrt((de ** 2).mean())),
           "energy_maxe": float(np.abs(de).max())}
    if forces is not None and data.has_forces:
        df = np.concatenate([np.asarray(f) - t for f, t in zip(forces, data.forces)]).ravel()
        out.update(force_mae=float(np.abs(df).mean()), force_rmse=float(np.sqrt((df ** 2).mean())),
                   force_maxe=float(np.abs(df).max()))
    else:
        out.update(force_mae=float("nan"), force_rmse=float("nan"), force_maxe=float("nan"))
    return out


# --------------------------------------------------------------------------- labels


def data_hash(data: StructureSet) -> str:
    """sha256 (12 hex) of a set's species, positions, cells and labels."""
    h = hashlib.sha256()
    for a in data.structures:
        h.update(np.asarray(a.numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(a.positions, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(a.cell.array, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(data.energy, dtype=np.float64).tobytes())
    return h.hexdigest()[:12]


@dataclass
class _Labels:
    """Labelled structures by data-set index, with their (oracle) labels."""

    index: list[int] = field(default_factory=list)
    energy: list[float] = field(default_factory=list)
    forces: list[np.ndarray] = field(default_factory=list)

    def as_set(self, data: StructureSet) -> StructureSet:
        sub = data.subset(self.index)
        sub.energy = np.asarray(self.energy, dtype=np.float64)
        sub.forces = [np.asarray(f, dtype=np.float64) for f in self.forces]
        return sub

    def add(self, payload: dict) -> None:
        self.index.extend(int(i) for i in payload["index"])
        self.energy.extend(float(v) for v in payload["energy"])
        self.forces.extend(np.asarray(f, dtype=np.float64) for f in payload["forces"])


def _ask(oracle: Oracle, data: StructureSet, indices: Sequence[int]) -> tuple[dict, float]:
    """The oracle's labels of ``data[indices]`` as a checkpoint payload, and the seconds it took."""
    t0 = time.perf_counter()
    if isinstance(oracle, PoolOracle) and oracle.data is data:
        e, f = oracle.reveal(indices)
    else:
        e, f = oracle.label([data.structures[i] for i in indices])
    payload = {"index": [int(i) for i in indices], "energy": [float(v) for v in e],
               "forces": [np.asarray(x, dtype=np.float64).tolist() for x in f]}
    return payload, time.perf_counter() - t0


def _labelled_split(oracle: Oracle, data: StructureSet, indices: np.ndarray) -> StructureSet:
    labels = _Labels()
    labels.add(_ask(oracle, data, indices)[0])
    return labels.as_set(data)


# --------------------------------------------------------------------------- the run


@dataclass
class _State:
    """A strategy's labels and its previous models (for warm starts)."""

    labels: _Labels
    prev: list | None = None


@dataclass
class _Run:
    """What every strategy of one run shares: data, split, oracle, caches."""

    data: StructureSet
    cfg: PotentialsConfig
    oracle: Oracle
    pool: np.ndarray
    val: StructureSet | None
    test: StructureSet
    test_idx: np.ndarray  # positions in ``data`` of the test structures
    val_idx: np.ndarray  # and of the validation structures
    cache: GraphCache = field(default_factory=GraphCache)
    round0: dict = field(default_factory=dict)  # round-0 models by (labelled set, member)
    round0_eval: dict = field(default_factory=dict)  # what round 0 computed with them, shared by the strategies
    prepared: dict = field(default_factory=dict)  # an adapter's graphs of the structures, shared by every fit
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.backend = BACKENDS[self.cfg.model](self)

    def fit(self, train: StructureSet, member: int, rnd: int, init_from=None):
        return self.backend.fit(train, seed_int(self.cfg.seed, member, rnd), init_from)

    def store_frozen(self) -> None:
        """Freeze every structure of the set once (:class:`FrozenStore`); fits, predictions and
        features then gather their rows."""
        from alhelpers.atomistic.descriptor import DescriptorConfig

        cfg = self.cfg
        desc = (DescriptorConfig(species=tuple(int(z) for z in self.data.species)) if cfg.cutoff is None
                else _descriptor(self.data.species, cfg.cutoff))
        self.cache.frozen = FrozenStore(graphs_of(self.data, desc.cutoff, self.cache), desc,
                                        dtype=cfg.train.torch_dtype, device=resolve_device(cfg.train.device),
                                        chunk_atoms=cfg.train.chunk_atoms)

    def predict(self, model, data: StructureSet, rnd: int):
        if rnd != 0:
            return self.backend.predict(model, data)
        key = ("predict", id(model), id(data))  # round-0 models live as long as the run (``round0``)
        if key not in self.round0_eval:
            self.round0_eval[key] = self.backend.predict(model, data)
        return self.round0_eval[key]

    def select(self, method, models, candidates: StructureSet, labelled: StructureSet, k: int, rng, timings: dict,
               known: dict | None = None):
        return self.backend.select(method, models, candidates, labelled, k, rng, timings, known)

    def uncertainty(self, method, models, structures: StructureSet, labelled: StructureSet, rnd: int,
                    keep: dict | None = None):
        seed = seed_int(self.cfg.seed, UNCERTAINTY_STREAM, rnd)
        if rnd != 0:
            return self.backend.uncertainty(method, models, structures, labelled, seed, keep)
        # round 0: every strategy has the same models, labelled set and pool, so one pass per method
        key = ("uncertainty", method.kernel, method.base, tuple(id(m) for m in models))  # not the rule
        if key not in self.round0_eval:
            kept: dict = {}
            self.round0_eval[key] = (self.backend.uncertainty(method, models, structures, labelled, seed, kept), kept)
        unc, kept = self.round0_eval[key]
        if keep is not None:
            keep.update(kept)
        return unc

    @staticmethod
    def _unc_method(method):
        """The method whose uncertainty a strategy reports: its own, or GP(LL) for one without."""
        return method if (method.kernel.startswith("qbc") or method.base) else DEFAULT_UNCERTAINTY

    def calibration(self, method, models, train: StructureSet, rnd: int, E, Fs, unlabelled: np.ndarray,
                    known: dict | None = None) -> dict:
        """``unc_pearson`` and the calibration columns of the round's uncertainty.

        The uncertainty is the method's own (QBC spread, or the GP posterior σ of its base
        features; FEAT(LL)'s for methods with neither), on the test, validation and unlabelled
        pool structures in one pass. Its error: the per-structure RMS force error (eV/Å), or
        |ΔE| per atom for QBC(E) and sets without forces. The σ factor is fitted on the
        validation split; ``mae_pred`` predicts the test ``force_mae`` (σ as a per-component force
        σ, weighted by atoms) or ``energy_mae`` from the unlabelled pool.
        ``known`` receives what the selection can reuse for the unlabelled
        pool (FEAT(LL), QBC(F) scores; :func:`~alhelpers.atomistic.selection.select_batch`).
        """
        unc_method = self._unc_method(method)
        forces = self.test.has_forces and unc_method.kernel != "qbc-e"
        val_idx = self.val_idx if self.val is not None else np.empty(0, dtype=np.int64)
        idx = np.concatenate([self.test_idx, val_idx, unlabelled]).astype(np.int64)
        kept: dict = {}
        unc = self.uncertainty(unc_method, models, self.data.subset(idx), train, rnd, keep=kept)
        n_t, n_v = len(self.test_idx), len(val_idx)
        if known is not None and unc_method == method:  # the selection's own features, pool rows
            known.update({k: (v[0][n_t + n_v:], v[1]) if k == "ll" else v[n_t + n_v:] for k, v in kept.items()})

        def error(E_, F_, ref: StructureSet) -> np.ndarray:
            return force_rmse_per_structure(F_, ref) if forces else np.abs(E_ - ref.energy) / ref.n_atoms

        err = error(E, Fs, self.test)
        cal_err = cal_unc = None
        if n_v:
            Ev, Fv = self.predict(models[0], self.val, rnd)
            cal_err, cal_unc = error(Ev, Fv, self.val), unc[n_t:n_t + n_v]
        pool_unc = unc[n_t + n_v:]
        weights = self.data.n_atoms[unlabelled] if forces else None
        return {"unc_pearson": _pearson(unc[:n_t], err),
                **round_calibration(err, unc[:n_t], cal_err=cal_err, cal_sigma=cal_unc, pool_sigma=pool_unc,
                                    pool_weights=weights)}

    def models(self, track: Track, train: StructureSet, n_members: int, rnd: int):
        """The round's models (member 0 is evaluated), their epochs and fit times."""
        labelled = tuple(sorted(track.state.labels.index))
        models, epochs, fit_s, extra_s = [], 0, 0.0, 0.0
        for member in range(n_members):
            # round 0: every strategy starts from the same set, so each member is trained once
            # (a committee's member 0 is the other strategies' model: same seed, same data)
            fitted = self.round0.get((labelled, member)) if rnd == 0 else None
            if fitted is None:
                ts = time.perf_counter()
                prev = track.state.prev
                m, ep = self.fit(train, member, rnd, prev[member] if (self.cfg.warm_start and prev) else None)
                fitted = (m, ep, time.perf_counter() - ts)
                if rnd == 0:
                    self.round0[(labelled, member)] = fitted
            models.append(fitted[0])
            if member == 0:
                epochs, fit_s = fitted[1], fitted[2]
            else:
                extra_s += fitted[2]
        return models, epochs, fit_s, extra_s

    def round(self, track: Track, rnd: int) -> Step:
        cfg, data = self.cfg, self.data
        method = cfg.methods[track.strategy]
        n_members = cfg.ensemble if method.kernel.startswith("qbc") else 1
        label_s, labelled_now = 0.0, {"index": [], "energy": [], "forces": []}
        if track.state is None:  # a fresh start labels the start set; a resumed one reads its labels
            track.state = _State(_Labels())
            for extra in track.extras:
                track.state.labels.add(extra)
            if not track.extras:
                labelled_now, label_s = _ask(self.oracle, data, track.labelled)
                track.state.labels.add(labelled_now)
            if track.snapshot is not None:  # resumed with warm starts: the last round's models
                track.state.prev = self._restore(track.snapshot)
        labels = track.state.labels
        train = labels.as_set(data)
        models, epochs, fit_s, extra_s = self.models(track, train, n_members, rnd)
        track.state.prev = models
        E, Fs = self.predict(models[0], self.test, rnd)
        row = {"system": cfg.system, "model": cfg.model, "strategy": track.strategy, "batch": cfg.batch, "seed": cfg.seed,
               "round": rnd, "n_labelled": len(labels.index), "n_atoms_labelled": int(train.n_atoms.sum()),
               **potential_metrics(self.test, E, Fs if self.test.has_forces else None)}
        unlabelled = self.pool[np.isin(self.pool, np.asarray(labels.index, dtype=np.int64), invert=True)]
        known: dict = {}
        row.update(self.calibration(method, models, train, rnd, E, Fs, unlabelled, known))
        timings = {"feature_s": extra_s}
        queried = np.empty(0, dtype=np.int64)
        note = stop_reason(row["mae_pred"], cfg.target_mae,
                           " eV/Å" if (self.test.has_forces and self._unc_method(method).kernel != "qbc-e") else " eV/atom")
        if not note and len(labels.index) < cfg.max_size and len(unlabelled):
            k = min(cfg.batch, cfg.max_size - len(labels.index), len(unlabelled))
            pos = self.select(method, models, data.subset(unlabelled), train, k, stream(cfg.seed, track.strategy, rnd),
                              timings, known)
            queried = unlabelled[pos]
            payload, secs = _ask(self.oracle, data, queried)
            labels.add(payload)
            label_s += secs
            for key in labelled_now:
                labelled_now[key] = labelled_now[key] + payload[key]
            if len(unlabelled) == k and len(labels.index) < cfg.max_size:
                note = f"pool exhausted at {len(labels.index)} structures"
        row.update(fit_s=fit_s, feature_s=timings["feature_s"], query_s=timings.get("query_s", 0.0),
                   label_s=label_s, epochs=epochs, note=note)
        if self.progress is not None:
            self.progress(f"[{cfg.system} {track.strategy} seed {cfg.seed}] round {rnd}: n={row['n_labelled']} "
                          f"E {row['energy_mae'] * 1000:.1f} meV/atom, F {row['force_mae']:.3f} eV/Å "
                          f"(fit {fit_s:.1f} s, features {row['feature_s']:.2f} s, select {row['query_s']:.2f} s)")
        return Step(row, queried, labelled_now, snapshot=self._snapshot(models) if cfg.warm_start else None)

    def _snapshot(self, models: list) -> list:
        """The round's models as the next round warm-starts from them (saved with the checkpoint)."""
        return [self.backend.snapshot(m) for m in models]

    def _restore(self, snapshot: list) -> list:
        return [self.backend.restore(m) for m in snapshot]


class _OwnBackend:
    """The project's potential (``gm``): its own training, prediction, features and selection."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def setup(self) -> None:
        """A set small enough is frozen once for the whole run (:class:`FrozenStore`)."""
        if int(self.run.data.n_atoms.sum()) <= FROZEN_STORE_MAX_ATOMS:
            self.run.store_frozen()

    def fit(self, train: StructureSet, seed: int, init_from=None):
        run, cfg = self.run, self.run.cfg
        kw = {} if cfg.cutoff is None else {"descriptor": _descriptor(run.data.species, cfg.cutoff)}
        model, hist = fit_potential(train, run.val, cfg.train if init_from is None else cfg.warm_train,
                                    species=run.data.species, hidden=cfg.hidden, seed=seed, cache=run.cache,
                                    init_from=init_from, restandardise=init_from is not None, **kw)
        return model, len(hist)

    def predict(self, model, data: StructureSet):
        return predict(model, data, cache=self.run.cache)

    def select(self, method, models, candidates, labelled, k, rng, timings, known):
        return select_batch(method, models=models, candidates=candidates, labelled=labelled, batch=k, rng=rng,
                            rp_dim=self.run.cfg.rp_dim, cache=self.run.cache, timings=timings, known=known)

    def uncertainty(self, method, models, structures, labelled, seed, keep):
        return uncertainty(method, models, structures, labelled, rp_dim=self.run.cfg.rp_dim, seed=seed,
                           cache=self.run.cache, keep=keep)

    def snapshot(self, model):
        return model

    def restore(self, model):
        return model


class _AdapterBackend(abc.ABC):
    """Any potential behind a :class:`~alhelpers.anymodel.adapter.PotentialAdapter` (MACE, CHGNet):
    the model-agnostic training, features and selection of :mod:`alhelpers.anymodel`. Subclasses
    say how a round's model starts (:meth:`start`) and how a saved model is wrapped again."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    def setup(self) -> None:
        """Nothing to prepare for the whole run (structures are prepared as they are used)."""

    @abc.abstractmethod
    def start(self, train: StructureSet, seed: int):
        """The adapter a round's first fit starts from."""

    @abc.abstractmethod
    def wrap(self, model):
        """The adapter of a model saved with a checkpoint."""

    def fit(self, train: StructureSet, seed: int, init_from=None):
        import copy

        from alhelpers.anymodel.train import fit_adapter

        cfg = self.run.cfg
        if init_from is not None:
            adapter = copy.copy(init_from)
            adapter.model = copy.deepcopy(init_from.model)
        else:
            adapter = self.start(train, seed)
        adapter, hist = fit_adapter(adapter, train, self.run.val, cfg.train if init_from is None else cfg.warm_train,
                                    seed=seed)
        return adapter, len(hist)

    def predict(self, model, data: StructureSet):
        from alhelpers.anymodel.train import predict_adapter

        return predict_adapter(model, data.structures)

    def select(self, method, models, candidates, labelled, k, rng, timings, known):
        from alhelpers.anymodel.select import adapter_select

        return adapter_select(method, models[0], candidates.structures, labelled.structures, k, rng,
                              committee=models, rp_dim=self.run.cfg.rp_dim,
                              labels=(candidates.energy, candidates.forces), timings=timings)

    def uncertainty(self, method, models, structures, labelled, seed, keep):
        from alhelpers.anymodel.select import adapter_uncertainty

        return adapter_uncertainty(method, models[0], structures.structures, labelled.structures, committee=models,
                                   rp_dim=self.run.cfg.rp_dim, seed=seed)

    def snapshot(self, adapter):
        return adapter.model

    def restore(self, model):
        return self.wrap(model)


class _MaceBackend(_AdapterBackend):
    """A small MACE from scratch (:func:`alhelpers.anymodel.mace.small_mace`)."""

    def start(self, train: StructureSet, seed: int):
        from alhelpers.anymodel.mace import small_mace

        run = self.run
        kw = {} if run.cfg.cutoff is None else {"r_max": float(run.cfg.cutoff)}
        return small_mace(train.structures, train.energy, train.forces, species=run.data.species, seed=seed,
                          dtype=run.cfg.train.torch_dtype, prepared=run.prepared, **kw)

    def wrap(self, model):
        from alhelpers.anymodel.mace import MaceAdapter

        return MaceAdapter(model, prepared=self.run.prepared)


class _ChgnetBackend(_AdapterBackend):
    """The pretrained CHGNet, fine-tuned: every round starts from the pretrained weights with the
    per-element energy reference refitted to the labelled structures' energies
    (:func:`alhelpers.anymodel.chgnet.refit_reference`); ``seed`` orders the mini-batches."""

    def initial(self, method, pool: StructureSet, k: int, rng) -> np.ndarray:
        """Positions in ``pool`` of the start set, chosen by ``method`` on the pretrained model's
        gradient features with no labelled structure (selection order)."""
        from alhelpers.anymodel.chgnet import pretrained_chgnet
        from alhelpers.anymodel.select import initial_select

        return initial_select(method, pretrained_chgnet(prepared=self.run.prepared), pool.structures, k, rng,
                              rp_dim=self.run.cfg.rp_dim)

    def start(self, train: StructureSet, seed: int):
        from alhelpers.anymodel.chgnet import pretrained_chgnet, refit_reference

        adapter = pretrained_chgnet(prepared=self.run.prepared)
        refit_reference(adapter, train.structures, train.energy)
        return adapter

    def wrap(self, model):
        from alhelpers.anymodel.chgnet import ChgnetAdapter

        return ChgnetAdapter(model, prepared=self.run.prepared)


#: How each potential of :data:`~alhelpers.atomistic.config.MODELS` is trained, predicts and selects.
BACKENDS: dict[str, type] = {"gm": _OwnBackend, "mace": _MaceBackend, "chgnet": _ChgnetBackend}


def _descriptor(species, cutoff: float):
    from alhelpers.atomistic.descriptor import DescriptorConfig

    return DescriptorConfig(species=tuple(species), cutoff=float(cutoff))


def _store(checkpoints: str | Path, cfg: PotentialsConfig, data: StructureSet) -> RoundCheckpoints:
    """The checkpoints of the run ``cfg`` on ``data`` (its folder: the hash of the config, the data
    and the row columns, so that rows of another layout are recomputed, never mixed in)."""
    identity = {**cfg.to_dict(), "columns": list(POTENTIAL_COLUMNS)}
    return RoundCheckpoints(run_folder(checkpoints, cfg.system, f"seed{cfg.seed}", config=identity,
                                       data=[data_hash(data).encode()]))


def queried_structures(checkpoints: str | Path, cfg: PotentialsConfig, data: StructureSet) -> pd.DataFrame:
    """The structures every strategy of the run asked labels for: ``strategy, round, rank, index``
    (``index`` in ``data``; ``rank`` 1 = selected first in that round), from its checkpoints."""
    store = _store(checkpoints, cfg, data)
    rows = [{"strategy": strategy, "round": rnd, "rank": rank, "index": int(i)}
            for strategy in cfg.strategies
            for rnd, payload in enumerate(store.load(strategy, cfg.rounds))
            for rank, i in enumerate(payload["queried"], start=1)]
    return pd.DataFrame(rows, columns=["strategy", "round", "rank", "index"])


def run_potentials(
    data: StructureSet,
    cfg: PotentialsConfig,
    *,
    oracle: Oracle | None = None,
    checkpoints: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    stop_after_round: int | None = None,
) -> pd.DataFrame:
    """Run every strategy of ``cfg`` for its seed; tidy rows with :data:`POTENTIAL_COLUMNS`.

    Args:
        data: The structures (labelled for pool-based AL; val/test are always labelled through
            the oracle, pool structures only when selected).
        cfg: The run's configuration (system, seed, strategies, sizes, training).
        oracle: Where labels come from: default :class:`PoolOracle` (reveal the set's labels);
            a :class:`~alhelpers.atomistic.oracle.CalculatorOracle` labels on the fly.
        checkpoints: Folder for per-round checkpoints (None: none); finished rounds are resumed.
        progress: Called with one line per strategy and round (e.g. ``print``).
        stop_after_round: End after this round (as if interrupted; tests).

    ``df.attrs["resumed_rounds"]`` says how many rounds were read back from checkpoints.
    """
    oracle = oracle if oracle is not None else PoolOracle(data)
    split = split_indices(len(data), n_pool=cfg.n_pool, n_val=cfg.n_val, n_test=cfg.n_test, seed=cfg.seed)
    run = _Run(data, cfg, oracle, split["pool"],
               _labelled_split(oracle, data, split["val"]) if cfg.n_val else None,
               _labelled_split(oracle, data, split["test"]), test_idx=np.asarray(split["test"], dtype=np.int64),
               val_idx=np.asarray(split["val"], dtype=np.int64), progress=progress)
    run.backend.setup()
    store = None
    if checkpoints is not None:
        store = _store(checkpoints, cfg, data)
        cfg.save(store.folder / "config.json")
    init = split["pool"][: cfg.n_init]
    if cfg.init_method != "random":  # chosen on the pretrained model's features, before any label
        pool = data.subset(split["pool"])
        init = split["pool"][run.backend.initial(cfg.methods[cfg.init_method], pool, cfg.n_init,
                                                 stream(cfg.seed, "init", cfg.init_method))]
    tracks, n_done = run_rounds(cfg.strategies, cfg.rounds, init,
                                lambda rnd, active: [run.round(t, rnd) for t in active],
                                checkpoints=store, keep_order=True, label=f"{cfg.system} seed {cfg.seed} ",
                                stop_after_round=stop_after_round)
    df = pd.DataFrame([r for t in tracks for r in t.rows], columns=list(POTENTIAL_COLUMNS))
    df.attrs["resumed_rounds"] = n_done
    return df
