"""Statistics of learning curves (STUDY §5): mean curves, labels to reach a target, label savings
on shared targets, and the area under the curve, from tidy runs tables of either track.

The conventions are :mod:`alhelpers.stats`'s (settings, pairing by seed, bootstrap over seeds,
an explicit :class:`numpy.random.Generator`); this module holds what works on whole curves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from alhelpers.al.runs import appearance_sort, common_budget, curve_columns, stopped_per_curve, where_name
from alhelpers.keys import setting_columns
from alhelpers.paired import (
    HIGHER_IS_BETTER,
    check_rng,
    check_runs,
    comparisons,
    paired_difference,
    percentile_ci,
    sample_sd,
    t_interval,
    untestable,
)

__all__ = ["CLAIMED_SAVING_PCT", "SAVING_FRACTIONS", "label_savings", "labels_to_reach", "learning_curve_auc",
           "mean_curve", "paired_difference_by_round", "saving_finding", "savings_lines"]

#: ``numpy.trapezoid`` (NumPy >= 2.0), falling back to its old name ``numpy.trapz`` on NumPy 1.26.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def mean_curve(runs: pd.DataFrame, *, metric: str = "mae") -> pd.DataFrame:
    """Mean learning curve: per setting, strategy and ``n_labelled`` the ``mean``, ``std``
    (ddof=1, NaN for one seed) and ``n_seeds`` of ``metric`` over seeds.

    Points reached by only some seeds (a pool that ran out) are averaged over those seeds only;
    ``n_seeds`` shows it.
    """
    check_runs(runs, ["n_labelled", metric])
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
    baseline (``n_pairs``), on the mean curves over those seeds, every curve cut at the setting's
    common budget (:func:`alhelpers.al.runs.common_budget`: when a run stopped early, the largest
    ``n_labelled`` every run of the setting reached; ``n_stopped`` counts this strategy's runs
    that stopped early), so that the targets come from the same curves for every strategy:

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
      (:func:`t_interval`): ``n_boot`` times, resample the paired seeds with replacement (the
      same seeds for baseline and strategy) and recompute both mean curves, the target, both
      crossings and the saving; the half-width is Student's t quantile (k − 1 degrees of freedom,
      k seeds) times the replicates' standard deviation times √(k/(k − 1)). The percentile
      interval of the replicates covers a known saving only 85–92 % of the time with 5 seeds (at
      a nominal 95 %); this one 92–98 % with 3–30 seeds (simulated in the tests), and it always
      contains its point estimate. ``reach_frac`` is the fraction of replicates in which the
      strategy reached the target (NaN, like the interval, with a single seed: resampling one
      seed only repeats it). Replicates that never reach it have no saving; ``unreached``
      says how the interval treats them: ``"drop"`` (default) — the standard deviation of the
      finite replicates (an interval *conditional on reaching*; read it with ``reach_frac``);
      ``"worst"`` — ``saving_lo`` is −∞ when more than (1 − ci)/2 of them miss.

    MAE-like metrics only: "reaching" means ``curve <= target``.
    """
    check_runs(runs, ["n_labelled", metric])
    check_rng(rng, n_boot, ci)
    if unreached not in ("drop", "worst"):
        raise ValueError(f"unreached must be 'drop' or 'worst', got {unreached!r}")
    if metric in HIGHER_IS_BETTER:
        raise ValueError(f"label_savings needs a lower-is-better metric, got {metric!r}")
    fr = np.asarray(list(fractions), dtype=float)
    if fr.size == 0 or not np.all((fr > 0) & (fr <= 1)):
        raise ValueError(f"fractions must be in (0, 1], e.g. (0.5, 0.75, 1.0); got {list(fractions)}")
    cb = common_budget(runs)
    rows: list[dict] = []
    for setting, block, ordered in comparisons(cb.runs, baseline):
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
                lo, hi = t_interval(float(point["saving"][0, k]), boot["saving"][:, k], len(seeds), ci,
                                     missing_low=unreached == "worst")
                n_reach = float(point["n_reach"][0, k])
                rows.append({
                    **setting, "strategy": strategy, "budget_frac": float(f), "n_pairs": len(seeds),
                    "n_target": float(point["n_target"][0, k]), "target": float(point["target"][0, k]),
                    "n_baseline": float(point["n_base"][0, k]), "n_reach": n_reach,
                    "reached": bool(np.isfinite(n_reach)), "saving_pct": float(point["saving"][0, k]),
                    "saving_lo": lo, "saving_hi": hi,
                    "reach_frac": float(np.mean(np.isfinite(boot["n_reach"][:, k]))) if len(seeds) >= 2 else np.nan,
                })
    columns = [*curve_columns(runs), "budget_frac", "n_pairs", "n_target", "target", "n_baseline", "n_reach",
               "reached", "saving_pct", "saving_lo", "saving_hi", "reach_frac"]
    out = pd.DataFrame(rows, columns=columns)
    out.insert(columns.index("n_pairs") + 1, "n_stopped", stopped_per_curve(cb, out))
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
    (lower is better for MAE). Every curve of a setting is cut at its common budget
    (:func:`alhelpers.al.runs.common_budget`), so that all areas of a setting cover the same
    range: ``n_labelled`` is where it ends, ``n_stopped`` counts the strategy's runs that stopped
    early. ``auc_lo``/``auc_hi``: percentile bootstrap interval over seeds (resampled with
    replacement, mean curve recomputed); NaN with a single seed, whose bootstrap can only repeat
    it (an interval of zero width that says nothing about the spread). ``seed_auc_mean``/
    ``seed_auc_std`` (ddof=1, NaN for one seed): the same area computed per seed on its own curve.
    """
    check_runs(runs, ["n_labelled", metric])
    check_rng(rng, n_boot, ci)
    cb = common_budget(runs)
    rows: list[dict] = []
    keys = list(curve_columns(runs))
    for key, part in cb.runs.groupby(keys, sort=False, observed=True):
        seeds = sorted(pd.unique(part["seed"]))
        grid = np.sort(part["n_labelled"].unique()).astype(float)
        P = _pivot(part, metric, seeds, grid)
        auc = float(_normalised_auc(grid, _weighted_curves(np.ones((1, len(seeds))), P))[0])
        boot = _normalised_auc(grid, _weighted_curves(_boot_weights(len(seeds), int(n_boot), rng), P))
        # one seed: every replicate is that seed, an interval of zero width that says nothing
        lo, hi = percentile_ci(boot, ci) if len(seeds) >= 2 else (float("nan"), float("nan"))
        per_seed = _normalised_auc(grid, P)
        rows.append({**dict(zip(keys, key, strict=True)),
                     "n_seeds": len(seeds), "n_labelled": float(grid[-1]), "auc": auc, "auc_lo": lo, "auc_hi": hi,
                     "seed_auc_mean": float(np.nanmean(per_seed)), "seed_auc_std": sample_sd(per_seed)})
    out = pd.DataFrame(rows, columns=[*keys, "n_seeds", "n_labelled", "auc", "auc_lo", "auc_hi", "seed_auc_mean",
                                      "seed_auc_std"])
    out.insert(len(keys) + 2, "n_stopped", stopped_per_curve(cb, out))
    out.attrs.update(metric=metric, ci=ci, n_boot=int(n_boot))
    return out


def paired_difference_by_round(runs: pd.DataFrame, *, baseline: str = "random", metric: str = "mae",
                               ci: float = 0.95) -> pd.DataFrame:
    """Each strategy's paired difference to ``baseline`` per system and round, in % of the baseline.

    Pairs are the rows of the same system, seed and ``n_labelled``; each (system, strategy,
    ``n_labelled``) gets :func:`alhelpers.stats.paired_difference` of its pairs — the final table's
    numbers, round by round: ``diff_pct`` = 100·mean(d)/mean(b) and the paired t-test's ``ci``
    interval over mean(b) (NaN with one pair). Columns: system, strategy, n_labelled, n_pairs,
    diff_pct, diff_pct_low, diff_pct_high; systems and strategies in order of appearance.
    """
    cols = ["system", "strategy", "n_labelled", "n_pairs", "diff_pct", "diff_pct_low", "diff_pct_high"]
    keys = ["system", "seed", "n_labelled"]
    dup = runs.duplicated(["strategy", *keys])
    if dup.any():
        raise ValueError(f"{int(dup.sum())} rows repeat a (strategy, system, seed, n_labelled): pairs would be "
                         "ambiguous; keep one descriptor / batch size / direction before comparing")
    base = runs.loc[runs["strategy"] == baseline, [*keys, metric]].rename(columns={metric: "_b"})
    other = runs.loc[runs["strategy"] != baseline, ["strategy", *keys, metric]].rename(columns={metric: "_s"})
    pairs = other.merge(base, on=keys).dropna(subset=["_s", "_b"])
    rows = []
    for (system, strategy, n), block in pairs.groupby(["system", "strategy", "n_labelled"], sort=False):
        diff = paired_difference(block["_s"].to_numpy(dtype=float), block["_b"].to_numpy(dtype=float), ci=ci)
        rows.append({"system": system, "strategy": strategy, "n_labelled": n, "n_pairs": len(block),
                     **{c: diff[c] for c in cols[4:]}})
    return appearance_sort(pd.DataFrame(rows, columns=cols), ["system", "strategy", "n_labelled"])


#: The saving the study tests (docs/study.md): active learning needs 5–13 % fewer labels than
#: random sampling for the same error.
CLAIMED_SAVING_PCT: tuple[float, float] = (5.0, 13.0)


def saving_finding(row, claim: tuple[float, float] = CLAIMED_SAVING_PCT) -> str:
    """What one :func:`label_savings` row says about the claimed saving ``claim`` (in %):

    * ``"untestable"`` — fewer than 2 paired seeds (no interval);
    * ``"never"`` — the strategy's mean curve never reaches the target within the budget;
    * ``"no interval"`` — reached, but fewer than 2 bootstrap replicates give a saving;
    * ``"more labels"`` — the interval lies below 0: it needs more labels than the baseline;
    * ``"below claim"`` — the interval lies below the claim's low end but not below 0: the claimed
      saving is excluded, no saving at all is not;
    * ``"above claim"`` — the interval lies above the claim's high end (more saved than claimed);
    * ``"supports"`` — the interval lies above 0 and overlaps the claimed range;
    * ``"inconclusive"`` — the interval contains 0 and reaches into the claimed range.

    A low end of −∞ (``unreached="worst"``) counts as below everything.
    """
    if int(row["n_pairs"]) < 2:
        return "untestable"
    if not bool(row["reached"]):
        return "never"
    lo, hi = float(row["saving_lo"]), float(row["saving_hi"])
    if np.isnan(lo) or not np.isfinite(hi):
        return "no interval"
    if hi < 0:
        return "more labels"
    if hi < claim[0]:
        return "below claim"
    if lo > claim[1]:
        return "above claim"
    if lo > 0:
        return "supports"
    return "inconclusive"


def _pct(x: float) -> str:
    return f"{x:+.1f}" if np.isfinite(x) else ("−∞" if x < 0 else "+∞")


def _fractions(values) -> str:
    items = [f"{100 * float(f):.0f} %" for f in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def savings_lines(savings: pd.DataFrame, *, baseline: str = "random", claim: tuple[float, float] = CLAIMED_SAVING_PCT,
                  ci: float = 0.95) -> list[str]:
    """The label savings of a :func:`label_savings` table (read back from CSV too) against the
    claimed saving ``claim``, in sentences: how many comparisons (setting × strategy × budget
    fraction) support it, contradict it or cannot decide (:func:`saving_finding`), each that
    supports or contradicts it with its saving and interval, and the strategies whose mean curve
    never reaches the baseline's target within the budget. A setting whose compared budget is a
    single point (every fraction's ``n_target`` equal: its runs stopped at the initial set) has no
    saving to measure and is named apart. ``[]`` without a non-baseline row."""
    rows = savings[savings["strategy"] != baseline]
    if rows.empty:
        return []
    # a setting whose budget is a single point (every run of it stopped at the initial labelled set):
    # every fraction has the same target there, and there is no labelling to save on
    cols = list(setting_columns(savings.columns))
    groups = savings.groupby(cols, sort=False)
    span = groups["n_target"].transform(lambda v: v.max() - v.min())
    several = groups["budget_frac"].transform("nunique") > 1
    point = (several & (span == 0) & savings["n_target"].notna())[rows.index]
    flat = rows[point]
    rows = rows[~point]
    no_range = ""
    if len(flat):
        where = [f"{where_name(b.iloc[0])} (at {b['n_target'].iloc[0]:g} labels)"
                 for _, b in flat.groupby(cols, sort=False)]
        no_range = ("No saving can be measured on " + "; ".join(where) + ": the budget every run reached is a single "
                    "point, with no labelling to save on.")
    if rows.empty:
        return [no_range]
    kinds = pd.Series([saving_finding(r, claim) for _, r in rows.iterrows()], index=rows.index)
    lo_c, hi_c = f"{claim[0]:g}", f"{claim[1]:g}"
    level = f"{100 * ci:.0f} %"
    fr = _fractions(sorted(pd.unique(savings["budget_frac"])))

    def item(r) -> str:
        return (f"{r['strategy']} on {where_name(r)} at {100 * r['budget_frac']:.0f} %, {_pct(r['saving_pct'])} % "
                f"({level} CI {_pct(r['saving_lo'])} … {_pct(r['saving_hi'])} %)")

    count = {k: int((kinds == k).sum()) for k in ("supports", "above claim", "more labels", "below claim", "never",
                                                  "inconclusive", "untestable", "no interval")}
    against = count["more labels"] + count["below claim"] + count["never"]
    head = (f"Label savings against the claim of {lo_c}–{hi_c} % fewer labels than {baseline} (the labels each "
            f"strategy needs to reach {baseline}'s mean MAE at {fr} of its budget; {level} interval over seeds): "
            f"of {len(rows)} comparisons, {count['supports'] + count['above claim']} support it, {against} "
            f"contradict it, {count['inconclusive']} cannot tell (the interval contains 0 and reaches "
            f"{lo_c}–{hi_c} %)")
    extra = [f"{count['untestable']} cannot be tested with too few seeds" if count["untestable"] else "",
             f"{count['no interval']} have no interval" if count["no interval"] else ""]
    lines = [head + "".join(f", {e}" for e in extra if e) + "."]
    parts = []
    for kind, words in (("supports", f"Support the claim (interval above 0 and overlapping {lo_c}–{hi_c} %)"),
                        ("above claim", f"Save more than claimed (interval above {hi_c} %)"),
                        ("more labels", f"Need more labels than {baseline} (interval below 0)"),
                        ("below claim", f"Exclude the claim from below (interval below {lo_c} %, not below 0)")):
        part = rows[kinds == kind]
        if len(part):
            parts.append(f"{words}: " + "; ".join(item(r) for _, r in part.iterrows()) + ".")
    never = rows[kinds == "never"]
    if len(never):
        keys = [*setting_columns(never.columns), "strategy"]
        groups = [f"{block.iloc[0]['strategy']} on {where_name(block.iloc[0])} (at {_fractions(block['budget_frac'])})"
                  for _, block in never.groupby(keys, sort=False)]
        parts.append(f"Never reach {baseline}'s target within the budget (on the mean curve over seeds): "
                     + "; ".join(groups) + ".")
    untested = rows[kinds == "untestable"]
    if len(untested):
        parts.append(" ".join(f"{untestable(n)[0].upper()}{untestable(n)[1:]}: "
                              + "; ".join(f"{r['strategy']} on {where_name(r)} at {100 * r['budget_frac']:.0f} %"
                                          for _, r in block.iterrows()) + "."
                              for n, block in untested.groupby(untested["n_pairs"].astype(int))))
    if no_range:
        parts.append(no_range)
    if parts:
        lines.append(" ".join(parts))
    return lines

