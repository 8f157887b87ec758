"""Batch-mode deep active learning for interatomic potentials (Track B, STUDY §7–§8).

One run = one data set, one method, one seed: start from ``n_init`` random pool structures,
train the potential (:func:`~alhelpers.atomistic.train.fit_potential`, early stopping on a fixed
validation split), score it on a fixed test split, select the next ``batch`` structures with the
method, ask the oracle for their labels, and repeat until ``max_size`` structures are labelled.

Method names are ``random`` or ``<rule>-<kernel>`` (STUDY §7):

* rules: ``maxdiag``, ``maxdet``, ``maxdist``, ``lcmd`` (:mod:`alhelpers.select.rules`, unchanged);
* kernels: ``qbc-e``/``qbc-f`` (ensemble spread of energies / forces of ``ensemble`` models),
  ``ae-e``/``ae-f`` (absolute error against the pool's labels — an ORACLE upper bound, only with
  a labelled pool), ``rnd`` (uniform scores), ``feat-ll``/``feat-rp`` (FEAT(LL)/FEAT(RP) of the
  potential, :mod:`alhelpers.atomistic.features`) and ``gp-ll``/``gp-rp`` (their GP posterior
  with the trace-rule σ²). MAXDIST and LCMD run in TP mode (the labelled structures are centres).

Every random choice comes from a generator derived from ``(seed, method, round)``; the split and
the start set depend on the seed only, so all methods of a seed share them (and their round-0
model, which is trained once per call of :func:`run_potentials`).

Each finished round is checkpointed (the labelled set after the selection and the rows so far)
under a folder keyed by the configuration and a hash of the data, so an interrupted run resumes
at the next round and a changed setting never resumes a stale run.

Result rows (:data:`POTENTIAL_COLUMNS`): energies per atom in eV/atom, forces per Cartesian
component in eV/Å (MAXE: the largest absolute component error), ``unc_pearson``: Pearson
correlation over the test structures between the method's uncertainty and the error (QBC(F)/AE(F)
against each structure's RMS force error, QBC(E) against |ΔE|/atom, the GP posterior standard
deviation of its features for ``feat``/``gp`` kernels; random/rnd/ae use GP(LL)); times in seconds:
``train_s`` (the evaluated potential), ``feature_s`` (features, GP transform, and the extra
ensemble members a QBC kernel needs), ``selection_s`` (the rule), ``label_s`` (the oracle).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.atomistic.data import split_indices
from alhelpers.atomistic.features import (
    ae_energy,
    ae_forces,
    force_rmse_per_structure,
    ll_features,
    qbc_energy,
    qbc_forces,
    rp_features,
)
from alhelpers.atomistic.neighbours import GraphCache
from alhelpers.atomistic.oracle import Oracle, PoolOracle
from alhelpers.atomistic.structures import StructureSet
from alhelpers.atomistic.train import TrainConfig, fit_potential, predict
from alhelpers.files import UnreadableFileError, read_json, write_json
from alhelpers.formation.loop import stream
from alhelpers.select import features as SF
from alhelpers.select import rules as R
from alhelpers.select.bmdal import bmdal_select

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "POTENTIAL_COLUMNS",
    "PotentialsConfig",
    "parse_potential_method",
    "compare_with_random",
    "potential_metrics",
    "run_potentials",
    "select_batch",
]

RULES = ("maxdiag", "maxdet", "maxdist", "lcmd")
KERNELS = ("qbc-e", "qbc-f", "ae-e", "ae-f", "rnd", "feat-ll", "feat-rp", "gp-ll", "gp-rp")

#: Every method of STUDY §7 for a potential (``random`` is MAXDIAG+RND under its usual name).
METHODS: tuple[str, ...] = (
    "random", "maxdiag-qbc-e", "maxdiag-qbc-f", "maxdiag-ae-e", "maxdiag-ae-f",
    "maxdiag-gp-ll", "maxdiag-gp-rp", "maxdet-gp-ll", "maxdet-gp-rp",
    "maxdist-gp-ll", "maxdist-gp-rp", "maxdist-feat-ll", "maxdist-feat-rp",
    "lcmd-feat-ll", "lcmd-feat-rp",
)
#: The seven methods of the Track B study (issue: TiO2 learning curves).
DEFAULT_METHODS: tuple[str, ...] = (
    "random", "maxdiag-qbc-f", "maxdiag-gp-ll", "maxdet-gp-ll", "maxdist-feat-ll", "lcmd-feat-ll", "lcmd-feat-rp",
)

#: Training settings of the Track B study: float32 (the same errors as float64 at about half the
#: time, measured on TiO2) and at most 80 epochs with early stopping, so that 7 methods × 5 seeds ×
#: 10 rounds fit into an hour on two CPU cores.
STUDY_TRAIN = TrainConfig(dtype="float32", max_epochs=80, patience=20)

POTENTIAL_COLUMNS: tuple[str, ...] = (
    "dataset", "method", "batch", "seed", "round", "n_train", "n_atoms_train",
    "energy_mae", "energy_rmse", "energy_maxe", "force_mae", "force_rmse", "force_maxe",
    "unc_pearson", "train_s", "feature_s", "selection_s", "label_s", "epochs", "note",
)


def parse_potential_method(name: str) -> tuple[str, str]:
    """``"lcmd-feat-rp"`` → ``("lcmd", "feat-rp")``; ``"random"`` → ``("maxdiag", "rnd")``."""
    if name == "random":
        return "maxdiag", "rnd"
    rule, _, kernel = name.partition("-")
    if rule not in RULES or kernel not in KERNELS:
        raise ValueError(
            f"unknown method {name!r}: use 'random' or '<rule>-<kernel>' with rule in {RULES} and "
            f"kernel in {KERNELS}, e.g. 'lcmd-feat-ll' (the study's are {list(DEFAULT_METHODS)})"
        )
    if kernel in ("qbc-e", "qbc-f", "ae-e", "ae-f", "rnd") and rule != "maxdiag":
        raise ValueError(f"{kernel!r} is a diagonal kernel: only maxdiag applies, got {name!r}")
    if rule == "lcmd" and kernel.startswith("gp"):
        raise ValueError(f"LCMD runs on plain features (TP mode), got {name!r}; use 'lcmd-feat-…'")
    return rule, kernel


@dataclass(frozen=True)
class PotentialsConfig:
    """Everything one Track B run depends on (one object per run; saved with the results).

    Attributes:
        dataset: Name of the data set (``offline``, ``tio2``, ``lmnto``, ``qm9``), for the rows.
        n_pool, n_val, n_test: Split sizes (disjoint, from the seed).
        n_init, batch, max_size: Start set, structures added per round, stop size.
        ensemble: Models of the QBC kernels (the evaluated potential is member 0).
        rp_dim: Sketch dimension p of FEAT(RP).
        hidden: Hidden layer widths of the per-atom MLP.
        cutoff: Descriptor cutoff in Å (None: the descriptor's default).
        train: Training hyper-parameters (default :data:`STUDY_TRAIN`; the seed is set per model
            from the run's seed).
        warm_start: Start each round's training from the previous round's weights.
    """

    dataset: str = "offline"
    n_pool: int = 700
    n_val: int = 50
    n_test: int = 250
    n_init: int = 10
    batch: int = 10
    max_size: int = 100
    ensemble: int = 3
    rp_dim: int = SF.DEFAULT_RP_DIM
    hidden: tuple[int, ...] = (512, 512)
    cutoff: float | None = None
    train: TrainConfig = field(default_factory=lambda: STUDY_TRAIN)
    warm_start: bool = False

    def __post_init__(self) -> None:
        for name in ("n_pool", "n_init", "batch", "max_size", "ensemble", "rp_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_test < 1:
            raise ValueError(f"n_test must be >= 1 (the errors are measured on it), got {self.n_test}")
        if self.n_init > self.n_pool:
            raise ValueError(f"n_init ({self.n_init}) cannot exceed n_pool ({self.n_pool})")
        if self.max_size < self.n_init:
            raise ValueError(f"max_size ({self.max_size}) must be >= n_init ({self.n_init})")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @property
    def rounds(self) -> int:
        """Rounds (models trained) until ``max_size``: the start set plus one per batch."""
        return 1 + math.ceil((self.max_size - self.n_init) / self.batch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def for_dataset(cls, name: str, n_structures: int, **overrides) -> "PotentialsConfig":
        """Split sizes scaled to a set: 700/50/250 for TiO2 (1,000), the same proportions elsewhere."""
        if n_structures >= 1000:
            sizes = {"n_pool": 700, "n_val": 50, "n_test": 250}
        else:
            sizes = {"n_pool": int(0.7 * n_structures), "n_val": max(1, int(0.05 * n_structures))}
            sizes["n_test"] = n_structures - sizes["n_pool"] - sizes["n_val"]
        return cls(dataset=name, **{**sizes, **overrides})

    @classmethod
    def smoke(cls, name: str, **overrides) -> "PotentialsConfig":
        """A tiny run to check the pipeline in seconds (small split and network, few epochs)."""
        kw = dict(dataset=name, n_pool=40, n_val=8, n_test=16, n_init=4, batch=4, max_size=12, ensemble=2,
                  rp_dim=64, hidden=(32, 32), train=TrainConfig(max_epochs=15, patience=5, dtype="float32"))
        return cls(**{**kw, **overrides})


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


# --------------------------------------------------------------------------- selection


def _base_features(base: str, model, sets: Sequence[StructureSet], *, p: int, seed: int,
                   cache: GraphCache) -> list[np.ndarray]:
    """FEAT(LL) or FEAT(RP) of several sets with one map (one call, so RP uses the same matrices)."""
    sizes = [len(s) for s in sets]
    structures = [a for s in sets for a in s.structures]
    if base == "ll":
        phi = ll_features(model, structures, cache=cache)
    else:
        phi = rp_features(model, structures, p=p, seed=seed, cache=cache)
    return np.split(phi, np.cumsum(sizes)[:-1])


def select_batch(
    method: str,
    *,
    models: Sequence,
    candidates: StructureSet,
    labelled: StructureSet,
    batch: int,
    rng: np.random.Generator,
    rp_dim: int = SF.DEFAULT_RP_DIM,
    cache: GraphCache | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Positions in ``candidates`` of the next batch (selection order) for a Track B method.

    ``models[0]`` is the current potential; QBC kernels use all ``models``. AE kernels read the
    candidates' labels (an oracle, benchmarks only) and raise if they are missing. Ties are broken
    at random: the candidates are permuted with ``rng`` before the (lowest-position-wins) rule.
    ``timings`` receives ``feature_s`` and ``selection_s``.
    """
    rule, kernel = parse_potential_method(method)
    cache = cache if cache is not None else GraphCache()
    n = len(candidates)
    batch = min(int(batch), n)
    perm = rng.permutation(n)
    cand = candidates.subset(perm)
    t0 = time.perf_counter()
    diag: np.ndarray | None = None
    phi_c = phi_l = None
    if kernel == "rnd":
        diag = SF.rnd_scores(n, rng=rng)
    elif kernel == "qbc-e":
        diag = qbc_energy(models, cand, cache=cache)
    elif kernel == "qbc-f":
        diag = qbc_forces(models, cand, cache=cache)
    elif kernel.startswith("ae"):
        if not np.isfinite(cand.energy).all():
            raise ValueError(f"{method} needs the candidates' labels (an oracle upper bound): use a labelled pool")
        diag = ae_forces(models[0], cand, cache=cache) if kernel == "ae-f" else ae_energy(models[0], cand, per_atom=True, cache=cache)
    else:
        seed = int(rng.integers(2**62))
        phi_c, phi_l = _base_features(kernel.split("-")[1], models[0], [cand, labelled], p=rp_dim, seed=seed, cache=cache)
    t1 = time.perf_counter()
    if diag is not None:
        pos = R.maxdiag(diag, batch)
    else:
        pos = bmdal_select(rule, phi_c, phi_l, batch, gp=kernel.startswith("gp"), device="cpu")
    t2 = time.perf_counter()
    if timings is not None:
        timings["feature_s"] = timings.get("feature_s", 0.0) + t1 - t0
        timings["selection_s"] = timings.get("selection_s", 0.0) + t2 - t1
    return perm[np.asarray(pos, dtype=np.int64)]


def _uncertainty(kernel: str, models: Sequence, test: StructureSet, labelled: StructureSet, *,
                 rp_dim: int, seed: int, cache: GraphCache) -> np.ndarray:
    """The method's uncertainty on the test structures (see the module docstring)."""
    if kernel == "qbc-f":
        return qbc_forces(models, test, cache=cache)
    if kernel == "qbc-e":
        return qbc_energy(models, test, per_atom=True, cache=cache)
    base = "rp" if kernel.endswith("rp") else "ll"
    phi_t, phi_l = _base_features(base, models[0], [test, labelled], p=rp_dim, seed=seed, cache=cache)
    A = SF.gp_posterior_matrix(phi_l).numpy()
    psi = phi_t @ A
    return np.sqrt((psi * psi).sum(1))


# --------------------------------------------------------------------------- the loop


def _model_seed(seed: int, member: int, rnd: int) -> int:
    return int(np.random.SeedSequence([int(seed), member, rnd]).generate_state(1)[0])


def data_hash(data: StructureSet) -> str:
    """sha256 (12 hex) of a set's species, positions, cells and labels."""
    h = hashlib.sha256()
    for a in data.structures:
        h.update(np.asarray(a.numbers, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(a.positions, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(a.cell.array, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(data.energy, dtype=np.float64).tobytes())
    return h.hexdigest()[:12]


def checkpoint_dir(root: Path, cfg: PotentialsConfig, data: StructureSet, seed: int) -> Path:
    """Checkpoint folder of one seed, keyed by the configuration and the data."""
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    h.update(data_hash(data).encode())
    return Path(root) / cfg.dataset / f"seed{seed}" / h.hexdigest()[:12]


@dataclass
class _Labels:
    """Labelled structures by dataset index, with their (oracle) labels."""

    index: list[int]
    energy: list[float]
    forces: list[np.ndarray]

    def as_set(self, data: StructureSet) -> StructureSet:
        sub = data.subset(self.index)
        sub.energy = np.asarray(self.energy, dtype=np.float64)
        sub.forces = [np.asarray(f, dtype=np.float64) for f in self.forces]
        return sub


def _label(oracle: Oracle, data: StructureSet, indices: Sequence[int], labels: _Labels) -> float:
    t0 = time.perf_counter()
    if isinstance(oracle, PoolOracle) and oracle.data is data:
        e, f = oracle.reveal(indices)
    else:
        e, f = oracle.label([data.structures[i] for i in indices])
    labels.index.extend(int(i) for i in indices)
    labels.energy.extend(float(v) for v in e)
    labels.forces.extend(np.asarray(x, dtype=np.float64) for x in f)
    return time.perf_counter() - t0


def _labelled_split(oracle: Oracle, data: StructureSet, indices: np.ndarray) -> StructureSet:
    lab = _Labels([], [], [])
    _label(oracle, data, indices, lab)
    return lab.as_set(data)


def run_potentials(
    data: StructureSet,
    cfg: PotentialsConfig,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    seed: int = 0,
    oracle: Oracle | None = None,
    checkpoints: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Run every method for one seed; tidy rows with :data:`POTENTIAL_COLUMNS`.

    Args:
        data: The structures (labelled for pool-based AL; val/test are always labelled through
            the oracle, pool structures only when selected).
        cfg: The run's configuration.
        methods: Method names (see the module docstring).
        seed: Seed of the split, the start set, the models and the selections.
        oracle: Where labels come from: default :class:`PoolOracle` (reveal the set's labels);
            a :class:`~alhelpers.atomistic.oracle.CalculatorOracle` labels on the fly.
        checkpoints: Folder for per-round checkpoints (None: none); finished rounds are resumed.
        progress: Called with one line per round (e.g. ``print``).
    """
    for m in methods:
        parse_potential_method(m)
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods repeat: {list(methods)}")
    oracle = oracle if oracle is not None else PoolOracle(data)
    split = split_indices(len(data), n_pool=cfg.n_pool, n_val=cfg.n_val, n_test=cfg.n_test, seed=seed)
    pool = split["pool"]
    val = _labelled_split(oracle, data, split["val"]) if cfg.n_val else None
    test = _labelled_split(oracle, data, split["test"])
    species = data.species
    cache = GraphCache()
    run_dir = checkpoint_dir(Path(checkpoints), cfg, data, seed) if checkpoints is not None else None
    shared: dict[tuple, tuple] = {}  # round-0 models, shared by the methods
    rows: list[dict] = []
    for method in methods:
        rows.extend(_run_method(data, cfg, method, seed, oracle, pool, val, test, species, cache, run_dir, shared, progress))
    return pd.DataFrame(rows, columns=list(POTENTIAL_COLUMNS))


def _fit(cfg: PotentialsConfig, train: StructureSet, val, species, seed: int, member: int, rnd: int,
         cache: GraphCache, init_from=None):
    tcfg = replace(cfg.train, seed=_model_seed(seed, member, rnd))
    kw = {} if cfg.cutoff is None else {"descriptor": _descriptor(species, cfg.cutoff)}
    model, hist = fit_potential(train, val, tcfg, species=species, hidden=cfg.hidden, cache=cache,
                                init_from=init_from, **kw)
    return model, len(hist)


def _descriptor(species, cutoff: float):
    from alhelpers.atomistic.descriptor import DescriptorConfig

    return DescriptorConfig(species=tuple(species), cutoff=float(cutoff))


def _last_checkpoint(folder: Path) -> dict | None:
    """The newest readable round checkpoint of one method; unreadable ones are reported, removed
    and their rounds recomputed."""
    import warnings

    for path in sorted(folder.glob("round*.json"), reverse=True):
        try:
            return read_json(path, todo="It is removed and that round is recomputed.")
        except UnreadableFileError as err:
            warnings.warn(str(err), stacklevel=3)
            path.unlink()
    return None


def _run_method(data, cfg, method, seed, oracle, pool, val, test, species, cache, run_dir, shared, progress) -> list[dict]:
    rule, kernel = parse_potential_method(method)
    n_members = cfg.ensemble if kernel.startswith("qbc") else 1
    labels = _Labels([], [], [])
    rows: list[dict] = []
    start_round = 0
    label_s = 0.0
    if run_dir is not None:  # resume from the last finished round
        ck = _last_checkpoint(run_dir / method)
        if ck is not None:
            rows = ck["rows"]
            labels = _Labels(ck["index"], ck["energy"], [np.asarray(f) for f in ck["forces"]])
            start_round = ck["round"] + 1
            if ck.get("finished"):
                return rows
    if not labels.index:
        label_s = _label(oracle, data, pool[: cfg.n_init], labels)
    prev = None
    for rnd in range(start_round, cfg.rounds):
        train = labels.as_set(data)
        key = (tuple(sorted(labels.index)), n_members)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if rnd == 0 and key in shared:
            models, epochs, train_s, extra_s = shared[key]
        else:
            models, epochs = [], 0
            for member in range(n_members):
                ts = time.perf_counter()
                init = prev[member] if (cfg.warm_start and prev is not None) else None
                m, ep = _fit(cfg, train, val, species, seed, member, rnd, cache, init)
                models.append(m)
                if member == 0:
                    epochs, train_s = ep, time.perf_counter() - ts
            extra_s = time.perf_counter() - t0 - train_s
            if rnd == 0:
                shared[key] = (models, epochs, train_s, extra_s)
        prev = models
        E, Fs = predict(models[0], test, cache=cache)
        row = {"dataset": cfg.dataset, "method": method, "batch": cfg.batch, "seed": seed, "round": rnd,
               "n_train": len(labels.index), "n_atoms_train": int(train.n_atoms.sum()),
               **potential_metrics(test, E, Fs if test.has_forces else None)}
        unc_kernel = kernel if kernel.startswith(("qbc", "feat", "gp")) else "gp-ll"
        unc = _uncertainty(unc_kernel, models, test, train, rp_dim=cfg.rp_dim,
                           seed=_model_seed(seed, 99, rnd), cache=cache)
        err = (force_rmse_per_structure(Fs, test) if test.has_forces and unc_kernel != "qbc-e"
               else np.abs(E - test.energy) / test.n_atoms)
        row["unc_pearson"] = _pearson(unc, err)
        unlabelled = np.setdiff1d(pool, np.asarray(labels.index, dtype=np.int64), assume_unique=True)
        unlabelled = pool[np.isin(pool, unlabelled)]  # keep the pool's (random) order
        finished = len(labels.index) >= cfg.max_size or len(unlabelled) == 0
        note = ""
        if not finished:
            k = min(cfg.batch, cfg.max_size - len(labels.index), len(unlabelled))
            timings["feature_s"] = extra_s
            pos = select_batch(method, models=models, candidates=data.subset(unlabelled), labelled=train,
                               batch=k, rng=stream(int(seed), method, rnd), rp_dim=cfg.rp_dim, cache=cache,
                               timings=timings)
            label_s += _label(oracle, data, unlabelled[pos], labels)
            if len(unlabelled) == k and len(labels.index) < cfg.max_size:
                note = f"pool exhausted at {len(labels.index)} structures"
        row.update(train_s=train_s, feature_s=timings.get("feature_s", extra_s),
                   selection_s=timings.get("selection_s", 0.0), label_s=label_s, epochs=epochs, note=note)
        label_s = 0.0
        rows.append(row)
        if progress is not None:
            progress(f"[{cfg.dataset} {method} seed {seed}] round {rnd}: n={row['n_train']} "
                     f"E {row['energy_mae'] * 1000:.1f} meV/atom, F {row['force_mae']:.3f} eV/Å "
                     f"(train {train_s:.1f} s, features {row['feature_s']:.2f} s, select {row['selection_s']:.2f} s)")
        if run_dir is not None:
            write_json(run_dir / method / f"round{rnd:02d}.json", {
                "round": rnd, "finished": finished, "rows": rows, "index": labels.index,
                "energy": labels.energy, "forces": [f.tolist() for f in labels.forces]}, indent=None)
        if finished:
            break
    return rows


def compare_with_random(runs: pd.DataFrame, *, metric: str = "force_mae", alpha: float = 0.05) -> pd.DataFrame:
    """Final-round comparison of every method with ``random`` (paired over seeds), per data set and
    batch size: :func:`alhelpers.stats.final_table` (paired t, Welch, Wilcoxon, Holm, d_z, verdict)
    applied to a Track B metric (lower is better)."""
    from alhelpers import stats

    df = runs.rename(columns={"dataset": "system", "method": "strategy", "n_train": "n_labelled"}).assign(
        descriptor=lambda d: "batch" + d["batch"].astype(str), r2=np.nan)
    table = stats.final_table(df, baseline="random", alpha=alpha, metric=metric)
    table = table.rename(columns={"system": "dataset", "strategy": "method", "n_labelled": "n_train"})
    table["batch"] = table.pop("descriptor").str.removeprefix("batch").astype(int)
    return table.drop(columns=[c for c in table.columns if c.startswith("r2_")])
