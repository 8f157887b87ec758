"""Statistics of the active-learning study (STUDY §5–§6), computed only from tidy tables.

Every function takes a tidy runs table of either track (one row per setting, strategy, seed and
round, named by :class:`alhelpers.keys.Key`) or a table derived from it, and returns a new tidy
frame; nothing is modified in place and all randomness comes from a passed
:class:`numpy.random.Generator`.

A *setting* is what one learning curve is run in besides its strategy: the setting columns the
table has (:func:`alhelpers.keys.setting_columns`), i.e. ``system, descriptor`` for Track A
(formation energies) and ``system, batch`` for Track B (interatomic potentials). Every output
table starts with those columns, then ``strategy``; the metric is an argument of every function.
This module compares final rounds (:func:`final_table`); :mod:`alhelpers.curves` works on whole
learning curves (mean curves, label savings, area under the curve) with the same conventions.

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
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from alhelpers.al.runs import common_budget, curve_columns, final_round, run_columns, stopped_per_curve
from alhelpers.keys import Key, setting_columns

__all__ = [
    "HIGHER_IS_BETTER",
    "VERDICTS",
    "check_rng",
    "check_runs",
    "comparisons",
    "conclusion_lines",
    "final_table",
    "finding",
    "holm_family",
    "paired_difference",
    "pct_with_ci",
    "percentile_ci",
    "power_at_level",
    "power_columns",
    "sample_sd",
    "t_interval",
    "untestable",
    "verdict_summary",
    "within_precision",
]

#: Metrics for which a larger value is better (the verdict's sign flips for them).
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"r2", "pearson_sigma_abs_err", "spearman_sigma_abs_err", "unc_pearson"})

#: Verdict labels of :func:`final_table`.
VERDICTS: tuple[str, ...] = ("baseline", "better", "similar", "worse", "n/a")


# --------------------------------------------------------------------------- helpers (shared with alhelpers.curves)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str = "runs") -> None:
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
                raise ValueError(f"baseline strategy {baseline!r} has no runs for {_where(setting)}; "
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


# --------------------------------------------------------------------------- final table


def _holm(p: np.ndarray) -> np.ndarray:
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


def _paired_tests(s: np.ndarray, b: np.ndarray, *, ci: float = 0.95) -> dict[str, float]:
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


def _verdict(p_holm: float, diff: float, n_pairs: int, alpha: float, higher_is_better: bool,
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


def final_table(
    runs: pd.DataFrame,
    *,
    baseline: str = "random",
    alpha: float = 0.05,
    metric: str = "mae",
) -> pd.DataFrame:
    """Final-round comparison of every strategy with the baseline (STUDY §5).

    One row per setting (the setting columns the runs have, see the module docstring) and
    strategy, computed from :func:`alhelpers.al.runs.final_round` of the runs cut at their
    setting's common budget (:func:`alhelpers.al.runs.common_budget`): when a run stopped early
    (the stopping rule ``TARGET_MAE``, a pool that ran out), every run of its setting is compared
    at the largest ``n_labelled`` all of them reached, never at budgets that differ between
    strategies or seeds; without such a run nothing is cut.

    * ``n_seeds`` — runs of this strategy; ``n_pairs`` — seeds present for both this strategy and
      the baseline (the only seeds used by the paired statistics);
    * ``n_labelled`` — mean over seeds of the labelled count compared at (the same for every seed
      and strategy of a setting: the common budget); ``n_stopped`` — this strategy's runs that
      ended before the longest run of the setting (0 when none did, and then ``n_labelled`` is
      every run's final count);
    * ``{metric}_mean``, ``{metric}_std`` (ddof=1) over all seeds, and ``r2_mean``, ``r2_std``
      when the runs have an ``r2`` column (Track A);
    * ``diff_mean`` — mean over paired seeds of (strategy − baseline) ``metric``; ``diff_low``,
      ``diff_high`` — its ``1 − alpha`` confidence interval from the paired t-test
      (:meth:`scipy.stats.ttest_rel`'s ``confidence_interval``); ``diff_pct``, ``diff_pct_low``,
      ``diff_pct_high`` — the same as percentages of the baseline's mean over those seeds;
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
      difference is the same, e.g. identical runs, and differences below the numbers' precision,
      :func:`within_precision`), ``"n/a"`` with fewer than 2 pairs (no test is run), and
      ``"baseline"`` for the baseline's own row (its p-values and effect size are NaN, its
      ``diff_mean`` 0); ``finding`` — the verdict in words with the observed direction
      (:func:`finding`: e.g. ``"worse, not significant after correction"``, ``"cannot be tested
      with 1 seed"``, ``"no difference (within numerical precision)"``);
    * ``mde_pct``, ``seeds_needed``, ``seeds_for_5pct`` — the power of the comparison
      (:func:`power_columns`, at the Holm family's strictest level ``alpha / (strategies − 1)``).

    Every setting must contain the baseline strategy. The returned frame carries
    ``attrs`` ``{"metric", "baseline", "alpha"}`` for :func:`verdict_summary`.
    """
    check_runs(runs, ["n_labelled", metric])
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    cb = common_budget(runs)
    fin = final_round(cb.runs)
    higher = metric in HIGHER_IS_BETTER
    summary_metrics = list(dict.fromkeys([metric, "r2"] if "r2" in runs.columns else [metric]))
    rows: list[dict] = []
    for setting, block, ordered in comparisons(fin, baseline):
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
                row[f"{m}_std"] = sample_sd(part[m].to_numpy())
            s = vals.loc[common].to_numpy(dtype=float)
            b = base.loc[common].to_numpy(dtype=float)
            if strategy == baseline:
                row.update(diff_mean=0.0, diff_low=np.nan, diff_high=np.nan, diff_pct=0.0,
                           diff_pct_low=np.nan, diff_pct_high=np.nan, p_paired=np.nan, p_welch=np.nan,
                           p_wilcoxon=np.nan, effect_size=np.nan, mde_pct=np.nan, seeds_needed=np.nan,
                           seeds_for_5pct=np.nan)
            else:
                row.update(_paired_tests(s, b, ci=1.0 - alpha))
                row["_d"], row["_b"] = s - b, float(b.mean()) if len(b) else float("nan")
                row["_precise"] = within_precision(s, b)
                row["p_welch"] = float("nan")
                if len(vals) >= 2 and len(base) >= 2:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        row["p_welch"] = float(
                            sps.ttest_ind(vals.to_numpy(float), base.to_numpy(float), equal_var=False).pvalue
                        )
            sys_rows.append(row)
        for r in sys_rows[1:]:
            r.update(power_columns(r.pop("_d"), r.pop("_b"), alpha=alpha, family=len(sys_rows) - 1))
        p_holm = _holm(np.array([r["p_paired"] for r in sys_rows[1:]], dtype=float))
        sys_rows[0]["p_holm"] = np.nan
        sys_rows[0]["verdict"] = sys_rows[0]["finding"] = "baseline"
        for r, ph in zip(sys_rows[1:], p_holm, strict=True):
            r["p_holm"] = float(ph)
            precise = r.pop("_precise")
            r["verdict"] = _verdict(float(ph), r["diff_mean"], r["n_pairs"], alpha, higher, precise)
            r["finding"] = finding(r["verdict"], r["diff_mean"], r["p_paired"], alpha, higher_is_better=higher,
                                   n_pairs=r["n_pairs"], precise=precise)
        rows.extend(sys_rows)
    columns = [*curve_columns(runs), "n_seeds", "n_pairs", "n_labelled", "n_stopped"]
    for m in summary_metrics:
        columns += [f"{m}_mean", f"{m}_std"]
    columns += ["diff_mean", "diff_low", "diff_high", "diff_pct", "diff_pct_low", "diff_pct_high",
                "p_paired", "p_welch", "p_wilcoxon", "p_holm", "effect_size", "verdict", "finding",
                "mde_pct", "seeds_needed", "seeds_for_5pct"]
    out = pd.DataFrame(rows, columns=[c for c in columns if c != "n_stopped"])
    out.insert(columns.index("n_stopped"), "n_stopped", stopped_per_curve(cb, out))
    out.attrs.update(metric=metric, baseline=baseline, alpha=alpha)
    return out


# --------------------------------------------------------------------------- prose


def pct_with_ci(row: Mapping, *, alpha: float = 0.05) -> str:
    """``+37.1 % (95 % CI −2.0 … +76.3 %)``: a final-table row's difference from the baseline in %
    of the baseline, with its ``1 − alpha`` interval where the row has one."""
    text = f"{row['diff_pct']:+.1f} %"
    low, high = row.get("diff_pct_low", np.nan), row.get("diff_pct_high", np.nan)
    if np.isfinite(low) and np.isfinite(high):
        text += f" ({100 * (1 - alpha):.0f} % CI {low:+.1f} … {high:+.1f} %)"
    return text


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _read_back(final: pd.DataFrame) -> pd.DataFrame:
    """A final table as :func:`final_table` made it, also when read back from CSV: pandas reads the
    verdict ``"n/a"`` as a missing value, which must stay "not testable", not become unknown."""
    if "verdict" in final and final["verdict"].isna().any():
        final = final.copy()
        final["verdict"] = final["verdict"].astype(object).where(final["verdict"].notna(), "n/a")
    return final


def _fmt_num(x: float, fmt: str) -> str:
    """``format(x, fmt)``, ``"n/a"`` for a value that is not finite."""
    return format(x, fmt) if np.isfinite(x) else "n/a"


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def verdict_summary(final: pd.DataFrame, *, metric: str | None = None, baseline: str | None = None) -> str:
    """One paragraph per setting of a :func:`final_table`, for a report.

    A paragraph starts with the setting: ``"C (magpie)"`` for Track A (the descriptor bare),
    ``"tio2 (batch 10)"`` for Track B (other setting columns as ``name value``). The Holm p of a
    comparison is the table's: corrected within its setting's strategies.

    A comparison with fewer than 2 paired seeds is only described (``"cannot be tested with 1
    seed"``, its difference on that seed), without p-values, effect size or interval; a mean over
    one seed has no ``± std``. When a run of the setting stopped early (``n_stopped``), the
    paragraph says at which budget the strategies were compared.

    ``metric`` and ``baseline`` default to the ones :func:`final_table` stored in ``final.attrs``
    (else ``"mae"`` and the row whose verdict is ``"baseline"``). Paragraphs are separated by a
    blank line.
    """
    metric = metric or final.attrs.get("metric", "mae")
    final = _read_back(final)
    _require(final, [*dict.fromkeys((Key.system, *setting_columns(final.columns))), "strategy",
                     "n_pairs", "n_labelled", f"{metric}_mean", f"{metric}_std", "diff_mean",
                     "diff_pct", "p_paired", "p_holm", "p_wilcoxon", "effect_size", "verdict"],
             what="final")
    alpha = final.attrs.get("alpha", 0.05)
    label = metric.upper() if metric in {"mae", "rmse"} else metric
    paragraphs = []
    for setting, block, _ in comparisons(final):
        base_name = baseline or final.attrs.get("baseline")
        base = block[block["strategy"] == base_name] if base_name else block[block["verdict"] == "baseline"]
        if base.empty:
            raise ValueError(f"final has no baseline row for {_where(setting)}")
        b = base.iloc[0]
        name = _setting_name(setting, bare=(Key.descriptor,))
        n_base = int(b["n_seeds"]) if "n_seeds" in b else int(b["n_pairs"])
        stopped = int(block["n_stopped"].sum()) if "n_stopped" in block else 0
        budget = (f"after {b['n_labelled']:g} labels (the largest budget every run reached: {stopped} "
                  f"run{'s' * (stopped != 1)} stopped earlier)" if stopped else f"after {b['n_labelled']:g} labels")
        if n_base >= 2 and np.isfinite(b[f"{metric}_std"]):
            spread = f" ± {b[f'{metric}_std']:.2g} (mean ± std over {n_base} seeds)."
        else:
            spread = f" ({_seeds(n_base)}: no spread, no test)."
        text = f"{name}: {budget}, {b['strategy']} reaches {label} {b[f'{metric}_mean']:.4g}{spread}"
        others = block[block["strategy"] != b["strategy"]]
        for _, r in others.iterrows():
            words = r["finding"] if "finding" in r else finding(
                r["verdict"], r["diff_mean"], r["p_paired"], alpha, higher_is_better=metric in HIGHER_IS_BETTER,
                n_pairs=int(r["n_pairs"]))
            if str(words).startswith("no difference"):
                text += (f" {r['strategy']}: {words} ({label} {r[f'{metric}_mean']:.4g}, {r['diff_pct']:+.2g} % vs "
                         f"{b['strategy']}, {int(r['n_pairs'])} pairs).")
                continue
            if r["verdict"] == "n/a":
                seen = (f"{r['diff_pct']:+.1f} % vs {b['strategy']} on that seed" if int(r["n_pairs"]) == 1
                        else f"no seed shared with {b['strategy']}")
                text += f" {r['strategy']}: {words} ({label} {r[f'{metric}_mean']:.4g}, {seen})."
                continue
            text += (f" {r['strategy']}: {words} ({label} {r[f'{metric}_mean']:.4g}, "
                     f"{pct_with_ci(r, alpha=alpha)} vs {b['strategy']}, paired p = {_fmt_p(r['p_paired'])}, "
                     f"Holm p = {_fmt_p(r['p_holm'])}, Wilcoxon p = {_fmt_p(r['p_wilcoxon'])}, "
                     f"d_z = {_fmt_num(r['effect_size'], '.2f')}, {int(r['n_pairs'])} pairs).")
        testable = others[others["verdict"] != "n/a"]
        if len(testable) and not (testable["verdict"] == "better").any():
            text += f" No strategy beats {b['strategy']} at α = {alpha:g} after Holm correction."
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _setting_name(row: Mapping, *, bare: Sequence[str] = (Key.descriptor, Key.direction),
                  skip: Sequence[str] = ()) -> str:
    """A setting (or a final-table row's) in words: ``"C (magpie)"``, ``"C (mp→oqmd)"``,
    ``"tio2 (batch 10)"`` — the system, then the other setting columns, ``bare`` ones as their
    value alone, the rest as ``name value``, ``skip`` ones left out."""
    rest = [str(row[c]) if c in bare else f"{c} {row[c]}"
            for c in setting_columns(row.keys()) if c != Key.system and c not in skip]
    return f"{row[Key.system]} ({', '.join(rest)})" if rest else str(row[Key.system])


def _where_name(row: Mapping) -> str:
    """Where a comparison was made, for the conclusion: the descriptor left out (``"C (mp→oqmd)"``)."""
    return _setting_name(row, skip=(Key.descriptor,))


def _items(rows: pd.DataFrame, alpha: float, *, holm: bool = True) -> str:
    return "; ".join(f"{r['strategy']} on {_where_name(r)}, {pct_with_ci(r, alpha=alpha)}"
                     + (f", Holm p = {_fmt_p(r['p_holm'])}" if holm else f", paired p = {_fmt_p(r['p_paired'])}")
                     for _, r in rows.iterrows())


def _span(values: pd.Series, fmt: str) -> str:
    v = values[np.isfinite(values.to_numpy(dtype=float))]
    if v.empty:
        return "n/a"
    lo, hi = float(v.min()), float(v.max())
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)}–{format(hi, fmt)}"


def _family_of(final: pd.DataFrame) -> pd.Series:
    """Per row, the size of the Holm family :func:`final_table` corrected it in: the non-baseline
    strategies of its setting."""
    cols = list(setting_columns(final.columns))
    others = (final["verdict"] != "baseline").astype(int)
    return others.groupby([final[c] for c in cols], sort=False).transform("sum") if cols else others * others.sum()


def holm_family(tables: Sequence[pd.DataFrame], *, alpha: float | None = None, scope: str = "in this table"
                ) -> list[pd.DataFrame]:
    """The final tables with ``p_holm``, ``verdict`` and ``finding`` recomputed over **one** Holm
    family: every comparison with a paired p-value in any of them (the non-baseline rows with at
    least 2 paired seeds).

    :func:`final_table` corrects within each setting (a family per system and descriptor, or per
    batch size), which is right for its table; a text that states conclusions from several
    settings and tables at once must correct over everything it calls significant, or a
    significance found in a family of 3 sits beside 24 comparisons made. The copies carry
    ``attrs`` ``holm_family`` (the family's size), ``holm_scope`` (``scope``, e.g. ``"in this
    report"``, for the sentences) and ``holm_level`` (the family's strictest level, α / size). A
    difference below the numbers' precision (:data:`NO_DIFFERENCE_PRECISION`) is no hypothesis the
    text tests: it keeps its finding and stays out of the family. Rows outside the family
    (baseline, fewer than 2 pairs, a NaN p, below precision) have a NaN ``p_holm``.
    """
    tables = [_read_back(t).copy() for t in tables]
    alpha = float(alpha if alpha is not None else next((t.attrs.get("alpha") for t in tables if "alpha" in t.attrs),
                                                       0.05))
    masks = [((t["verdict"] != "baseline") & (t["verdict"] != "n/a")
              & np.isfinite(t["p_paired"].to_numpy(dtype=float))
              & ((t["finding"] != NO_DIFFERENCE_PRECISION) if "finding" in t else True)).to_numpy() for t in tables]
    p = np.concatenate([t.loc[m, "p_paired"].to_numpy(dtype=float) for t, m in zip(tables, masks, strict=True)]
                       or [np.empty(0)])
    corrected = _holm(p)
    size, at = len(p), 0
    for t, m in zip(tables, masks, strict=True):
        metric = t.attrs.get("metric", "mae")
        higher = metric in HIGHER_IS_BETTER
        t["p_holm"] = np.nan
        t.loc[m, "p_holm"] = corrected[at:at + int(m.sum())]
        at += int(m.sum())
        words = t["finding"] if "finding" in t else pd.Series("", index=t.index)
        for i in np.flatnonzero(m):
            r = t.iloc[i]
            precise = words.iloc[i] == NO_DIFFERENCE_PRECISION
            verdict = _verdict(float(r["p_holm"]), float(r["diff_mean"]), int(r["n_pairs"]), alpha, higher, precise)
            t.iloc[i, t.columns.get_loc("verdict")] = verdict
            if "finding" in t:
                t.iloc[i, t.columns.get_loc("finding")] = finding(
                    verdict, float(r["diff_mean"]), float(r["p_paired"]), alpha, higher_is_better=higher,
                    n_pairs=int(r["n_pairs"]), precise=precise)
        t.attrs.update(alpha=alpha, holm_family=size, holm_scope=scope, holm_level=alpha / max(size, 1))
    return tables


def _family_words(final: pd.DataFrame) -> str:
    size, scope = int(final.attrs["holm_family"]), final.attrs.get("holm_scope", "in this table")
    return f"the 1 paired test {scope}" if size == 1 else f"all {size} paired tests {scope}"


def _untestable_sentence(rows: pd.DataFrame, base_name: str) -> str:
    """``Cannot be tested with 1 seed: uncertainty on Si (+20.0 % on that seed).``"""
    parts = []
    for n, block in rows.groupby(rows["n_pairs"].astype(int), sort=True):
        items = "; ".join(f"{r['strategy']} on {_where_name(r)}"
                          + (f" ({r['diff_pct']:+.1f} % on that seed)" if n == 1 else "")
                          for _, r in block.iterrows())
        what = untestable(n)
        parts.append(f"{what[0].upper()}{what[1:]}: {items}."
                     + (f" No seed is shared with {base_name}." if n == 0 else ""))
    return " ".join(parts)


def conclusion_lines(final: pd.DataFrame, *, metric: str | None = None, alpha: float | None = None) -> list[str]:
    """Three sentences a reader can quote, computed from a :func:`final_table` (read back from CSV
    too): does any strategy beat the baseline after Holm correction; which are worse (significant,
    or only before the correction); what the seeds could detect (``mde_pct``, ``seeds_for_5pct``).

    The correction is **one** Holm family over every comparison the sentences are about
    (:func:`holm_family`; the table's own ``p_holm`` is per setting): over the table's comparisons,
    or over those of every table passed through :func:`holm_family` together (the report: the
    final table and the cross-database table), and the sentences name it ("after Holm correction
    over all 12 paired tests in this report"; a comparison whose paired differences are all equal
    has no p-value and is no test). The power is restated at that family's strictest
    level (:func:`power_at_level`).

    Comparisons with fewer than 2 paired seeds are not tested: they are named apart ("Cannot be
    tested with 1 seed: …", their difference on that seed), and when no comparison can be tested
    the three sentences say so instead of a verdict.
    """
    metric = metric or final.attrs.get("metric", "mae")
    alpha = float(alpha if alpha is not None else final.attrs.get("alpha", 0.05))
    final = _read_back(final)
    if "holm_family" not in final.attrs:
        final = holm_family([final], alpha=alpha)[0]
    label = metric.upper() if metric in {"mae", "rmse"} else metric
    base = final[final["verdict"] == "baseline"]
    base_name = str(base["strategy"].iloc[0]) if len(base) else final.attrs.get("baseline", "random")
    rows = final[final["verdict"] != "baseline"]
    if rows.empty:
        return [f"Only {base_name} was run: there is nothing to compare."]
    untested = rows[rows["verdict"] == "n/a"]
    others = rows[rows["verdict"] != "n/a"]

    def where(df: pd.DataFrame) -> str:
        setting = [c for c in setting_columns(df.columns) if df[c].nunique() > 1 or c == Key.system]
        n_settings = df.groupby(setting, sort=False).ngroups
        unit = "system" if setting == [Key.system] else "setting"
        n_strat = df["strategy"].nunique()
        return (f"{n_strat} strateg{'ies' if n_strat != 1 else 'y'} in {n_settings} "
                f"{unit}{'s' * (n_settings != 1)}")

    if others.empty:
        seeds = _span(untested["n_pairs"].astype(float), ".0f")
        one = seeds == "1"
        seen = untested[untested["n_pairs"] == 1]
        return [
            f"No comparison with {base_name} can be tested with {seeds} seed{'' if one else 's'} "
            f"(a paired test needs 2 or more): {where(untested)}.",
            ("Observed on that seed alone, without a test or an interval: "
             + "; ".join(f"{r['strategy']} on {_where_name(r)} {r['diff_pct']:+.1f} %" for _, r in seen.iterrows())
             + ".") if len(seen) else f"No seed is shared with {base_name}: nothing was observed in pairs.",
            f"With {seeds} paired seed{'' if one else 's'} the power of these comparisons cannot be estimated "
            "(3 or more are needed).",
        ]

    family = _family_words(final)
    seeds = _span(others["n_pairs"].astype(float), ".0f")
    words = others["finding"] if "finding" in others else pd.Series(
        [finding(r["verdict"], r["diff_mean"], r["p_paired"], alpha) for _, r in others.iterrows()], index=others.index)
    better = others[others["verdict"] == "better"]
    if int(final.attrs["holm_family"]) == 0:
        first = (f"No strategy beats {base_name}: no comparison has a p-value ({where(others)}, {seeds} paired seeds "
                 "each; every paired difference is zero, equal on every seed, or below the numbers' precision).")
    elif len(better):
        first = (f"Better than {base_name} after Holm correction over {family} (α = {alpha:g}): "
                 + _items(better, alpha) + ".")
    else:
        first = (f"No strategy beats {base_name} after Holm correction over {family} (α = {alpha:g}; "
                 f"{where(others)}, {seeds} paired seeds each).")
    worse = others[others["verdict"] == "worse"]
    almost = others[words.str.endswith("not significant after correction")]
    parts = []
    if len(worse):
        parts.append(f"Worse than {base_name} ({label}, significant after correction): " + _items(worse, alpha) + ".")
    for direction in ("worse", "better"):
        part = almost[words[almost.index].str.startswith(direction)]
        if len(part):
            parts.append(f"{direction.capitalize()} than {base_name} before, but not after, the Holm correction: "
                         + _items(part, alpha) + ".")
    if not parts:
        differ = others[~words.str.startswith("no difference")]
        if differ.empty:
            parts.append(f"No strategy differs from {base_name} (every paired difference is zero or below the "
                         "numbers' precision).")
        else:
            top = differ.loc[differ["diff_pct"].abs().idxmax()]
            parts.append(f"No strategy is significantly worse than {base_name}; the largest difference, "
                         f"{top['strategy']} on {_where_name(top)} at {pct_with_ci(top, alpha=alpha)}, is not "
                         "significant.")
    if len(untested):
        parts.append(_untestable_sentence(untested, base_name))
    second = " ".join(parts)
    level = float(final.attrs["holm_level"])
    mde, five = _power_in_family(others, final, alpha, level)
    # a difference below the numbers' precision is no comparison that more seeds could resolve
    powered = np.isfinite(mde.to_numpy(dtype=float)) & (words != NO_DIFFERENCE_PRECISION).to_numpy()
    mde, five = mde[powered], five[powered]
    if powered.any():
        seeds = _span(others.loc[powered, "n_pairs"].astype(float), ".0f")
        third = (f"With {seeds} seeds these comparisons could detect differences of {_span(mde, '.0f')} % "
                 f"of {base_name}'s {label} (paired t-test, 80 % power at α/{max(int(final.attrs['holm_family']), 1)} = "
                 f"{level:.2g}, the strictest Holm level of that family); a 5 % difference would "
                 f"need {_span(five, '.0f')} seeds.")
    elif others["n_pairs"].max() >= 3:
        third = (f"With {seeds} paired seeds the power of these comparisons cannot be estimated: the paired "
                 "differences have no spread.")
    else:
        third = f"With {seeds} paired seeds the power of these comparisons cannot be estimated (3 or more are needed)."
    return [first, second, third]


def _power_in_family(others: pd.DataFrame, final: pd.DataFrame, alpha: float, level: float
                     ) -> tuple[pd.Series, pd.Series]:
    """``mde_pct`` and ``seeds_for_5pct`` of each row restated at ``level`` (the conclusion's
    family) from the table's, which :func:`final_table` computed at α / (its setting's family)."""
    if "mde_pct" not in others:
        nan = pd.Series(np.nan, index=others.index)
        return nan, nan
    fam = _family_of(final).loc[others.index]
    pairs = [power_at_level(float(r["mde_pct"]), int(r["n_pairs"]), alpha / max(int(k), 1), level)
             for (_, r), k in zip(others.iterrows(), fam, strict=True)]
    return (pd.Series([p[0] for p in pairs], index=others.index, dtype=float),
            pd.Series([p[1] for p in pairs], index=others.index, dtype=float))
