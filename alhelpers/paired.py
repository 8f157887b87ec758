"""The building blocks of :mod:`alhelpers.stats` and :mod:`alhelpers.curves`: checks of a runs
table, settings and seeds paired with the baseline, bootstrap intervals, the paired tests of one
comparison, their power, and one comparison's verdict in words.

Conventions (shared by both modules):

* Strategies are compared with a *baseline* strategy (``"random"`` by default) **paired by seed**:
  the loop gives every strategy of one seed the same split and initial labelled set, so the seed
  is the pairing unit. Only seeds present for both strategies are paired; ``n_pairs`` says how many.
* Lower values of the metric are better (MAE, RMSE, max error), except for the metrics in
  :data:`HIGHER_IS_BETTER` (R², the σ–error correlations), where the sign of the verdict flips.
* Bootstrap confidence intervals resample *seeds* with replacement (the seed is the independent
  unit; rounds of one seed are not independent).
* With fewer than 2 paired seeds nothing is tested (:func:`untestable`), and a difference below
  the numbers' precision has no direction (:data:`PRECISION`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from alhelpers.al.runs import run_columns
from alhelpers.keys import Key, setting_columns

__all__ = [
    "mean_std_text", "seeds_text",
    "HIGHER_IS_BETTER", "MAX_SEEDS", "NO_DIFFERENCE_PRECISION", "POWER", "PRECISION", "VERDICTS", "check_rng",
    "check_runs", "comparisons", "finding", "holm_adjust", "paired_difference", "paired_tests", "percentile_ci",
    "power_at_level", "power_columns", "require_columns", "sample_sd", "setting_text", "t_interval", "untestable",
    "verdict", "within_precision",
]

#: Metrics for which a larger value is better (the verdict's sign flips for them).
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"r2", "pearson_sigma_abs_err", "spearman_sigma_abs_err", "unc_pearson"})

#: Verdict labels of :func:`alhelpers.stats.final_table`.
VERDICTS: tuple[str, ...] = ("baseline", "better", "similar", "worse", "n/a")


# --------------------------------------------------------------------------- checks, settings, intervals


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "runs") -> None:
    """Raise ``ValueError`` naming every column of ``columns`` that ``df`` lacks."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [str(c) for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{what} is empty")


def check_runs(runs: pd.DataFrame, extra: Sequence[str]) -> None:
    """Columns present (``system``, ``strategy``, ``seed``, ``round`` and ``extra``), and at most
    one row per (setting columns, strategy, seed, round)."""
    require_columns(runs, [Key.system, Key.strategy, Key.seed, Key.round, *extra])
    keys = [*run_columns(runs), str(Key.round)]
    dup = runs.duplicated(keys, keep=False)
    if dup.any():
        first = runs.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(
            f"runs has {int(dup.sum())} rows duplicating a ({', '.join(keys)})"
            f" key, e.g. {first}; concatenate each run once"
        )


def setting_text(setting: dict) -> str:
    """``system='C', descriptor='magpie'`` / ``system='tio2', batch=10`` for messages."""
    return ", ".join(f"{c}={v!r}" if isinstance(v, str) else f"{c}={v}" for c, v in setting.items())


def comparisons(df: pd.DataFrame, baseline: str | None = None) -> Iterator[tuple[dict, pd.DataFrame, list]]:
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
                raise ValueError(f"baseline strategy {baseline!r} has no runs for {setting_text(setting)}; "
                                 f"strategies there: {strategies}")
            strategies = [baseline] + [s for s in strategies if s != baseline]
        yield setting, block, strategies


def check_rng(rng: np.random.Generator, n_boot: int, ci: float) -> None:
    """A bootstrap's arguments: a NumPy generator, at least one replicate, a level in (0, 1)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")


def sample_sd(x: np.ndarray) -> float:
    """Sample standard deviation (ddof=1); NaN for fewer than two values."""
    x = np.asarray(x, dtype=float)
    return float(np.std(x, ddof=1)) if len(x) >= 2 else float("nan")


def percentile_ci(reps: np.ndarray, ci: float, *, missing_low: bool = False) -> tuple[float, float]:
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


def t_interval(point: float, reps: np.ndarray, k: int, ci: float, *, missing_low: bool = False
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


# --------------------------------------------------------------------------- one paired comparison


def holm_adjust(p: np.ndarray) -> np.ndarray:
    """Holm-corrected p-values of the finite entries of ``p`` (NaN entries stay NaN)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def paired_difference(s: np.ndarray, b: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
    """The mean paired difference of strategy values ``s`` from baseline values ``b`` (same seed
    order) with the paired t-test's ``ci`` confidence interval, also in % of the baseline's mean:
    ``diff_mean``, ``diff_low``, ``diff_high``, ``diff_pct``, ``diff_pct_low``, ``diff_pct_high``
    (the interval NaN with fewer than 2 pairs; the percentages NaN when the baseline's mean is 0)."""
    d = s - b
    out = {"diff_mean": float(d.mean()) if len(d) else float("nan"), "diff_low": float("nan"),
           "diff_high": float("nan")}
    if len(d) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = sps.ttest_rel(s, b).confidence_interval(ci)
        out["diff_low"], out["diff_high"] = float(low), float(high)
    bmean = float(b.mean()) if len(b) else float("nan")
    for col in ("diff", "diff_low", "diff_high"):
        value = out["diff_mean" if col == "diff" else col]
        out[col.replace("diff", "diff_pct")] = 100.0 * value / bmean if bmean else float("nan")
    return out


def paired_tests(s: np.ndarray, b: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
    """Paired statistics of strategy values ``s`` against baseline values ``b`` (same seed order):
    :func:`paired_difference`, the paired t-test, Wilcoxon and the effect size."""
    d = s - b
    n = len(d)
    out = {**paired_difference(s, b, ci=ci), "p_paired": float("nan"), "p_wilcoxon": float("nan"),
           "effect_size": float("nan")}
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


#: Power at which :func:`power_columns` states detectable effects and seeds needed.
POWER: float = 0.8


#: Largest number of seeds :func:`power_columns` searches (beyond it: ``inf``).
MAX_SEEDS: int = 100_000


def _ttest_power():
    from statsmodels.tools import sm_exceptions  # noqa: F401  (its import resets warning filters)
    from statsmodels.stats.power import TTestPower

    return TTestPower()


def _detectable_dz(n: int, level: float, power: float = POWER) -> float:
    """The standardised paired difference d_z that ``n`` pairs detect with ``power`` at ``level``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_ttest_power().solve_power(nobs=n, alpha=level, power=power, alternative="two-sided"))


def _seeds_for(effect: float, level: float, power: float = POWER) -> float:
    """The smallest number of pairs whose paired t-test detects d_z = ``effect`` with ``power`` at
    ``level`` (power grows with the pairs: doubling, then bisection on the integers); ``inf`` for
    no difference or beyond :data:`MAX_SEEDS`."""
    tt = _ttest_power()

    def enough(k: int) -> bool:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return bool(tt.power(effect, k, level, alternative="two-sided") >= power)

    effect = abs(effect)
    if effect < 1e-9:  # no difference (up to rounding): no number of seeds finds it
        return float("inf")
    lo, hi = 1, 2
    while not enough(hi):
        lo, hi = hi, 2 * hi
        if hi > MAX_SEEDS:
            return float("inf")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return float(hi)


def power_columns(d: np.ndarray, base_mean: float, *, alpha: float, family: int, power: float = POWER
                  ) -> dict[str, float]:
    """What the paired seeds could detect, from their differences ``d`` (strategy − baseline).

    With the Bonferroni level ``alpha / family`` (the first and strictest step of Holm's
    correction) and the paired t-test's power (:class:`statsmodels.stats.power.TTestPower`):

    * ``mde_pct`` — the smallest mean difference, in % of the baseline's mean, that ``len(d)``
      pairs detect with probability ``power``, given the spread of the observed differences;
    * ``seeds_needed`` — pairs needed to detect the observed mean difference with that power;
    * ``seeds_for_5pct`` — pairs needed for a 5 % difference (the low end of the paper's claim).

    NaN with fewer than 3 pairs or no spread; ``inf`` seeds for a zero difference.
    """
    n = len(d)
    out = {"mde_pct": float("nan"), "seeds_needed": float("nan"), "seeds_for_5pct": float("nan")}
    sd = float(np.std(d, ddof=1)) if n >= 2 else 0.0
    if n < 3 or sd <= 0 or not base_mean:
        return out
    level = alpha / max(int(family), 1)
    out["mde_pct"] = 100.0 * _detectable_dz(n, level, power) * sd / abs(base_mean)
    out["seeds_needed"] = _seeds_for(float(np.mean(d)) / sd, level, power)
    out["seeds_for_5pct"] = _seeds_for(0.05 * abs(base_mean) / sd, level, power)
    return out


def power_at_level(mde_pct: float, n_pairs: int, level: float, new_level: float, power: float = POWER
                   ) -> tuple[float, float]:
    """``(mde_pct, seeds_for_5pct)`` of a final-table row at another significance level.

    ``mde_pct`` was computed at ``level`` from ``n_pairs`` pairs (:func:`power_columns`), so the
    spread of the paired differences in % of the baseline is ``mde_pct / d_z(n_pairs, level)``;
    at ``new_level`` (e.g. the strictest level of a larger Holm family) the same spread gives
    ``d_z(n_pairs, new_level) ×`` that spread, and a 5 % difference needs the pairs
    :func:`power_columns` would find there. NaN, NaN where ``mde_pct`` is NaN.
    """
    if not np.isfinite(mde_pct) or n_pairs < 3:
        return float("nan"), float("nan")
    sd_pct = mde_pct / _detectable_dz(int(n_pairs), level, power)
    return _detectable_dz(int(n_pairs), new_level, power) * sd_pct, _seeds_for(5.0 / sd_pct, new_level, power)


#: Relative size below which a paired difference is rounding, not a result: every paired
#: difference ``|s − b|`` at most ``PRECISION`` × |the baseline's mean| over the paired seeds.
#: Track A's ensembles train and predict in float32 (machine epsilon 1.2·10⁻⁷): a test MAE is a
#: mean over hundreds of float32 predictions after thousands of float32 updates whose summation
#: order depends on how the stacked computation is batched, so two strategies that trained on the
#: very same materials (a pool that ran out) still differ by 10⁻⁸–10⁻⁶ of their MAE. 10⁻⁵ (0.001 %)
#: is about 100 × float32's epsilon, above that rounding, and ~1000 × below the smallest
#: difference the study asks about (the claim is 5–13 %; a seed-to-seed spread is ~1 %).
PRECISION: float = 1e-5


def within_precision(s: np.ndarray, b: np.ndarray, precision: float = PRECISION) -> bool:
    """Whether strategy values ``s`` and paired baseline values ``b`` differ by rounding only: every
    ``|s − b|`` at most ``precision`` × |mean(b)| (:data:`PRECISION`). False without pairs."""
    s, b = np.asarray(s, dtype=float), np.asarray(b, dtype=float)
    if s.size == 0 or not (np.isfinite(s).all() and np.isfinite(b).all()):
        return False
    return bool(np.max(np.abs(s - b)) <= precision * abs(float(np.mean(b))))


def verdict(p_holm: float, diff: float, n_pairs: int, alpha: float, higher_is_better: bool,
             precise: bool = False) -> str:
    if n_pairs < 2:
        return "n/a"
    if precise or not np.isfinite(p_holm) or p_holm >= alpha or diff == 0:
        return "similar"  # NaN with >= 2 pairs: scipy's answer for identical values
    improves = diff > 0 if higher_is_better else diff < 0
    return "better" if improves else "worse"


#: :func:`finding` for a difference that is rounding only (:func:`within_precision`).
NO_DIFFERENCE_PRECISION = "no difference (within numerical precision)"


def untestable(n_pairs: int) -> str:
    """``"cannot be tested with 1 seed"``: the finding of a comparison with fewer than 2 paired seeds."""
    n = int(n_pairs)
    return f"cannot be tested with {n} seed" if n == 1 else f"cannot be tested with {n} paired seeds"


def finding(verdict: str, diff: float, p_paired: float, alpha: float = 0.05, *,
            higher_is_better: bool = False, n_pairs: int | None = None, precise: bool = False) -> str:
    """The verdict in words a reader needs: the direction of the observed difference and whether it
    survives the Holm correction.

    ``"better, significant"`` / ``"worse, significant"`` (the verdict, Holm p < α);
    ``"worse, not significant after correction"`` when the paired p alone is below α but the Holm
    p is not; ``"worse, not significant"`` when neither is; ``"no difference"`` when the paired
    differences are all zero (or the mean is); :data:`NO_DIFFERENCE_PRECISION` when ``precise``
    (every paired difference below the numbers' precision, :func:`within_precision`: no direction
    is read into rounding); ``"baseline"`` for ``"baseline"``; for ``"n/a"`` (fewer than 2 paired
    seeds, no test is run) ``"cannot be tested with 1 seed"`` (:func:`untestable` of ``n_pairs``;
    without it ``"cannot be tested with fewer than 2 paired seeds"``).
    """
    if verdict == "baseline":
        return "baseline"
    if verdict == "n/a":
        return untestable(n_pairs) if n_pairs is not None else "cannot be tested with fewer than 2 paired seeds"
    if precise:
        return NO_DIFFERENCE_PRECISION
    if verdict in ("better", "worse"):
        return f"{verdict}, significant"
    if not np.isfinite(diff) or diff == 0:
        return "no difference"
    direction = "better" if (diff > 0) == higher_is_better else "worse"
    if np.isfinite(p_paired) and p_paired < alpha:
        return f"{direction}, not significant after correction"
    return f"{direction}, not significant"


def seeds_text(n: int) -> str:
    """``"1 seed"``, ``"5 seeds"``."""
    return f"{int(n)} seed" if int(n) == 1 else f"{int(n)} seeds"


def mean_std_text(mean: float, std: float, n_seeds: int, *, scale: float = 1.0, digits: int = 4) -> str:
    """``"0.2500 ± 0.0123"``: a mean ± std over seeds for a printed table, ``"0.2500 (1 seed)"`` when
    there is no spread to show (one seed, or a NaN std) — never a ``± 0`` that one seed did not
    measure. ``scale`` multiplies both (e.g. 1000 for meV)."""
    text = f"{scale * mean:.{digits}f}"
    if int(n_seeds) < 2 or not math.isfinite(std):
        return f"{text} ({seeds_text(n_seeds)})"
    return f"{text} ± {scale * std:.{digits}f}"
