"""Statistics of the active-learning study (STUDY §5–§6), computed only from tidy tables.

Every function takes a tidy runs table of either track (one row per setting, strategy, seed and
round, named by :class:`alhelpers.keys.Key`) or a table derived from it, and returns a new tidy
frame; nothing is modified in place and all randomness comes from a passed
:class:`numpy.random.Generator`.

A *setting* is what one learning curve is run in besides its strategy: the setting columns the
table has (:func:`alhelpers.keys.setting_columns`), i.e. ``system, descriptor`` for Track A
(formation energies) and ``system, batch`` for Track B (interatomic potentials). Every output
table starts with those columns, then ``strategy``; the metric is an argument of every function.
This module compares final rounds (:func:`final_table`) and says what they show in sentences
(:func:`verdict_summary`, :func:`conclusion_lines`, one Holm family for a text: :func:`holm_family`);
:mod:`alhelpers.curves` works on whole learning curves (mean curves, label savings, area under the
curve) with the same conventions; both are built on :mod:`alhelpers.paired` (whose names are
importable from here too).

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
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from alhelpers.al.runs import (
    common_budget,
    curve_columns,
    final_round,
    setting_name,
    stopped_per_curve,
    where_name,
)
from alhelpers.keys import Key, setting_columns
from alhelpers.paired import (
    HIGHER_IS_BETTER,
    NO_DIFFERENCE_PRECISION,
    PRECISION,
    VERDICTS,
    check_rng,
    check_runs,
    comparisons,
    finding,
    holm_adjust,
    paired_difference,
    paired_tests,
    percentile_ci,
    power_at_level,
    power_columns,
    require_columns,
    sample_sd,
    seeds_text,
    setting_text,
    t_interval,
    untestable,
    verdict,
    within_precision,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "NO_DIFFERENCE_PRECISION",
    "PRECISION",
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
                row.update(paired_tests(s, b, ci=1.0 - alpha))
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
        p_holm = holm_adjust(np.array([r["p_paired"] for r in sys_rows[1:]], dtype=float))
        sys_rows[0]["p_holm"] = np.nan
        sys_rows[0]["verdict"] = sys_rows[0]["finding"] = "baseline"
        for r, ph in zip(sys_rows[1:], p_holm, strict=True):
            r["p_holm"] = float(ph)
            precise = r.pop("_precise")
            r["verdict"] = verdict(float(ph), r["diff_mean"], r["n_pairs"], alpha, higher, precise)
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
    require_columns(final, [*dict.fromkeys((Key.system, *setting_columns(final.columns))), "strategy",
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
            raise ValueError(f"final has no baseline row for {setting_text(setting)}")
        b = base.iloc[0]
        name = setting_name(setting, bare=(Key.descriptor,))
        n_base = int(b["n_seeds"]) if "n_seeds" in b else int(b["n_pairs"])
        stopped = int(block["n_stopped"].sum()) if "n_stopped" in block else 0
        budget = (f"after {b['n_labelled']:g} labels (the largest budget every run reached: {stopped} "
                  f"run{'s' * (stopped != 1)} stopped earlier)" if stopped else f"after {b['n_labelled']:g} labels")
        if n_base >= 2 and np.isfinite(b[f"{metric}_std"]):
            spread = f" ± {b[f'{metric}_std']:.2g} (mean ± std over {n_base} seeds)."
        else:
            spread = f" ({seeds_text(n_base)}: no spread, no test)."
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


def _items(rows: pd.DataFrame, alpha: float, *, holm: bool = True) -> str:
    return "; ".join(f"{r['strategy']} on {where_name(r)}, {pct_with_ci(r, alpha=alpha)}"
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
    corrected = holm_adjust(p)
    size, at = len(p), 0
    for t, m in zip(tables, masks, strict=True):
        metric = t.attrs.get("metric", "mae")
        higher = metric in HIGHER_IS_BETTER
        t["p_holm"] = np.nan
        t.loc[m, "p_holm"] = corrected[at:at + int(m.sum())]
        at += int(m.sum())
        for i in np.flatnonzero(m):  # rows within numerical precision are outside the family (mask)
            r = t.iloc[i]
            v = verdict(float(r["p_holm"]), float(r["diff_mean"]), int(r["n_pairs"]), alpha, higher, False)
            t.iloc[i, t.columns.get_loc("verdict")] = v
            if "finding" in t:
                t.iloc[i, t.columns.get_loc("finding")] = finding(
                    v, float(r["diff_mean"]), float(r["p_paired"]), alpha, higher_is_better=higher,
                    n_pairs=int(r["n_pairs"]), precise=False)
        t.attrs.update(alpha=alpha, holm_family=size, holm_scope=scope, holm_level=alpha / max(size, 1))
    return tables


def _family_words(final: pd.DataFrame) -> str:
    size, scope = int(final.attrs["holm_family"]), final.attrs.get("holm_scope", "in this table")
    return f"the 1 paired test {scope}" if size == 1 else f"all {size} paired tests {scope}"


def _untestable_sentence(rows: pd.DataFrame, base_name: str) -> str:
    """``Cannot be tested with 1 seed: uncertainty on Si (+20.0 % on that seed).``"""
    parts = []
    for n, block in rows.groupby(rows["n_pairs"].astype(int), sort=True):
        items = "; ".join(f"{r['strategy']} on {where_name(r)}"
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
             + "; ".join(f"{r['strategy']} on {where_name(r)} {r['diff_pct']:+.1f} %" for _, r in seen.iterrows())
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
                         f"{top['strategy']} on {where_name(top)} at {pct_with_ci(top, alpha=alpha)}, is not "
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
        size = max(int(final.attrs["holm_family"]), 1)
        third = (f"With {seeds} seeds these comparisons could detect differences of {_span(mde, '.0f')} % "
                 f"of {base_name}'s {label} (paired t-test, 80 % power at α/{size} = "
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
