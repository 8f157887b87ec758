"""The round body of Track A's active-learning loop (STUDY §4).

Protocol: a seeded 80/20 pool/test split and a seeded initial labelled set (the same for every
strategy of a seed, so strategies compare paired by seed), then ``rounds`` rounds of
train → evaluate on the test set → query ``batch`` pool points → add them (the last round
trains and evaluates only). Resuming, checkpoints and pool exhaustion are the shared driver's
(:func:`alhelpers.al.rounds.run_rounds`); what is Track A's own is the round body: the ensembles
of all strategies are trained together in one batched computation, then each strategy is
evaluated and queries.

Calibration (:mod:`alhelpers.calibration`): the σ recalibration (``sigma_scale``,
``sigma_floor``) is fitted on errors and σ of materials the model being judged never trained on,
so the test set never touches it (``ALConfig.calibration``):

* ``"cv-final"`` (the default): the last round as ``"cv"`` does, every round before it as
  ``"batches"`` does (every round as ``"cv"`` when a stopping rule, ``target_mae``, may end a
  run early). The final round — the one the strategies are compared at, the report's and the
  reliability diagram's — is the same number for number as ``"cv"``'s, for about half the
  training; the earlier rounds' σ' and ``mae_pred`` are ``"batches"``' (measured on the default
  study: a little less well calibrated than ``"cv"``'s, median z² 0.73–1.12 against 0.79–1.10).
* ``"cv"``: ``cv_folds`` cross-validation ensembles on each strategy's labelled rows
  every round, trained in the same stacked computation (three times the training of the round's
  own models).
* ``"batches"``: the predictions each round made for the materials it then
  queried — made before their labels existed — once the labels are in, with the held-out errors
  of a ``cv_folds`` cross-validation of the initial set (every strategy's round 0, trained once)
  before there are any. Round r recalibrates on the initial set's and batches 0 … r−1's errors:
  as many as it has labels, at no training cost. The pairs travel in the round checkpoints.
  The queried materials are the ones the strategy found uncertain or unusual, so σ' comes out
  wider than "cv"'s (measured on the default study: final-round z² 0.6–0.8, miscalibration area
  +0.03–0.04); the cross-database runs (notebook 06), which report no calibration, use it.

Each row carries the raw and recalibrated diagnostics of the test σ and ``mae_pred``, the test
MAE that the recalibrated σ of the unlabelled pool predicts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.preprocessing import StandardScaler

from alhelpers.al.checkpoints import RoundCheckpoints, run_folder
from alhelpers.al.rounds import Budget, Step, Track, run_rounds
from alhelpers.al.seeding import stream
from alhelpers.calibration import (ROUND_COLUMNS, Recalibration, cv_folds, round_calibration, stop_reason,
                                   usable_recalibration)
from alhelpers.formation.config import ALConfig
from alhelpers.formation.models import EnsembleRegressor, fit_ensembles
from alhelpers.keys import TIMING_COLUMNS as _ALL_TIMING_COLUMNS
from alhelpers.select import HullInputs, QueryContext, get_strategy, needs_hull, needs_variance

#: Columns of the tidy runs table, in order (one row per system, descriptor, strategy, seed, round).
RUN_COLUMNS = (
    "system", "descriptor", "strategy", "seed", "round", "n_labelled", "n_pool", "n_test",
    "mae", "rmse", "max_error", "r2", "mean_sigma", "pearson_sigma_abs_err",
    "spearman_sigma_abs_err", *ROUND_COLUMNS, "fit_s", "feature_s", "query_s", "note",
)
#: Columns of this table that measure time (``feature_s``: BMDAL gradient features and GP
#: transform, 0 for the other strategies; ``query_s``: the rest of the query).
TIMING_COLUMNS = tuple(c for c in _ALL_TIMING_COLUMNS if c in RUN_COLUMNS)


# --------------------------------------------------------------------------- split


def split_and_init(
    n: int, cfg: ALConfig, *, split: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Pool and test positions and the initial labelled set (depend on the seed only).

    ``split`` fixes pool and test positions instead of the seeded 80/20 split (e.g. pool = one
    database, test = the other, for cross-database validation); the initial set is still seeded.
    """
    from alhelpers.data.systems import split_pool_test

    rng = stream(cfg.seed, "split")
    if split is None:
        pool, test = split_pool_test(n, test_fraction=cfg.test_fraction, rng=rng)
    else:
        pool, test = (np.sort(np.asarray(a, dtype=np.int64)) for a in split)
        if len(pool) == 0 or len(test) == 0 or np.intersect1d(pool, test).size:
            raise ValueError("split needs non-empty, disjoint pool and test positions")
    note = ""
    n_init = cfg.n_init
    if n_init > len(pool):
        note = f"pool has {len(pool)} points < n_init={cfg.n_init}: all are labelled at the start"
        n_init = len(pool)
    init = np.sort(rng.choice(pool, size=n_init, replace=False))
    return pool, test, init, note


# --------------------------------------------------------------------------- metrics


def regression_metrics(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> dict[str, float]:
    """Test-set metrics of one round, including how well σ ranks the absolute error."""
    err = mean - y
    abs_err = np.abs(err)
    sigma = np.sqrt(np.maximum(var, 0.0))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    out = {
        "mae": float(abs_err.mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "max_error": float(abs_err.max()),
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
        "mean_sigma": float(sigma.mean()),
        "pearson_sigma_abs_err": float("nan"),
        "spearman_sigma_abs_err": float("nan"),
    }
    if len(y) > 2 and np.ptp(sigma) > 0 and np.ptp(abs_err) > 0:
        out["pearson_sigma_abs_err"] = float(stats.pearsonr(sigma, abs_err)[0])
        out["spearman_sigma_abs_err"] = float(stats.spearmanr(sigma, abs_err)[0])
    return out


# --------------------------------------------------------------------------- the loop


def checkpoint_root(root: Path, cfg: ALConfig, X: np.ndarray, y: np.ndarray,
                    split: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """The checkpoint folder of one run, keyed by its config and a hash of its data."""
    data = [np.sort(np.asarray(part, dtype=np.int64)).tobytes() for part in split] if split is not None else []
    data += [np.ascontiguousarray(X, dtype=np.float64).tobytes(), np.ascontiguousarray(y, dtype=np.float64).tobytes()]
    identity = {**cfg.to_dict(), "columns": list(RUN_COLUMNS)}  # rows of another layout are recomputed
    return run_folder(root, cfg.system, cfg.descriptor, f"seed{cfg.seed}", config=identity, data=data)


def run_al(
    X: np.ndarray,
    y: np.ndarray,
    cfg: ALConfig,
    *,
    checkpoint_dir: Path | None = None,
    stop_after_round: int | None = None,
    progress: bool = False,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    budget: Budget | None = None,
    formulas: Sequence[str] | None = None,
) -> pd.DataFrame:
    """All strategies of one (system, seed): the tidy runs table (one row per strategy and round).

    Round by round, the ensembles of all strategies are trained together in one batched
    computation (:func:`alhelpers.formation.models.fit_ensembles`); ``fit_s`` is each strategy's
    share (its cross-validation ensembles for the σ recalibration included). With ``checkpoint_dir`` every (strategy, round) is checkpointed and a rerun resumes;
    ``stop_after_round`` ends early after that round (for tests and budgets).
    ``df.attrs["resumed_rounds"]`` says how many rounds were read back instead of computed.
    ``split`` = (pool positions, test positions) replaces the seeded 80/20 split.
    ``budget`` (wall time / RAM): before a round that would exceed it,
    :class:`~alhelpers.al.rounds.BudgetExceeded` is raised; every finished round is checkpointed,
    so running again continues from there.
    ``formulas`` (one per row): the stability strategies need them for the convex hull.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    hull_strategies = [s for s in cfg.strategies if needs_hull(s)]
    if hull_strategies and (formulas is None or len(formulas) != len(y)):
        raise ValueError(f"strategies {hull_strategies} need the convex hull of the labelled compounds: pass "
                         f"run_al(..., formulas=...) with one formula per row ({len(y)})")
    pool, test, init, note = split_and_init(len(y), cfg, split=split)
    store = None
    if checkpoint_dir:
        store = RoundCheckpoints(checkpoint_root(checkpoint_dir, cfg, X, y, split))
        cfg.save(store.folder / "config.json")

    def body(rnd: int, active: list[Track]) -> list[Step]:
        seed = int(stream(cfg.seed, "model", rnd).integers(2**31))  # same for every strategy
        t0 = time.perf_counter()
        # one model per distinct labelled set (round 0: every strategy has the initial set, trained
        # once) and the cross-validation ensembles of the σ recalibration (of each set in the rounds
        # that cross-validate, of the initial set once in round 0 otherwise): one stacked computation
        distinct: dict[bytes, int] = {}
        which = [distinct.setdefault(t.labelled.tobytes(), len(distinct)) for t in active]
        labelled = [active[which.index(k)].labelled for k in range(len(distinct))]
        cross_validate = cv_round(cfg, rnd)
        sets = labelled if cross_validate else [init] if rnd == 0 else []
        folds = [cv_folds(len(s), cfg.cv_folds, stream(cfg.seed, "cv", rnd)) for s in sets]
        rows = labelled + [s[tr] for s, f in zip(sets, folds) for tr, _ in f]
        models = fit_ensembles([X[r] for r in rows], [y[r] for r in rows], cfg.model, seeds=[seed] * len(rows))
        fit_s = (time.perf_counter() - t0) / len(active)
        cv_models = iter(models[len(labelled):])
        held = [held_out_pairs([(s[h], next(cv_models)) for _, h in f], X, y) for s, f in zip(sets, folds)]
        steps = []
        for track, k in zip(active, which):
            cal = held[k] if cross_validate else held[0] if rnd == 0 else _pairs(track.extras)
            # the pairs later rounds recalibrate on when they do not cross-validate: the initial
            # set's held-out pairs (round 0), then every batch queried so far
            new = held[0] if rnd == 0 else None
            step = _round(track, models[k], cal, X, y, pool, test, cfg, rnd, note if rnd == 0 else "", new_pairs=new,
                          formulas=formulas)
            step.row["fit_s"] = fit_s
            steps.append(step)
        return steps

    wrap = None
    if progress:
        from tqdm.auto import tqdm

        def wrap(rounds):
            rounds = list(rounds)  # no bar at all when every round was read back from checkpoints
            return tqdm(rounds, desc=f"{cfg.system} seed {cfg.seed}", unit="round", disable=not rounds)

    tracks, n_done = run_rounds(cfg.strategies, cfg.rounds, init, body, checkpoints=store, budget=budget,
                                stop_after_round=stop_after_round, progress=wrap,
                                label=f"{cfg.system} seed {cfg.seed} ")
    df = pd.DataFrame([r for t in tracks for r in t.rows], columns=list(RUN_COLUMNS))
    df.attrs["resumed_rounds"] = n_done
    return df


Pairs = tuple[np.ndarray, np.ndarray]


def cv_round(cfg: ALConfig, rnd: int) -> bool:
    """Whether round ``rnd`` fits σ' by cross-validation on each strategy's labelled rows.

    ``"cv"``: every round. ``"cv-final"``: the last round, and every round when a stopping rule
    (``target_mae``) may make it the last. ``"batches"``: none.
    """
    if cfg.calibration == "cv-final":
        return rnd == cfg.rounds - 1 or cfg.target_mae > 0
    return cfg.calibration == "cv"


def held_out_pairs(held: list[tuple[np.ndarray, EnsembleRegressor]], X: np.ndarray, y: np.ndarray) -> Pairs:
    """Signed errors and σ of the cross-validation ensembles on their held-out labelled rows."""
    err, sigma = [np.empty(0)], [np.empty(0)]
    for rows, m in held:
        mean, var = m.predict(X[rows])
        err.append(mean - y[rows])
        sigma.append(np.sqrt(np.maximum(var, 0.0)))
    return np.concatenate(err), np.concatenate(sigma)


def _pairs(extras: list[dict]) -> Pairs:
    """The recalibration pairs (signed error, σ) the checkpointed rounds of a strategy collected."""
    err = [np.asarray(e.get("cal_err", []), dtype=np.float64) for e in extras]
    sigma = [np.asarray(e.get("cal_sigma", []), dtype=np.float64) for e in extras]
    return np.concatenate([np.empty(0), *err]), np.concatenate([np.empty(0), *sigma])


def _round(track: Track, model: EnsembleRegressor, cal: Pairs, X: np.ndarray, y: np.ndarray, pool: np.ndarray,
           test: np.ndarray, cfg: ALConfig, rnd: int, note: str, *, new_pairs: Pairs | None = None,
           formulas: Sequence[str] | None = None) -> Step:
    """Evaluate one strategy's model of this round and, unless it is the last round, query.

    ``cal``: signed errors and σ of materials the evaluated model never trained on; they fit the σ
    recalibration (``sigma_scale``), which the test set never touches. When a later round does not
    cross-validate (:func:`cv_round`) the step's checkpoint payload carries the pairs this
    round adds for later rounds: ``new_pairs`` (round 0: the initial set's held-out pairs) and the
    queried materials' own, from the predictions that chose them.
    """
    mean, var = model.predict(X[test])
    candidates = np.setdiff1d(pool, track.labelled, assume_unique=True)
    pool_mean, pool_var = model.predict(X[candidates]) if len(candidates) else (None, None)
    pool_sigma = None if pool_var is None else np.sqrt(np.maximum(pool_var, 0.0))
    cal_err, cal_sigma = cal
    row = {
        "system": cfg.system, "descriptor": cfg.descriptor, "strategy": track.strategy,
        "seed": cfg.seed, "round": rnd, "n_labelled": int(len(track.labelled)),
        "n_pool": int(len(pool)), "n_test": int(len(test)),
        **regression_metrics(y[test], mean, var),
        **round_calibration(mean - y[test], np.sqrt(np.maximum(var, 0.0)), cal_err=cal_err, cal_sigma=cal_sigma,
                            pool_sigma=pool_sigma),
        "fit_s": 0.0, "feature_s": 0.0, "query_s": 0.0, "note": note,
    }
    queried = np.empty(0, dtype=np.int64)
    stop = stop_reason(row["mae_pred"], cfg.target_mae, " eV/atom")
    if rnd < cfg.rounds - 1 and stop:
        row["note"] = stop
    elif rnd < cfg.rounds - 1:
        if len(candidates) == 0:
            row["note"] = (f"pool exhausted: all {len(pool)} pool points are labelled; "
                           f"stopped before the requested {cfg.budget} labels")
        else:
            t1 = time.perf_counter()
            timings: dict = {}
            hull = None
            if needs_hull(track.strategy):
                assert formulas is not None  # checked by run_al
                hull = hull_inputs([formulas[i] for i in track.labelled], y[track.labelled],
                                   [formulas[i] for i in candidates], pool_mean, pool_sigma,
                                   usable_recalibration(*cal) or Recalibration())
            queried = candidates[query_batch(track.strategy, model, X[candidates], X[track.labelled], pool_var,
                                             batch=cfg.batch, rng=stream(cfg.seed, track.strategy, rnd),
                                             hybrid_alpha=cfg.hybrid_alpha, hull=hull, timings=timings)]
            queried = np.sort(queried)
            row["feature_s"] = float(timings.get("feature_s", 0.0))
            row["query_s"] = time.perf_counter() - t1 - row["feature_s"]
            if len(candidates) <= cfg.batch:
                row["note"] = (f"pool exhausted: only {len(candidates)} unlabelled pool points "
                               f"left for a batch of {cfg.batch}; all taken")
    if all(cv_round(cfg, r) for r in range(1, cfg.rounds)):  # no later round reads the batches' pairs
        return Step(row, queried)
    at = np.searchsorted(candidates, queried)  # candidates are sorted; queried ⊆ candidates
    err = [*(new_pairs[0] if new_pairs else []), *(pool_mean[at] - y[queried] if len(queried) else [])]
    sigma = [*(new_pairs[1] if new_pairs else []), *(pool_sigma[at] if len(queried) else [])]
    return Step(row, queried, extra={"cal_err": [float(v) for v in err], "cal_sigma": [float(v) for v in sigma]})


def hull_inputs(labelled: Sequence[str], labels: np.ndarray, candidates: Sequence[str], mean: np.ndarray,
                sigma: np.ndarray, recal: Recalibration) -> HullInputs:
    """The stability strategies' inputs: each candidate's prediction, calibrated σ' (floored at a
    tiny positive value, so a candidate the ensemble agrees on still has a probability), the
    hull of the labelled compounds at its composition (:mod:`alhelpers.formation.hull`) and the
    formulas, with which a batch believes each pick into the hull before the next."""
    from alhelpers.formation.hull import hull_energies

    sigma_cal = np.maximum(recal.apply(sigma), 1e-9)
    return HullInputs(np.asarray(mean, dtype=np.float64), sigma_cal, hull_energies(labelled, labels, candidates),
                      formulas=(list(labelled), np.asarray(labels, dtype=np.float64), list(candidates)))


def query_batch(strategy: str, model: EnsembleRegressor, X_candidates: np.ndarray, X_labelled: np.ndarray,
                candidate_var: np.ndarray | None, *, batch: int, rng: np.random.Generator, hybrid_alpha: float = 0.6,
                hull: HullInputs | None = None, timings: dict | None = None) -> np.ndarray:
    """Positions into ``X_candidates`` of the batch ``strategy`` picks (the studies' query and a
    campaign's): descriptors standardised on the labelled rows, the ensemble's variance at the
    candidates, and for the stability strategies the hull inputs (:func:`hull_inputs`)."""
    scaler = StandardScaler().fit(X_labelled)  # labelled rows only, refit each round
    ctx = QueryContext(
        X_candidates=scaler.transform(X_candidates),
        X_labelled=scaler.transform(X_labelled),
        variance=candidate_var if needs_variance(strategy) else None,
        batch=batch,
        rng=rng,
        model=model,
        timings=timings if timings is not None else {},
        hybrid_alpha=hybrid_alpha,
        hull=hull,
    )
    return np.asarray(get_strategy(strategy)(ctx), dtype=np.int64)
