"""The active-learning loop of Track A (STUDY §4), checkpointed per (system, seed, strategy, round).

Protocol: a seeded 80/20 pool/test split and a seeded initial labelled set (the same for every
strategy of a seed, so strategies compare paired by seed), then ``rounds`` rounds of
train → evaluate on the test set → query ``batch_size`` pool points → add them (the last round
trains and evaluates only). Each round leaves one tidy row and one checkpoint file; a rerun
continues after the last checkpoint and ends with the same table as an uninterrupted run, because
every random stream is derived from (seed, strategy, round), never carried across rounds.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.preprocessing import StandardScaler

from alhelpers.files import UnreadableFileError, read_json, write_json
from alhelpers.formation.config import ALConfig
from alhelpers.formation.models import EnsembleRegressor, fit_ensembles
from alhelpers.select import QueryContext, get_strategy, needs_variance

#: Columns of the tidy runs table, in order (one row per system, descriptor, strategy, seed, round).
RUN_COLUMNS = (
    "system", "descriptor", "strategy", "seed", "round", "n_labelled", "n_pool", "n_test",
    "mae", "rmse", "max_error", "r2", "mean_sigma", "pearson_sigma_abs_err",
    "spearman_sigma_abs_err", "fit_s", "feature_s", "query_s", "note",
)
#: Columns that measure time, so they differ between otherwise identical runs. ``feature_s`` is the
#: time a strategy spent on features (BMDAL gradient features, GP transform; 0 for the others) and
#: ``query_s`` the rest of the query (the selection).
TIMING_COLUMNS = ("fit_s", "feature_s", "query_s")


# --------------------------------------------------------------------------- randomness


def stream(*keys: int | str) -> np.random.Generator:
    """An independent generator for a tuple of keys (strings hashed with CRC32, stable across runs)."""
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(ints)


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


# --------------------------------------------------------------------------- checkpoints


def checkpoint_root(root: Path, cfg: ALConfig, X: np.ndarray, y: np.ndarray,
                    split: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """The checkpoint folder of one run, keyed by its config and a hash of its data.

    A changed parameter or changed descriptors give a new folder, so stale checkpoints are never
    resumed by mistake.
    """
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode())
    if split is not None:
        for part in split:
            h.update(np.sort(np.asarray(part, dtype=np.int64)).tobytes())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return Path(root) / cfg.system / cfg.descriptor / f"seed{cfg.seed}" / h.hexdigest()[:12]


def checkpoint_path(run_dir: Path, strategy: str, rnd: int) -> Path:
    return Path(run_dir) / strategy / f"round{rnd:02d}.json"


def _load_checkpoints(run_dir: Path, cfg: ALConfig, strategy: str) -> list[dict]:
    """The strategy's checkpointed rounds in order, up to the first missing or unreadable one.

    An unreadable checkpoint (truncated by a crash, say) is reported, removed and its round
    recomputed; the rounds after it are recomputed too, since they build on it.
    """
    out = []
    for rnd in range(cfg.rounds):
        path = checkpoint_path(run_dir, strategy, rnd)
        if not path.exists():
            break
        try:
            ck = read_json(path, todo="It is removed and that round is recomputed.")
            if not isinstance(ck, dict) or not {"row", "labelled", "queried"} <= set(ck):
                raise UnreadableFileError(path, "not a checkpoint of this loop",
                                          "It is removed and that round is recomputed.")
        except UnreadableFileError as err:
            warnings.warn(str(err), stacklevel=3)
            path.unlink()
            break
        out.append(ck)
    return out


# --------------------------------------------------------------------------- the loop


@dataclass
class _Track:
    """Where one strategy stands: its labelled set, rows so far, and whether the pool ran out."""

    strategy: str
    labelled: np.ndarray
    rows: list[dict]
    exhausted: bool = False


def _resume(cfg: ALConfig, init: np.ndarray, run_dir: Path | None) -> tuple[list[_Track], int]:
    """Tracks rebuilt from checkpoints, cut to the rounds that every running strategy finished.

    All strategies of a round are trained together, so a round counts as done only when all of
    them checkpointed it; this keeps a resumed run identical to an uninterrupted one.
    """
    loaded = {s: _load_checkpoints(run_dir, cfg, s) if run_dir else [] for s in cfg.strategies}

    def ended(ck: list[dict]) -> bool:  # ran out of pool before the last round
        return bool(ck) and not ck[-1]["queried"] and ck[-1]["row"]["round"] < cfg.rounds - 1

    n_done = min((cfg.rounds if ended(ck) else len(ck)) for ck in loaded.values())
    tracks = []
    for s, ck in loaded.items():
        ck = ck[:n_done]
        labelled = np.array(sorted(ck[-1]["labelled"] + ck[-1]["queried"]), dtype=np.int64) if ck else init
        tracks.append(_Track(s, labelled, [c["row"] for c in ck], exhausted=ended(ck)))
    return tracks, n_done


class BudgetExceeded(RuntimeError):
    """A run stopped before a round that would exceed its wall-time or memory budget."""


@dataclass
class Budget:
    """Wall-time and memory limits for a run, checked before each round.

    ``max_wall_s``: seconds from the budget's creation; a round is not started when the elapsed
    time plus the previous round's duration would pass it. ``max_ram_mb``: resident memory of this
    process; no round is started above 90 % of it. ``None`` means no limit.
    """

    max_wall_s: float | None = None
    max_ram_mb: float | None = None
    clock: Callable[[], float] = time.perf_counter  # injectable for tests
    started: float | None = None  # default: the clock at creation

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    @property
    def limited(self) -> bool:
        return self.max_wall_s is not None or self.max_ram_mb is not None

    def check(self, *, next_round_s: float, done: int, total: int) -> None:
        how = ("Every finished round is checkpointed: run the notebook (or the study command) "
               "again, with a larger budget if needed, and it continues from round "
               f"{done} of {total}.")
        if self.max_wall_s is not None:
            elapsed = self.clock() - self.started
            if elapsed + next_round_s > self.max_wall_s:
                raise BudgetExceeded(
                    f"wall-time budget of {self.max_wall_s:g} s would be exceeded ({elapsed:.1f} s "
                    f"used, the last round took {next_round_s:.1f} s). {how}")
        if self.max_ram_mb is not None:
            import psutil

            rss = psutil.Process().memory_info().rss / 2**20
            if rss > 0.9 * self.max_ram_mb:
                raise BudgetExceeded(
                    f"memory budget of {self.max_ram_mb:g} MB nearly reached ({rss:.0f} MB in use). {how}")


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
) -> pd.DataFrame:
    """All strategies of one (system, seed): the tidy runs table (one row per strategy and round).

    Round by round, the ensembles of all strategies are trained together in one batched
    computation (:func:`alhelpers.formation.models.fit_ensembles`); ``fit_s`` is each strategy's share.
    With ``checkpoint_dir`` every (strategy, round) is checkpointed and a rerun resumes;
    ``stop_after_round`` ends early after that round (for tests and budgets).
    ``df.attrs["resumed_rounds"]`` says how many rounds were read back instead of computed.
    ``split`` = (pool positions, test positions) replaces the seeded 80/20 split.
    ``budget`` (wall time / RAM): before a round that would exceed it, :class:`BudgetExceeded` is
    raised; every finished round is checkpointed, so running again continues from there.
    """
    if budget is not None and budget.limited and checkpoint_dir is None:
        raise ValueError("a budget needs checkpoint_dir, or the rounds done before the stop are lost")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    pool, test, init, note = split_and_init(len(y), cfg, split=split)
    run_dir = checkpoint_root(checkpoint_dir, cfg, X, y, split) if checkpoint_dir else None
    if run_dir:
        cfg.save(run_dir / "config.json")
    tracks, n_done = _resume(cfg, init, run_dir)
    rounds = range(n_done, cfg.rounds)
    if progress:
        from tqdm.auto import tqdm

        rounds = tqdm(rounds, desc=f"{cfg.system} seed {cfg.seed}", unit="round")
    last_round_s = 0.0
    for rnd in rounds:
        active = [t for t in tracks if not t.exhausted]
        if not active:
            break
        if budget is not None:
            budget.check(next_round_s=last_round_s, done=rnd, total=cfg.rounds)
        t_round = time.perf_counter()
        seed = int(stream(cfg.seed, "model", rnd).integers(2**31))  # same for every strategy
        t0 = time.perf_counter()
        models = fit_ensembles([X[t.labelled] for t in active], [y[t.labelled] for t in active],
                               cfg.model, seeds=[seed] * len(active))
        fit_s = (time.perf_counter() - t0) / len(active)
        for track, model in zip(active, models):
            row, queried = _round(track, model, X, y, pool, test, cfg, rnd, note if rnd == 0 else "")
            row["fit_s"] = fit_s
            track.rows.append(row)
            if run_dir:
                write_json(checkpoint_path(run_dir, track.strategy, rnd),
                           {"row": row, "labelled": track.labelled.tolist(), "queried": queried.tolist()},
                           indent=None)
            track.labelled = np.sort(np.concatenate([track.labelled, queried]))
        last_round_s = time.perf_counter() - t_round
        if stop_after_round is not None and rnd >= stop_after_round:
            break
    for t in tracks:
        if t.exhausted:
            warnings.warn(f"{cfg.system} seed {cfg.seed} {t.strategy}: {t.rows[-1]['note']}", stacklevel=2)
    df = pd.DataFrame([r for t in tracks for r in t.rows], columns=list(RUN_COLUMNS))
    df.attrs["resumed_rounds"] = n_done
    return df


def _round(track: _Track, model: EnsembleRegressor, X: np.ndarray, y: np.ndarray, pool: np.ndarray,
           test: np.ndarray, cfg: ALConfig, rnd: int, note: str) -> tuple[dict, np.ndarray]:
    """Evaluate one strategy's model of this round and, unless it is the last round, query."""
    mean, var = model.predict(X[test])
    row = {
        "system": cfg.system, "descriptor": cfg.descriptor, "strategy": track.strategy,
        "seed": cfg.seed, "round": rnd, "n_labelled": int(len(track.labelled)),
        "n_pool": int(len(pool)), "n_test": int(len(test)),
        **regression_metrics(y[test], mean, var), "fit_s": 0.0, "feature_s": 0.0, "query_s": 0.0,
        "note": note,
    }
    queried = np.empty(0, dtype=np.int64)
    if rnd < cfg.rounds - 1:
        candidates = np.setdiff1d(pool, track.labelled, assume_unique=True)
        if len(candidates) == 0:
            track.exhausted = True
            row["note"] = (f"pool exhausted: all {len(pool)} pool points are labelled; "
                           f"stopped before the requested {cfg.budget} labels")
        else:
            t1 = time.perf_counter()
            timings: dict = {}
            queried = _query(get_strategy(track.strategy), track.strategy, model, X, track.labelled,
                             candidates, cfg, rnd, timings)
            row["feature_s"] = float(timings.get("feature_s", 0.0))
            row["query_s"] = time.perf_counter() - t1 - row["feature_s"]
            if len(candidates) <= cfg.batch_size:
                row["note"] = (f"pool exhausted: only {len(candidates)} unlabelled pool points "
                               f"left for a batch of {cfg.batch_size}; all taken")
    return row, queried


def _query(query, strategy: str, model: EnsembleRegressor, X: np.ndarray, labelled: np.ndarray,
           candidates: np.ndarray, cfg: ALConfig, rnd: int, timings: dict | None = None) -> np.ndarray:
    scaler = StandardScaler().fit(X[labelled])  # labelled rows only, refit each round
    variance = model.predict(X[candidates])[1] if needs_variance(strategy) else None
    ctx = QueryContext(
        X_candidates=scaler.transform(X[candidates]),
        X_labelled=scaler.transform(X[labelled]),
        variance=variance,
        batch_size=cfg.batch_size,
        rng=stream(cfg.seed, strategy, rnd),
        model=model,
        timings={} if timings is None else timings,
        hybrid_alpha=cfg.hybrid_alpha,
    )
    return np.sort(candidates[np.asarray(query(ctx), dtype=np.int64)])
