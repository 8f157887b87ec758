"""Statistics of the active-learning study (STUDY §5–§6), computed only from tidy tables.

Every function takes a tidy runs table of either track (one row per setting, strategy, seed and
round, named by :class:`alhelpers.keys.Key`) or a table derived from it, and returns a new tidy
frame; nothing is modified in place and all randomness comes from a passed
:class:`numpy.random.Generator`.

A *setting* is what one learning curve is run in besides its strategy: the setting columns the
table has (:func:`alhelpers.keys.setting_columns`), i.e. ``system, descriptor`` for Track A
(formation energies) and ``system, batch`` for Track B (interatomic potentials). Every output
table starts with those columns, then ``strategy``; the metric is an argument of every function.

Conventions used throughout:

* Strategies are compared with a *baseline* strategy (``"random"`` by default) **paired by seed**:
  the loop gives every strategy of one seed the same split and initial labelled set, so the seed
  is the pairing unit. Only seeds present for both strategies are paired; ``n_pairs`` says how many.
* Lower values of the metric are better (MAE, RMSE, max error), except for the metrics in
  :data:`HIGHER_IS_BETTER` (R², the σ–error correlations), where the sign of the verdict flips.
* Bootstrap confidence intervals resample *seeds* with replacement (the seed is the independent
  unit; rounds of one seed are not independent) and are percentile intervals of the finite
  replicates.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from alhelpers.al.runs import appearance_sort, curve_columns, final_round, run_columns
from alhelpers.keys import Key, setting_columns

__all__ = [
    "HIGHER_IS_BETTER",
    "VERDICTS",
    "final_table",
    "SAVING_FRACTIONS",
    "label_savings",
    "labels_to_reach",
    "learning_curve_auc",
    "mean_curve",
    "verdict_summary",
]

#: Metrics for which a larger value is better (the verdict's sign flips for them).
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"r2", "pearson_sigma_abs_err", "spearman_sigma_abs_err", "unc_pearson"})

#: ``numpy.trapezoid`` (NumPy >= 2.0), falling back to its old name ``numpy.trapz`` on NumPy 1.26.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

#: Verdict labels of :func:`final_table`.
VERDICTS: tuple[str, ...] = ("baseline", "better", "similar", "worse", "n/a")


# --------------------------------------------------------------------------- validation helpers


def _require(df: pd.DataFrame, columns: Sequence[str], what: str = "runs") -> None:
    """Raise ``ValueError`` naming every column of ``columns`` that ``df`` lacks."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [str(c) for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what} is empty")


def _check_runs(runs: pd.DataFrame, extra: Sequence[str]) -> None:
    """Columns present (``system``, ``strategy``, ``seed``, ``round`` and ``extra``), and at most
    one row per (setting columns, strategy, seed, round)."""
    _require(runs, [Key.system, Key.strategy, Key.seed, Key.round, *extra])
    keys = [*run_columns(runs), str(Key.round)]
    dup = runs.duplicated(keys, keep=False)
    if dup.any():
        first = runs.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(
            f"runs has {int(dup.sum())} rows duplicating a ({', '.join(keys)})"
            f" key, e.g. {first}; concatenate each run once"
        )


def _where(setting: dict) -> str:
    """``system='C', descriptor='magpie'`` / ``system='tio2', batch=10`` for messages."""
    return ", ".join(f"{c}={v!r}" if isinstance(v, str) else f"{c}={v}" for c, v in setting.items())


def _settings(df: pd.DataFrame, baseline: str | None = None) -> Iterator[tuple[dict, pd.DataFrame, list]]:
    """``(setting, block, strategies)`` per setting of ``df`` in order of first appearance.

    ``setting`` maps each setting column to its value; ``strategies`` are the block's strategies in
    order of first appearance, with ``baseline`` moved first (an error when it has no runs there).
    """
    columns = list(setting_columns(df.columns))
    for key, block in df.groupby(columns, sort=False, observed=True):
        setting = dict(zip(columns, key if isinstance(key, tuple) else (key,), strict=True))
        strategies = list(pd.unique(block[Key.strategy]))
        if baseline is not None:
            if baseline not in strategies:
                raise ValueError(f"baseline strategy {baseline!r} has no runs for {_where(setting)}; "
                                 f"strategies there: {strategies}")
            strategies = [baseline] + [s for s in strategies if s != baseline]
        yield setting, block, strategies


def _check_rng(rng: np.random.Generator, n_boot: int, ci: float) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


def _sd(x: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than two values."""
    x = np.asarray(x, dtype=float)
    return float(np.std(x, ddof=1)) if len(x) >= 2 else float("nan")


def _percentile_ci(reps: np.ndarray, ci: float, *, missing_low: bool = False) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN, NaN when there are none).

    With ``missing_low`` the non-finite replicates are not dropped but ranked below every finite
    one (as −∞): a quantile that falls among them is −∞, the others are quantiles of the finite
    replicates at the correspondingly shifted level.
    """
    reps = np.asarray(reps, dtype=float)
    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        return (-np.inf, -np.inf) if (missing_low and reps.size) else (float("nan"), float("nan"))
    levels = np.array([(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    if not missing_low:
        lo, hi = np.quantile(finite, levels)
        return float(lo), float(hi)
    f = 1.0 - finite.size / reps.size
    out = [-np.inf if q < f else float(np.quantile(finite, (q - f) / (1.0 - f))) for q in levels]
    return float(out[0]), float(out[1])


def _t_interval(point: float, reps: np.ndarray, k: int, ci: float, *, missing_low: bool = False
                ) -> tuple[float, float]:
    """``point ± t_{k−1}·sd(reps)·√(k/(k−1))``: bootstrap standard error with Student's quantile.

    ``reps`` are the bootstrap replicates over ``k`` resampled seeds (non-finite ones: not reached,
    left out of the standard deviation). The √(k/(k−1)) factor undoes the bootstrap's shrinkage of
    the variance by (k−1)/k. NaN, NaN when the point is not finite, there are fewer than two seeds
    or two finite replicates; with ``missing_low``, the low end is −∞ when more than (1 − ci)/2 of
    the replicates are not finite.
    """
    reps = np.asarray(reps, dtype=float)
    finite = reps[np.isfinite(reps)]
    lo = hi = float("nan")
    if np.isfinite(point) and k >= 2 and finite.size >= 2:
        half = float(sps.t.ppf(0.5 + ci / 2.0, k - 1) * np.std(finite, ddof=1) * np.sqrt(k / (k - 1)))
        lo, hi = point - half, point + half
    if missing_low and reps.size and 1.0 - finite.size / reps.size > (1.0 - ci) / 2.0:
        lo = -np.inf
    return lo, hi


# --------------------------------------------------------------------------- final table


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm-corrected p-values of the finite entries of ``p`` (NaN entries stay NaN)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def _paired_tests(s: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired statistics of strategy values ``s`` against baseline values ``b`` (same seed order)."""
    d = s - b
    n = len(d)
    out = {"diff_mean": float(d.mean()) if n else float("nan"), "p_paired": float("nan"),
           "p_wilcoxon": float("nan"), "effect_size": float("nan")}
    if n < 2:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out["p_paired"] = float(sps.ttest_rel(s, b).pvalue)
        if np.any(d != 0):
            # zero_method="wilcox" (scipy's default): zero differences are dropped before ranking;
            # ties among the remaining |d| get average ranks and method="auto" then uses the normal
            # approximation, exactly as scipy decides.
            out["p_wilcoxon"] = float(sps.wilcoxon(d, zero_method="wilcox", method="auto").pvalue)
    sd = float(np.std(d, ddof=1))
    if sd > 0:
        out["effect_size"] = float(d.mean()) / sd
    return out


def _verdict(p_holm: float, diff: float, n_pairs: int, alpha: float, higher_is_better: bool) -> str:
    if n_pairs < 2:
        return "n/a"
    if not np.isfinite(p_holm) or p_holm >= alpha or diff == 0:
        return "similar"  # NaN with >= 2 pairs: scipy's answer for identical values
    improves = diff > 0 if higher_is_better else diff < 0
    return "better" if improves else "worse"


def final_table(
    runs: pd.DataFrame,
    *,
    baseline: str = "random",
    alpha: float = 0.05,
    metric: str = "mae",
) -> pd.DataFrame:
    """Final-round comparison of every strategy with the baseline (STUDY §5).

    One row per setting (the setting columns the runs have, see the module docstring) and
    strategy, computed from :func:`alhelpers.al.runs.final_round`:

    * ``n_seeds`` — runs of this strategy; ``n_pairs`` — seeds present for both this strategy and
      the baseline (the only seeds used by the paired statistics);
    * ``n_labelled`` — mean over seeds of the final labelled count (equal for all seeds unless a
      pool ran out);
    * ``{metric}_mean``, ``{metric}_std`` (ddof=1) over all seeds, and ``r2_mean``, ``r2_std``
      when the runs have an ``r2`` column (Track A);
    * ``diff_mean`` — mean over paired seeds of (strategy − baseline) ``metric``; ``diff_pct`` —
      the same as a percentage of the baseline's mean over those seeds;
    * ``p_paired`` — :func:`scipy.stats.ttest_rel` over the paired seeds;
    * ``p_welch`` — :func:`scipy.stats.ttest_ind` with ``equal_var=False`` over all seeds of each;
    * ``p_wilcoxon`` — :func:`scipy.stats.wilcoxon` of the paired differences with
      ``zero_method="wilcox"`` (scipy's default: zero differences are discarded, ties among the rest
      get average ranks, ``method="auto"`` picks exact or normal approximation as scipy does);
      NaN when there are fewer than 2 pairs or every difference is zero;
    * ``p_holm`` — ``p_paired`` Holm-corrected (:func:`statsmodels.stats.multitest.multipletests`)
      across the non-baseline strategies of one setting (so each Track A descriptor and each
      Track B batch size is a family of its own); NaN p-values are left out of the family;
    * ``effect_size`` — Cohen's d_z = mean(diff) / std(diff, ddof=1) over the pairs (negative: the
      strategy's metric is lower); NaN with fewer than 2 pairs or zero spread;
    * ``verdict`` — ``"better"`` / ``"worse"`` when ``p_holm < alpha`` and the difference favours /
      disfavours the strategy (lower is better unless ``metric`` is in :data:`HIGHER_IS_BETTER`),
      ``"similar"`` otherwise (including a NaN p-value, which scipy returns when every paired
      difference is the same, e.g. identical runs), ``"n/a"`` with fewer than 2 pairs, and
      ``"baseline"`` for the baseline's own row (its p-values and effect size are NaN, its
      ``diff_mean`` 0).

    Every setting must contain the baseline strategy. The returned frame carries
    ``attrs`` ``{"metric", "baseline", "alpha"}`` for :func:`verdict_summary`.
    """
    _check_runs(runs, ["n_labelled", metric])
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    fin = final_round(runs)
    higher = metric in HIGHER_IS_BETTER
    summary_metrics = list(dict.fromkeys([metric, "r2"] if "r2" in runs.columns else [metric]))
    rows: list[dict] = []
    for setting, block, ordered in _settings(fin, baseline):
        base = block[block["strategy"] == baseline].set_index("seed")[metric]
        sys_rows: list[dict] = []
        for strategy in ordered:
            part = block[block["strategy"] == strategy]
            row: dict = {**setting, "strategy": strategy, "n_seeds": len(part)}
            vals = part.set_index("seed")[metric]
            common = vals.index.intersection(base.index)
            row["n_pairs"] = len(common)
            row["n_labelled"] = float(part["n_labelled"].mean())
            for m in summary_metrics:
                row[f"{m}_mean"] = float(part[m].mean())
                row[f"{m}_std"] = _sd(part[m].to_numpy())
            s = vals.loc[common].to_numpy(dtype=float)
            b = base.loc[common].to_numpy(dtype=float)
            if strategy == baseline:
                row.update(diff_mean=0.0, diff_pct=0.0, p_paired=np.nan, p_welch=np.nan,
                           p_wilcoxon=np.nan, effect_size=np.nan)
            else:
                row.update(_paired_tests(s, b))
                bmean = float(b.mean()) if len(b) else float("nan")
                row["diff_pct"] = 100.0 * row["diff_mean"] / bmean if bmean else float("nan")
                row["p_welch"] = float("nan")
                if len(vals) >= 2 and len(base) >= 2:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        row["p_welch"] = float(
                            sps.ttest_ind(vals.to_numpy(float), base.to_numpy(float), equal_var=False).pvalue
                        )
            sys_rows.append(row)
        p_holm = _holm(np.array([r["p_paired"] for r in sys_rows[1:]], dtype=float))
        sys_rows[0]["p_holm"] = np.nan
        sys_rows[0]["verdict"] = "baseline"
        for r, ph in zip(sys_rows[1:], p_holm, strict=True):
            r["p_holm"] = float(ph)
            r["verdict"] = _verdict(float(ph), r["diff_mean"], r["n_pairs"], alpha, higher)
        rows.extend(sys_rows)
    columns = [*curve_columns(runs), "n_seeds", "n_pairs", "n_labelled"]
    for m in summary_metrics:
        columns += [f"{m}_mean", f"{m}_std"]
    columns += ["diff_mean", "diff_pct", "p_paired", "p_welch", "p_wilcoxon", "p_holm",
                "effect_size", "verdict"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs.update(metric=metric, baseline=baseline, alpha=alpha)
    return out


# --------------------------------------------------------------------------- learning curves


def mean_curve(runs: pd.DataFrame, *, metric: str = "mae") -> pd.DataFrame:
    """Mean learning curve: per setting, strategy and ``n_labelled`` the ``mean``, ``std``
    (ddof=1, NaN for one seed) and ``n_seeds`` of ``metric`` over seeds.

    Points reached by only some seeds (a pool that ran out) are averaged over those seeds only;
    ``n_seeds`` shows it.
    """
    _check_runs(runs, ["n_labelled", metric])
    keys = [*curve_columns(runs), "n_labelled"]
    g = runs.groupby(keys, sort=False, observed=True)[metric]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n_seeds": g.count()}).reset_index()
    return appearance_sort(out, keys)


def _first_crossing(n: np.ndarray, curves: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Row-wise :func:`labels_to_reach`: ``curves`` (r, m) over ``n`` (m,), one target per row.

    NaN points of a curve are skipped (interpolation is between the neighbouring finite points).
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    targets = np.broadcast_to(np.asarray(targets, dtype=float), (curves.shape[0],))
    r, m = curves.shape
    finite = np.isfinite(curves)
    with np.errstate(invalid="ignore"):
        hit = finite & (curves <= targets[:, None])
    any_hit = hit.any(axis=1) & np.isfinite(targets)
    i = hit.argmax(axis=1)
    cols = np.arange(m)
    last_finite = np.maximum.accumulate(np.where(finite, cols, -1), axis=1)
    rows = np.arange(r)
    prev = np.where(i > 0, last_finite[rows, np.maximum(i - 1, 0)], -1)
    out = n[i].astype(float)
    interp = any_hit & (prev >= 0)
    if interp.any():
        ri, pi, ii = rows[interp], prev[interp], i[interp]
        c0, c1 = curves[ri, pi], curves[ri, ii]
        frac = (c0 - targets[ri]) / (c0 - c1)  # c0 > target >= c1, so 0 < frac <= 1
        out[interp] = n[pi] + frac * (n[ii] - n[pi])
    out[~any_hit] = np.nan
    return out


def labels_to_reach(n_labelled: np.ndarray, curve: np.ndarray, target: float) -> float:
    """Labels at which a learning curve **first** reaches ``curve <= target``.

    Convention (first crossing): walk the points in order of ``n_labelled``; at the first point ``i``
    with ``curve[i] <= target`` return the linear interpolation between points ``i-1`` and ``i``
    (where the straight segment meets ``target``), or ``n_labelled[0]`` if the very first point
    already qualifies. Later rises above the target are ignored, so a noisy curve that dips early
    is credited with the dip. NaN points are skipped; NaN when the curve never reaches the target
    (or ``target`` is NaN).

    ``n_labelled`` must be strictly increasing and have the same length as ``curve``.
    """
    n = np.asarray(n_labelled, dtype=float)
    c = np.asarray(curve, dtype=float)
    if n.ndim != 1 or c.shape != n.shape:
        raise ValueError(f"n_labelled and curve must be 1-D of equal length, got {n.shape} and {c.shape}")
    if n.size == 0:
        raise ValueError("n_labelled is empty")
    if np.any(np.diff(n) <= 0):
        raise ValueError("n_labelled must be strictly increasing")
    return float(_first_crossing(n, c[None, :], np.array([target], dtype=float))[0])


def _pivot(runs: pd.DataFrame, metric: str, seeds: Sequence, grid: np.ndarray) -> np.ndarray:
    """(seed × n_labelled) array of ``metric`` for one strategy, NaN where a seed has no point."""
    p = runs.pivot_table(index="seed", columns="n_labelled", values=metric, aggfunc="mean")
    return p.reindex(index=list(seeds), columns=grid).to_numpy(dtype=float)


def _boot_weights(k: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, k) multiplicities of ``k`` seeds resampled with replacement."""
    idx = rng.integers(0, k, size=(n_boot, k))
    w = np.zeros((n_boot, k))
    np.add.at(w, (np.repeat(np.arange(n_boot), k), idx.ravel()), 1.0)
    return w


def _weighted_curves(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean curves over seeds with multiplicities ``w`` (r, k) of a (k, m) array with NaNs."""
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.where(finite, values, 0.0)) / (w @ finite.astype(float))


def _last_finite(curves: np.ndarray) -> np.ndarray:
    """Index of the last finite entry of each row (-1 when none)."""
    finite = np.isfinite(curves)
    m = curves.shape[1]
    last = m - 1 - finite[:, ::-1].argmax(axis=1)
    return np.where(finite.any(axis=1), last, -1)


def _interp_rows(grid: np.ndarray, curves: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of ``curves`` (r, m) over ``grid`` at ``at`` (r,), between the
    finite points of each row (NaN for a row without finite points)."""
    out = np.full(curves.shape[0], np.nan)
    finite = np.isfinite(curves)
    full = finite.all(axis=1)
    if full.any():  # the common case, vectorised: every point finite
        j = np.clip(np.searchsorted(grid, at[full], side="right") - 1, 0, grid.size - 2) if grid.size > 1 else None
        c = curves[full]
        if j is None:
            out[full] = c[:, 0]
        else:
            rows = np.arange(c.shape[0])
            x0, x1 = grid[j], grid[j + 1]
            t = np.clip((at[full] - x0) / (x1 - x0), 0.0, 1.0)
            out[full] = c[rows, j] + t * (c[rows, j + 1] - c[rows, j])
    for r in np.flatnonzero(~full & finite.any(axis=1)):
        out[r] = np.interp(at[r], grid[finite[r]], curves[r, finite[r]])
    return out


def _savings(grid: np.ndarray, base_curves: np.ndarray, strat_curves: np.ndarray,
             fractions: np.ndarray) -> dict[str, np.ndarray]:
    """Row-wise label savings on shared targets: (r, F) arrays, one column per budget fraction.

    The target of fraction f is the baseline curve's value at ``n_lo + f·(n_hi − n_lo)`` (its own
    first and last finite points); both curves' first crossings of it are found the same way
    (:func:`_first_crossing`), and ``saving = 100·(1 − n_reach / n_base)``.
    """
    r = base_curves.shape[0]
    finite = np.isfinite(base_curves)
    ok = finite.any(axis=1)
    first = np.where(ok, finite.argmax(axis=1), 0)
    last = np.maximum(_last_finite(base_curves), 0)
    n_lo, n_hi = grid[first], grid[last]
    out = {k: np.full((r, fractions.size), np.nan) for k in ("n_target", "target", "n_base", "n_reach", "saving")}
    for k, f in enumerate(fractions):
        n_target = np.where(ok, n_lo + f * (n_hi - n_lo), np.nan)
        target = _interp_rows(grid, base_curves, n_target)
        n_base = _first_crossing(grid, base_curves, target)
        n_reach = _first_crossing(grid, strat_curves, target)
        with np.errstate(invalid="ignore", divide="ignore"):
            saving = 100.0 * (1.0 - n_reach / n_base)
        for name, v in (("n_target", n_target), ("target", target), ("n_base", n_base), ("n_reach", n_reach),
                        ("saving", saving)):
            out[name][:, k] = v
    return out


#: Budget fractions whose baseline error :func:`label_savings` uses as targets.
SAVING_FRACTIONS: tuple[float, ...] = (0.5, 0.75, 1.0)


def label_savings(
    runs: pd.DataFrame,
    *,
    baseline: str = "random",
    n_boot: int = 2000,
    rng: np.random.Generator,
    ci: float = 0.95,
    metric: str = "mae",
    unreached: str = "drop",
    fractions: Sequence[float] = SAVING_FRACTIONS,
) -> pd.DataFrame:
    """Labels each strategy needs to reach the baseline's error at several points of its budget,
    and the saving in % (STUDY §5): one row per setting, strategy and budget fraction.

    Per setting, strategy and fraction f of ``fractions``, over the seeds shared with the
    baseline (``n_pairs``), on the mean curves over those seeds:

    * ``n_target`` — ``n_lo + f·(n_hi − n_lo)`` over the baseline's labelled range, and
      ``target`` — the baseline's mean ``metric`` there (interpolated);
    * ``n_baseline`` and ``n_reach`` — where the baseline's and the strategy's mean curves
      **first** reach ``target`` (:func:`labels_to_reach`: first crossing, linear interpolation),
      found the same way for both; ``n_baseline`` ≤ ``n_target``, below it when the baseline's
      curve dipped to the target earlier. ``reached`` is False and ``n_reach`` NaN when the
      strategy's curve never gets there;
    * ``saving_pct`` = 100 · (1 − n_reach / n_baseline): the baseline against itself is 0 by
      construction;
    * ``saving_lo``, ``saving_hi`` — interval at level ``ci`` around ``saving_pct``
      (:func:`_t_interval`): ``n_boot`` times, resample the paired seeds with replacement (the
      same seeds for baseline and strategy) and recompute both mean curves, the target, both
      crossings and the saving; the half-width is Student's t quantile (k − 1 degrees of freedom,
      k seeds) times the replicates' standard deviation times √(k/(k − 1)). The percentile
      interval of the replicates covers a known saving only 84–88 % of the time with 5 seeds (at
      a nominal 95 %); this one 93–98 % with 3–30 seeds (simulated in the tests), and it always
      contains its point estimate. ``reach_frac`` is the fraction of replicates in which the
      strategy reached the target. Replicates that never reach it have no saving; ``unreached``
      says how the interval treats them: ``"drop"`` (default) — the standard deviation of the
      finite replicates (an interval *conditional on reaching*; read it with ``reach_frac``);
      ``"worst"`` — ``saving_lo`` is −∞ when more than (1 − ci)/2 of them miss.

    MAE-like metrics only: "reaching" means ``curve <= target``.
    """
    _check_runs(runs, ["n_labelled", metric])
    _check_rng(rng, n_boot, ci)
    if unreached not in ("drop", "worst"):
        raise ValueError(f"unreached must be 'drop' or 'worst', got {unreached!r}")
    if metric in HIGHER_IS_BETTER:
        raise ValueError(f"label_savings needs a lower-is-better metric, got {metric!r}")
    fr = np.asarray(list(fractions), dtype=float)
    if fr.size == 0 or not np.all((fr > 0) & (fr <= 1)):
        raise ValueError(f"fractions must be in (0, 1], e.g. (0.5, 0.75, 1.0); got {list(fractions)}")
    rows: list[dict] = []
    for setting, block, ordered in _settings(runs, baseline):
        base_runs = block[block["strategy"] == baseline]
        for strategy in ordered:
            strat_runs = block[block["strategy"] == strategy]
            seeds = sorted(set(base_runs["seed"]) & set(strat_runs["seed"]))
            if not seeds:
                rows += [{**setting, "strategy": strategy, "budget_frac": float(f), "n_pairs": 0, "reached": False,
                          "reach_frac": np.nan} for f in fr]
                continue
            grid = np.union1d(base_runs["n_labelled"].unique(), strat_runs["n_labelled"].unique()).astype(float)
            B = _pivot(base_runs, metric, seeds, grid)
            A = _pivot(strat_runs, metric, seeds, grid)
            point_w = np.ones((1, len(seeds)))
            point = _savings(grid, _weighted_curves(point_w, B), _weighted_curves(point_w, A), fr)
            w = _boot_weights(len(seeds), int(n_boot), rng)
            boot = _savings(grid, _weighted_curves(w, B), _weighted_curves(w, A), fr)
            for k, f in enumerate(fr):
                lo, hi = _t_interval(float(point["saving"][0, k]), boot["saving"][:, k], len(seeds), ci,
                                     missing_low=unreached == "worst")
                n_reach = float(point["n_reach"][0, k])
                rows.append({
                    **setting, "strategy": strategy, "budget_frac": float(f), "n_pairs": len(seeds),
                    "n_target": float(point["n_target"][0, k]), "target": float(point["target"][0, k]),
                    "n_baseline": float(point["n_base"][0, k]), "n_reach": n_reach,
                    "reached": bool(np.isfinite(n_reach)), "saving_pct": float(point["saving"][0, k]),
                    "saving_lo": lo, "saving_hi": hi,
                    "reach_frac": float(np.mean(np.isfinite(boot["n_reach"][:, k]))),
                })
    columns = [*curve_columns(runs), "budget_frac", "n_pairs", "n_target", "target", "n_baseline", "n_reach",
               "reached", "saving_pct", "saving_lo", "saving_hi", "reach_frac"]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs.update(metric=metric, baseline=baseline, ci=ci, n_boot=int(n_boot), unreached=unreached,
                     fractions=[float(f) for f in fr])
    return out


def _normalised_auc(grid: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Row-wise trapezoid area over ``grid`` divided by the covered ``n_labelled`` range.

    NaN points are skipped; a curve with a single finite point returns that point's value.
    """
    curves = np.atleast_2d(curves)
    finite = np.isfinite(curves)
    if finite.all():
        span = grid[-1] - grid[0]
        if span == 0:
            return curves[:, 0].astype(float)
        return _trapezoid(curves, grid, axis=1) / span
    out = np.full(curves.shape[0], np.nan)
    for i, (row, ok) in enumerate(zip(curves, finite, strict=True)):
        x, y = grid[ok], row[ok]
        if x.size == 1:
            out[i] = y[0]
        elif x.size > 1:
            out[i] = _trapezoid(y, x) / (x[-1] - x[0])
    return out


def learning_curve_auc(
    runs: pd.DataFrame,
    *,
    metric: str = "mae",
    n_boot: int = 2000,
    rng: np.random.Generator,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Normalised area under the mean learning curve, per setting and strategy.

    ``auc`` = trapezoid area (:func:`numpy.trapezoid`) of the mean curve over ``n_labelled`` divided
    by the ``n_labelled`` range, i.e. the curve's average ``metric`` over the labelling budget
    (lower is better for MAE). ``auc_lo``/``auc_hi``: percentile bootstrap interval over seeds
    (resampled with replacement, mean curve recomputed). ``seed_auc_mean``/``seed_auc_std``
    (ddof=1): the same area computed per seed on its own curve.
    """
    _check_runs(runs, ["n_labelled", metric])
    _check_rng(rng, n_boot, ci)
    rows: list[dict] = []
    keys = list(curve_columns(runs))
    for key, part in runs.groupby(keys, sort=False, observed=True):
        seeds = sorted(pd.unique(part["seed"]))
        grid = np.sort(part["n_labelled"].unique()).astype(float)
        P = _pivot(part, metric, seeds, grid)
        auc = float(_normalised_auc(grid, _weighted_curves(np.ones((1, len(seeds))), P))[0])
        boot = _normalised_auc(grid, _weighted_curves(_boot_weights(len(seeds), int(n_boot), rng), P))
        lo, hi = _percentile_ci(boot, ci)
        per_seed = _normalised_auc(grid, P)
        rows.append({**dict(zip(keys, key, strict=True)),
                     "n_seeds": len(seeds), "auc": auc, "auc_lo": lo, "auc_hi": hi,
                     "seed_auc_mean": float(np.nanmean(per_seed)), "seed_auc_std": _sd(per_seed)})
    out = pd.DataFrame(rows, columns=[*keys, "n_seeds", "auc", "auc_lo", "auc_hi", "seed_auc_mean",
                                      "seed_auc_std"])
    out.attrs.update(metric=metric, ci=ci, n_boot=int(n_boot))
    return out


# --------------------------------------------------------------------------- prose


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def verdict_summary(final: pd.DataFrame, *, metric: str | None = None, baseline: str | None = None) -> str:
    """One paragraph per setting of a :func:`final_table`, for a report.

    A paragraph starts with the setting: ``"C (magpie)"`` for Track A (the descriptor bare),
    ``"tio2 (batch 10)"`` for Track B (other setting columns as ``name value``).

    ``metric`` and ``baseline`` default to the ones :func:`final_table` stored in ``final.attrs``
    (else ``"mae"`` and the row whose verdict is ``"baseline"``). Paragraphs are separated by a
    blank line.
    """
    metric = metric or final.attrs.get("metric", "mae")
    _require(final, [*dict.fromkeys((Key.system, *setting_columns(final.columns))), "strategy",
                     "n_pairs", "n_labelled", f"{metric}_mean", f"{metric}_std", "diff_mean",
                     "diff_pct", "p_paired", "p_holm", "p_wilcoxon", "effect_size", "verdict"],
             what="final")
    alpha = final.attrs.get("alpha", 0.05)
    label = metric.upper() if metric in {"mae", "rmse"} else metric
    paragraphs = []
    for setting, block, _ in _settings(final):
        base_name = baseline or final.attrs.get("baseline")
        base = block[block["strategy"] == base_name] if base_name else block[block["verdict"] == "baseline"]
        if base.empty:
            raise ValueError(f"final has no baseline row for {_where(setting)}")
        b = base.iloc[0]
        rest = [str(v) if c == Key.descriptor else f"{c} {v}"
                for c, v in setting.items() if c != Key.system]
        name = f"{setting[Key.system]} ({', '.join(rest)})" if rest else str(setting[Key.system])
        text = (f"{name}: after {b['n_labelled']:g} labels, {b['strategy']} reaches "
                f"{label} {b[f'{metric}_mean']:.4g} ± {b[f'{metric}_std']:.2g} (mean ± std over "
                f"{int(b['n_seeds']) if 'n_seeds' in b else int(b['n_pairs'])} seeds).")
        others = block[block["strategy"] != b["strategy"]]
        for verdict, phrase in (("better", f"Better than {b['strategy']}"),
                                ("worse", f"Worse than {b['strategy']}"),
                                ("similar", f"Not distinguishable from {b['strategy']}"),
                                ("n/a", "Not testable (fewer than 2 paired seeds)")):
            sel = others[others["verdict"] == verdict]
            if sel.empty:
                continue
            items = [
                f"{r['strategy']} ({label} {r[f'{metric}_mean']:.4g}, {r['diff_pct']:+.1f} %, "
                f"paired p = {_fmt_p(r['p_paired'])}, Holm p = {_fmt_p(r['p_holm'])}, "
                f"Wilcoxon p = {_fmt_p(r['p_wilcoxon'])}, d_z = {r['effect_size']:.2f}, "
                f"{int(r['n_pairs'])} pairs)"
                for _, r in sel.iterrows()
            ]
            text += f" {phrase}: " + "; ".join(items) + "."
        if not (others["verdict"] == "better").any():
            text += f" No strategy beats {b['strategy']} at α = {alpha:g} after Holm correction."
        paragraphs.append(text)
    return "\n\n".join(paragraphs)
