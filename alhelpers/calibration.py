"""Is the uncertainty right? Calibration diagnostics, σ recalibration and the predicted MAE.

One place for both tracks: Track A's ensemble σ and Track B's GP posterior σ and committee
spreads go through the same functions. Every function takes the signed errors ``err =
prediction − truth`` and the predicted standard deviations ``sigma`` (same length, σ > 0) of a
held-out set, and treats each error as a draw from ``N(0, σ²)``:

* :func:`gaussian_nll` — the mean Gaussian negative log-likelihood
  ``½ log(2π σ²) + err² / (2σ²)`` (lower is better; it punishes over- and under-confidence);
* :func:`z2_mean` — the mean squared z-score ``mean((err/σ)²)``: 1 when calibrated, above 1 when
  σ is too small (over-confident);
* :func:`miscalibration_area` — the area between the observed fraction of errors inside the
  central Gaussian interval of probability p and p itself, over p ∈ [0, 1] (0 is perfect, 0.5 the
  worst); the same discretisation as uncertainty-toolbox's ``miscalibration_area`` (100 levels);
* :func:`ence` — the expected normalised calibration error of Levi et al. (2022): the errors
  binned by σ (equal counts), ``mean_bins |RMV − RMSE| / RMV`` with RMV the root mean variance;
* :func:`reliability_curve` — expected vs observed interval fractions (the reliability diagram);
* :func:`recalibrate` — the :class:`Recalibration` ``σ' = √((s·σ)² + τ²)`` (a factor s and an
  error floor τ) with the smallest NLL on a calibration set the test set never touches (Track A:
  cross-validation on the labelled rows; Track B: the validation split); :func:`sigma_scale` is
  its closed form without a floor, ``s = √mean((err/σ)²)`` (z² is then exactly 1 on that set);
* :func:`calibration_metrics` — the four metrics of σ and of σ' as one row
  (``nll, z2_mean, miscal_area, ence`` and the same with ``_cal``);
* :func:`predicted_mae` — the MAE a calibrated σ predicts for a set, ``mean(σ')·√(2/π)``
  (the mean absolute value of ``N(0, σ²)`` is ``σ√(2/π)``): the stopping rule's estimate;
* :func:`cv_folds` — seeded K-fold splits of the labelled rows (Track A's recalibration set);
* :func:`round_calibration` — the runs-table columns of one round: the metrics above,
  ``sigma_scale``, ``sigma_floor`` and ``mae_pred`` (NaN, not an error, where σ has no
  calibration, e.g. a zero σ);
* :func:`stop_reason` — the stopping rule: stop labelling once ``mae_pred`` reaches a target;
* :func:`calibration_table` — the runs table's calibration, averaged over seeds per round;
* :func:`calibration_lines` — the calibration of every strategy at the compared budget, in
  sentences (the study report's);
* :func:`calibration_state` — one σ's calibration in a word (:data:`Z2_CALIBRATED`,
  :data:`COVERAGE_GAP`): calibrated, over-confident, too wide (under-confident), or too wide for
  most errors and too narrow for the largest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from alhelpers.al.runs import appearance_sort, common_budget, compared_rows, curve_columns, final_round, where_name
from alhelpers.keys import Key, setting_columns

__all__ = [
    "CALIBRATION_COLUMNS", "RELIABILITY_COLUMNS", "RELIABILITY_LEVELS", "ROUND_COLUMNS", "Recalibration", "calibration_metrics", "cv_folds", "ence",
    "gaussian_nll", "miscalibration_area", "predicted_mae", "recalibrate", "reliability_curve",
    "calibration_table", "round_calibration", "sigma_scale", "stop_reason", "usable_recalibration", "z2_mean",
    "COVERAGE_GAP", "Z2_CALIBRATED", "calibration_lines", "calibration_state", "coverage_gap",
]

#: The calibration columns of a runs table (both tracks), raw σ then the recalibrated ``s·σ``.
CALIBRATION_COLUMNS: tuple[str, ...] = (Key.nll, Key.z2_mean, Key.miscal_area, Key.ence,
                                        Key.nll_cal, Key.z2_mean_cal, Key.miscal_area_cal, Key.ence_cal)

#: Interval probabilities of the reliability diagram kept in the runs tables.
RELIABILITY_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Observed fractions inside the central interval of each level: ``rel_10`` … ``rel_90`` for σ,
#: ``rel_cal_10`` … ``rel_cal_90`` for the recalibrated σ' (the reliability diagram of a round).
RELIABILITY_COLUMNS: tuple[str, ...] = (*(f"rel_{round(100 * p)}" for p in RELIABILITY_LEVELS),
                                        *(f"rel_cal_{round(100 * p)}" for p in RELIABILITY_LEVELS))

#: Every calibration column of a round: the metrics, the fitted σ factor and floor, the predicted
#: MAE and the reliability diagram.
ROUND_COLUMNS: tuple[str, ...] = (*CALIBRATION_COLUMNS, Key.sigma_scale, Key.sigma_floor, Key.mae_pred,
                                  *RELIABILITY_COLUMNS)

#: Levels p of the miscalibration area (uncertainty-toolbox's default).
MISCAL_LEVELS: int = 100
#: Bins of the ENCE (equal counts of errors sorted by σ).
ENCE_BINS: int = 10


def _checked(err: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(err, dtype=np.float64).reshape(-1)
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if e.shape != s.shape:
        raise ValueError(f"err and sigma must have the same length, got {e.size} and {s.size}")
    if e.size == 0:
        raise ValueError("calibration needs at least one error and its sigma, got none")
    if not np.isfinite(e).all():
        raise ValueError(f"{int((~np.isfinite(e)).sum())} of {e.size} errors are not finite")
    if not (np.isfinite(s).all() and (s > 0).all()):
        bad = int((~(np.isfinite(s) & (s > 0))).sum())
        raise ValueError(f"{bad} of {s.size} sigmas are not finite and positive: a zero or missing "
                         "uncertainty has no calibration (drop those rows or floor sigma)")
    return e, s


def gaussian_nll(err: np.ndarray, sigma: np.ndarray) -> float:
    """Mean negative log-likelihood of ``err`` under ``N(0, σ²)`` (nats)."""
    e, s = _checked(err, sigma)
    return float(np.mean(0.5 * np.log(2.0 * np.pi * s**2) + 0.5 * (e / s) ** 2))


def z2_mean(err: np.ndarray, sigma: np.ndarray) -> float:
    """Mean squared z-score ``mean((err/σ)²)``: 1 when σ is calibrated, > 1 when over-confident."""
    e, s = _checked(err, sigma)
    return float(np.mean((e / s) ** 2))


def _interval_fractions(err: np.ndarray, sigma: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Observed fraction of ``|err|/σ`` inside the central Gaussian interval of each probability."""
    e, s = _checked(err, sigma)
    bound = stats.norm.ppf(0.5 + levels / 2.0)
    z = np.sort(np.abs(e) / s)
    return np.searchsorted(z, bound, side="right") / z.size


def reliability_curve(err: np.ndarray, sigma: np.ndarray, *, levels: int = MISCAL_LEVELS) -> pd.DataFrame:
    """The reliability diagram: ``expected`` interval probability p and the ``observed`` fraction
    of errors inside the central interval ``±Φ⁻¹(½ + p/2)·σ`` (on the diagonal when calibrated;
    below it when over-confident)."""
    if int(levels) < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    p = np.linspace(0.0, 1.0, int(levels))
    return pd.DataFrame({"expected": p, "observed": _interval_fractions(err, sigma, p)})


def miscalibration_area(err: np.ndarray, sigma: np.ndarray, *, levels: int = MISCAL_LEVELS) -> float:
    """Area between the reliability curve and the diagonal (0 perfect, at most 0.5).

    The curve is linear between the ``levels`` points; where it crosses the diagonal the two
    triangles are counted separately, so over- and under-confidence do not cancel.
    """
    curve = reliability_curve(err, sigma, levels=levels)
    p, d = curve["expected"].to_numpy(), (curve["observed"] - curve["expected"]).to_numpy()
    h, d0, d1 = np.diff(p), d[:-1], d[1:]
    same = d0 * d1 >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = h * (d0**2 + d1**2) / (2.0 * (np.abs(d0) + np.abs(d1)))
    return float(np.sum(np.where(same, h * np.abs(d0 + d1) / 2.0, np.nan_to_num(crossing))))


def ence(err: np.ndarray, sigma: np.ndarray, *, bins: int = ENCE_BINS) -> float:
    """Expected normalised calibration error: ``mean_bins |RMV − RMSE| / RMV``.

    The errors are sorted by σ and split into ``min(bins, n)`` bins of (nearly) equal counts;
    RMV is a bin's root mean σ², RMSE its root mean squared error. 0 is perfect.
    """
    e, s = _checked(err, sigma)
    if int(bins) < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    order = np.argsort(s, kind="stable")
    parts = np.array_split(order, min(int(bins), e.size))
    rmv = np.array([np.sqrt(np.mean(s[i] ** 2)) for i in parts])
    rmse = np.array([np.sqrt(np.mean(e[i] ** 2)) for i in parts])
    return float(np.mean(np.abs(rmv - rmse) / rmv))


def sigma_scale(err: np.ndarray, sigma: np.ndarray) -> float:
    """The σ factor with the smallest Gaussian NLL on a calibration set: ``√mean((err/σ)²)``."""
    return math.sqrt(z2_mean(err, sigma))


@dataclass(frozen=True)
class Recalibration:
    """``σ' = √((scale·σ)² + floor²)``: a σ factor and an error floor (same unit as the errors).

    The floor is the error that no amount of model agreement removes: Track A's composition
    descriptors cannot tell polymorphs apart, so an ensemble is sure (σ → 0) of a test compound
    whose composition it was trained on and still off by the energy difference of the polymorphs.
    ``Recalibration()`` leaves σ as it is.
    """

    scale: float = 1.0
    floor: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be finite and positive, got {self.scale}")
        if not (math.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"floor must be finite and non-negative, got {self.floor}")

    def apply(self, sigma: np.ndarray) -> np.ndarray:
        """The recalibrated σ'."""
        s = np.asarray(sigma, dtype=np.float64)
        return np.sqrt((self.scale * s) ** 2 + self.floor**2)


#: Grid of the error floor's profile likelihood: ``t = floor² / scale²`` from 10⁻⁶ to 10⁴ times
#: the median σ², evenly in log t (a floor resolved to about ±1.5 %).
_FLOOR_GRID = np.exp(np.linspace(np.log(1e-6), np.log(1e4), 400))
#: Relative NLL within which two fits count as equally good: the simpler one (smaller floor) wins,
#: so a flat likelihood (the floor swallowing σ) gives one answer, not whichever rounding wins.
_NLL_TIE = 1e-9


def recalibrate(err: np.ndarray, sigma: np.ndarray, *, floor: bool = True) -> Recalibration:
    """The :class:`Recalibration` with the smallest Gaussian NLL on a calibration set.

    Without ``floor`` it is :func:`sigma_scale` (closed form; z² is then exactly 1 on the set).
    With it, σ'² = c·(σ² + t): for each t the best c is ``mean(err² / (σ² + t))`` in closed form,
    and t is the smallest point of a fixed log grid whose profile NLL is within a relative 10⁻⁹ of
    the grid's minimum (t = 0, no floor, is tried first). Deterministic, and the same for inputs
    that differ only by rounding.
    """
    e, s = _checked(err, sigma)
    e2, s2 = e**2, s**2

    def profile(t: float) -> tuple[float, float]:
        v = s2 + t
        c = float(np.mean(e2 / v))
        return float(np.mean(0.5 * np.log(2.0 * np.pi * c * v)) + 0.5), c

    nll0, c0 = profile(0.0)
    if not floor or e.size < 3:
        return Recalibration(math.sqrt(c0), 0.0)
    ts = _FLOOR_GRID * float(np.median(s2))
    fits = [profile(float(t)) for t in ts]
    nll = np.array([f[0] for f in fits])
    best = float(nll.min())
    if nll0 <= best + _NLL_TIE * abs(best):
        return Recalibration(math.sqrt(c0), 0.0)
    k = int(np.flatnonzero(nll <= best + _NLL_TIE * abs(best))[0])
    c, t = fits[k][1], float(ts[k])
    return Recalibration(math.sqrt(c), math.sqrt(c * t))


def calibration_metrics(err: np.ndarray, sigma: np.ndarray, *, recal: Recalibration = Recalibration()
                        ) -> dict[str, float]:
    """The calibration columns of one round: the metrics of σ and of the recalibrated σ' (``_cal``).

    ``recal`` comes from :func:`recalibrate` on data apart from ``err`` (the test set); with the
    default the ``_cal`` columns repeat the raw ones.
    """
    e, s = _checked(err, sigma)
    out: dict[str, float] = {}
    for suffix, sd in (("", s), ("_cal", recal.apply(s))):
        out["nll" + suffix] = gaussian_nll(e, sd)
        out["z2_mean" + suffix] = z2_mean(e, sd)
        out["miscal_area" + suffix] = miscalibration_area(e, sd)
        out["ence" + suffix] = ence(e, sd)
    return out


def predicted_mae(sigma: np.ndarray, *, recal: Recalibration = Recalibration(),
                  weights: np.ndarray | None = None) -> float:
    """The MAE that the (recalibrated) σ predicts for a set: ``mean(σ')·√(2/π)``.

    ``weights`` (e.g. atoms per structure, when σ is a structure's per-component force σ and the
    MAE runs over every atom's components) make it a weighted mean.
    """
    s = np.asarray(sigma, dtype=np.float64).reshape(-1)
    if s.size == 0 or not (np.isfinite(s).all() and (s >= 0).all()):
        raise ValueError("predicted_mae needs finite, non-negative sigmas (at least one)")
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape != s.shape or not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError("weights must be finite, non-negative, not all zero and one per sigma")
    return float(np.average(recal.apply(s), weights=w) * math.sqrt(2.0 / math.pi))


def cv_folds(n: int, k: int, rng: np.random.Generator, *, min_train: int = 2
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``min(k, n)`` seeded folds of ``0 … n−1``: ``(train positions, held-out positions)`` each,
    held-out sets disjoint and covering every position once (sizes differ by at most one).

    No folds (``[]``) when a fold would train on fewer than ``min_train`` rows: too few labels to
    cross-validate, the recalibration is then undefined (NaN), not guessed.
    """
    if int(k) < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    n, k = int(n), min(int(k), int(n))
    if k < 2 or n - math.ceil(n / k) < min_train:
        return []
    perm = rng.permutation(n)
    held = [np.sort(part) for part in np.array_split(perm, k)]
    return [(np.setdiff1d(perm, h), h) for h in held]


def _usable(e, s) -> bool:
    if e is None or s is None:
        return False
    e, s = np.asarray(e, dtype=np.float64).reshape(-1), np.asarray(s, dtype=np.float64).reshape(-1)
    return e.size > 0 and e.shape == s.shape and bool(np.isfinite(e).all() and np.isfinite(s).all() and (s > 0).all())


def usable_recalibration(err: np.ndarray | None, sigma: np.ndarray | None) -> Recalibration | None:
    """:func:`recalibrate` on pairs that can fit one (some, all finite, every σ > 0), else None."""
    return recalibrate(err, sigma) if _usable(err, sigma) else None


def round_calibration(err: np.ndarray, sigma: np.ndarray, *, cal_err: np.ndarray | None = None,
                      cal_sigma: np.ndarray | None = None, pool_sigma: np.ndarray | None = None,
                      pool_weights: np.ndarray | None = None) -> dict[str, float]:
    """The calibration columns (:data:`ROUND_COLUMNS`) of one round of either track.

    ``err``/``sigma``: the test set's signed errors and σ. ``cal_err``/``cal_sigma``: a set apart
    from the test set that fits the :class:`Recalibration` (``sigma_scale``, ``sigma_floor``;
    without it σ is left as it is and the ``_cal`` columns repeat the raw ones). ``pool_sigma``:
    the unlabelled pool's σ, for ``mae_pred`` (weighted by ``pool_weights``, see
    :func:`predicted_mae`). Columns whose inputs have no calibration (a σ that is zero or not
    finite, an empty set) are NaN.
    """
    out = dict.fromkeys((str(c) for c in ROUND_COLUMNS), float("nan"))
    recal = Recalibration() if cal_err is None else usable_recalibration(cal_err, cal_sigma)
    if _usable(err, sigma):
        row = calibration_metrics(err, sigma, recal=recal or Recalibration())
        levels = np.asarray(RELIABILITY_LEVELS)
        row.update(zip(RELIABILITY_COLUMNS[: levels.size], map(float, _interval_fractions(err, sigma, levels)), strict=True))
        row.update(zip(RELIABILITY_COLUMNS[levels.size:],
                       map(float, _interval_fractions(err, (recal or Recalibration()).apply(sigma), levels)),
                       strict=True))
        out.update(row if recal is not None else {k: v for k, v in row.items() if "_cal" not in k})
    if recal is not None:
        out[str(Key.sigma_scale)], out[str(Key.sigma_floor)] = recal.scale, recal.floor
        if pool_sigma is not None and np.size(pool_sigma):
            ps = np.asarray(pool_sigma, dtype=np.float64).reshape(-1)
            if np.isfinite(ps).all() and (ps >= 0).all():
                out[str(Key.mae_pred)] = predicted_mae(ps, recal=recal, weights=pool_weights)
    return out


def stop_reason(mae_pred: float, target: float, unit: str = "") -> str:
    """Why labelling stops under the stopping rule, or ``""`` to go on.

    Stop when the target is set (> 0) and the predicted MAE is known and at or below it; an
    unknown prediction (NaN: too few labels to recalibrate) never stops a run.
    """
    if target > 0 and math.isfinite(mae_pred) and mae_pred <= target:
        return (f"stopped: predicted test MAE {mae_pred:.4g}{unit} is at or below TARGET_MAE = {target:g}{unit} "
                "(calibrated σ of the pool)")
    return ""


def calibration_table(runs: pd.DataFrame, *, metric: str = "mae") -> pd.DataFrame:
    """Per setting, strategy and ``n_labelled``: the mean over seeds of the test ``metric``, its
    prediction ``mae_pred``, their ratio ``pred_ratio`` (1: the stopping rule's estimate is right)
    and the calibration columns raw and recalibrated, with ``n_seeds`` (a tidy table of a runs
    table of either track: Track A's ``mae``, Track B's ``force_mae``)."""
    cols = [metric, str(Key.mae_pred), *(str(c) for c in CALIBRATION_COLUMNS), str(Key.sigma_scale),
            str(Key.sigma_floor)]
    missing = [c for c in [*cols, "n_labelled", "seed"] if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs lack {missing}: they were made before the calibration was recorded; "
                         "rerun the active-learning notebook (03 or 07) to add them")
    keys = [*curve_columns(runs), "n_labelled"]
    g = runs.groupby(keys, sort=False, observed=True)
    out = g[cols].mean()
    out.insert(0, "n_seeds", g["seed"].nunique())
    out["pred_ratio"] = out[str(Key.mae_pred)] / out[metric]
    out = out.reset_index()
    return appearance_sort(out[[*keys, "n_seeds", metric, str(Key.mae_pred), "pred_ratio", *cols[2:]]], keys)


#: The mean squared z-score of a σ that is within a factor √2 of the errors' scale: z² = 2 is a σ
#: √2 ≈ 1.41 times too small (its central 68 % interval then holds about 52 % of the errors),
#: z² = 0.5 one √2 times too large (the 68 % interval holds about 84 %). Outside, σ is off by more
#: than the ~30 % a reader would still call calibrated.
Z2_CALIBRATED: tuple[float, float] = (0.5, 2.0)

#: Mean signed gap (observed − expected fraction inside σ's central intervals, over the
#: :data:`RELIABILITY_LEVELS`) beyond which the intervals are too wide (≥ +0.05: under-confident)
#: or too narrow (≤ −0.05: over-confident): 5 points of coverage, about what a 90 % interval
#: holding 95 % of the errors is off by.
COVERAGE_GAP: float = 0.05


def coverage_gap(row, *, cal: bool = True) -> float:
    """Mean over :data:`RELIABILITY_LEVELS` of (observed − expected) fraction of errors inside σ's
    central intervals, from a row with the reliability columns (``rel_cal_10`` … with ``cal``,
    else ``rel_10`` …); positive: the intervals hold more errors than their probability (too
    wide). NaN when a column is missing or NaN."""
    prefix = "rel_cal_" if cal else "rel_"
    try:
        observed = np.array([float(row[f"{prefix}{round(100 * p)}"]) for p in RELIABILITY_LEVELS])
    except KeyError:
        return float("nan")
    return float(np.mean(observed - np.asarray(RELIABILITY_LEVELS)))


def calibration_state(z2: float, gap: float = float("nan")) -> str:
    """One σ's calibration in a word, from its mean squared z-score ``z2`` and, where known, the
    mean coverage gap ``gap`` of its central intervals (:func:`coverage_gap`):

    * ``"unknown"`` — no finite z²;
    * ``"mixed"`` — z² above :data:`Z2_CALIBRATED` but the intervals hold more errors than their
      probability (gap ≥ :data:`COVERAGE_GAP`): too wide for most errors, too narrow for the
      largest (heavy tails, which z² weighs most);
    * ``"over-confident"`` — z² above the band, or the intervals hold too few errors
      (gap ≤ −:data:`COVERAGE_GAP`);
    * ``"too wide"`` — z² below the band, or the intervals hold too many errors: under-confident,
      e.g. a recalibration that overshoots;
    * ``"calibrated"`` — otherwise.
    """
    if not np.isfinite(z2):
        return "unknown"
    lo, hi = Z2_CALIBRATED
    wide = np.isfinite(gap) and gap >= COVERAGE_GAP
    narrow = np.isfinite(gap) and gap <= -COVERAGE_GAP
    if z2 > hi:
        return "mixed" if wide else "over-confident"
    if narrow:
        return "over-confident"
    if z2 < lo or wide:
        return "too wide"
    return "calibrated"


def _factors(values: pd.Series) -> str:
    return ", ".join(f"{k} {v:.0f}×" if v >= 10 else f"{k} {v:.1f}×" for k, v in values.items())


def _g3(x: float) -> str:
    """Three significant digits, thousands in full (``1,110``, not ``1.11e+03``)."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _who(row) -> str:
    """``diversity on Si``: a strategy and where (the descriptor left out)."""
    return f"{row['strategy']} on {where_name(row)}"


def _coverage(last: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per setting and strategy at the compared budget (``last``: the runs' rows there): the mean
    over seeds of the recalibrated σ''s reliability columns, with ``gap`` (:func:`coverage_gap`)."""
    cal_cols = [c for c in RELIABILITY_COLUMNS if c.startswith("rel_cal_")]
    if last is None or not set(cal_cols) <= set(last.columns):
        return None
    keys = [*setting_columns(last.columns), "strategy"]
    cov = last.groupby(keys, sort=False)[cal_cols].mean().reset_index()
    cov["gap"] = [coverage_gap(r) for _, r in cov.iterrows()]
    return cov


def _recalibration_words(fin: pd.DataFrame, last: pd.DataFrame | None, fitted: str) -> str:
    """The recalibrated σ' per strategy in words: the range of z² over strategies and settings,
    how many are calibrated, and each that is still over-confident, too wide (a recalibration that
    overshoots) or both (:func:`calibration_state`)."""
    rows = fin[np.isfinite(fin["z2_mean_cal"].to_numpy(dtype=float))]
    if rows.empty:
        return ""
    cov = _coverage(last)
    keys = [*setting_columns(rows.columns), "strategy"]
    if cov is not None:
        rows = rows.merge(cov, on=keys, how="left")
    gap = rows["gap"] if "gap" in rows else pd.Series(np.nan, index=rows.index)
    rows = rows.assign(state=[calibration_state(z, g) for z, g in zip(rows["z2_mean_cal"], gap, strict=True)])
    lo_row = rows.loc[rows["z2_mean_cal"].idxmin()]
    hi_row = rows.loc[rows["z2_mean_cal"].idxmax()]
    band = f"{Z2_CALIBRATED[0]:g}–{Z2_CALIBRATED[1]:g}"
    coverage = cov is not None and np.isfinite(rows["gap"].to_numpy(dtype=float)).any()
    calibrated = (f"z² within {band} and its central intervals holding their probability within "
                  f"{100 * COVERAGE_GAP:.0f} points on average" if coverage else f"z² within {band}")
    text = (f"Recalibrated {fitted} (σ'), the mean squared z-score at the "
            f"compared budget (mean over seeds; 1 when calibrated) ranges over the {len(rows)} pairs of system and "
            f"strategy from {_g3(lo_row['z2_mean_cal'])} ({_who(lo_row)}) to {_g3(hi_row['z2_mean_cal'])} "
            f"({_who(hi_row)}); calibrated ({calibrated}): {int((rows['state'] == 'calibrated').sum())} of "
            f"{len(rows)}.")

    def item(r) -> str:
        words = f"{_who(r)} (z² {_g3(r['z2_mean_cal'])}"
        if coverage and np.isfinite(r.get("rel_cal_50", np.nan)):
            words += (f"; its 50 % and 90 % intervals hold {100 * r['rel_cal_50']:.0f} % and "
                      f"{100 * r['rel_cal_90']:.0f} % of the test errors")
        return words + ")"

    for state, words in (("over-confident", "Still over-confident (σ' too small)"),
                         ("too wide", "Over-corrected: σ' now too large, its intervals too wide"),
                         ("mixed", "Too wide for most errors and too small for the largest (a few large errors "
                                   "dominate z²)")):
        part = rows[rows["state"] == state].sort_values("z2_mean_cal", ascending=state == "too wide")
        if len(part):
            text += f" {words}: " + "; ".join(item(r) for _, r in part.iterrows()) + "."
    return text


def calibration_lines(cal: pd.DataFrame, runs: pd.DataFrame | None = None, *, fitted: str) -> list[str]:
    """σ's calibration at the compared budget (the final round unless runs stopped early), in words,
    from a :func:`calibration_table` (read back from CSV too) and, for the coverage of σ''s
    intervals and the MAE / σ ratio, the runs; ``fitted`` says how σ' was fitted (Track A:
    :data:`alhelpers.formation.config.CALIBRATIONS`):
    how many times smaller than the error it is (test MAE / mean σ, median over strategies and
    seeds), the mean squared z-score per system (median over strategies) and its range over the
    strategies, then the recalibrated σ' per strategy (:func:`_recalibration_words`)."""
    fin = compared_rows(cal)
    if fin.empty or "z2_mean" not in fin:
        return []
    z2 = fin.groupby("system", sort=False)[["z2_mean", "z2_mean_cal"]].median()
    if not np.isfinite(z2["z2_mean"].to_numpy(dtype=float)).any():
        return []
    ratio = None
    last = final_round(common_budget(runs).runs) if runs is not None else None  # at the compared budget
    if last is not None and {"mean_sigma", "mae"} <= set(last.columns):
        ratio = (last["mae"] / last["mean_sigma"]).groupby(last["system"], sort=False).median()
    z2_text = ", ".join(f"{k} {_g3(v)}" for k, v in z2["z2_mean"].items())
    raw = fin[np.isfinite(fin["z2_mean"].to_numpy(dtype=float))]
    lo_row, hi_row = raw.loc[raw["z2_mean"].idxmin()], raw.loc[raw["z2_mean"].idxmax()]
    spread = (f" (median over strategies; per strategy from {_g3(lo_row['z2_mean'])} ({_who(lo_row)}) to "
              f"{_g3(hi_row['z2_mean'])} ({_who(hi_row)}))" if len(raw) > 1 else "")
    if ratio is not None and (ratio > 1.5).all():
        state = ("The ensemble's uncertainty is over-confident in every system: in the final round its test MAE is "
                 f"{_factors(ratio)} its mean σ (median over strategies and seeds), and the mean squared z-score "
                 f"(1 when calibrated) is {z2_text}{spread}.")
    elif ratio is not None and (ratio < 1 / 1.5).all():
        state = (f"The ensemble's uncertainty is under-confident: its mean σ is {_factors(1 / ratio)} its test MAE "
                 f"in the final round; mean squared z-score {z2_text}{spread}.")
    elif (z2["z2_mean"] > 1.5).all():
        state = (f"The ensemble's uncertainty is over-confident: mean squared z-score (1 when calibrated) "
                 f"{z2_text}{spread}.")
    else:
        state = f"Mean squared z-score of σ in the final round (1 when calibrated): {z2_text}{spread}."
    recal = _recalibration_words(fin, last, fitted) if "z2_mean_cal" in fin else ""
    return [state + (f" {recal}" if recal else "")]
