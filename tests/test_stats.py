"""Statistics of the study (alhelpers.stats) against scipy/statsmodels and hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.multitest import multipletests

from alhelpers.al.runs import final_round
from alhelpers.formation.leakage import leakage_audit, leakage_table
from alhelpers.formation.loop import RUN_COLUMNS
from alhelpers.curves import label_savings, labels_to_reach, learning_curve_auc, mean_curve
from alhelpers.stats import VERDICTS, final_table, verdict_summary

SEEDS = (0, 1, 2, 3, 4)


def make_runs(curves: dict[str, dict[int, list[float]]], *, n0: int = 10, step: int = 10,
              system: str = "C", descriptor: str = "magpie", r2: float = 0.5) -> pd.DataFrame:
    """A tidy runs table from {strategy: {seed: [metric per round]}} (n_labelled = n0 + step·round)."""
    rows = []
    for strategy, per_seed in curves.items():
        for seed, values in per_seed.items():
            for rnd, v in enumerate(values):
                row = dict.fromkeys(RUN_COLUMNS, 0.0)
                row.update(system=system, descriptor=descriptor, strategy=strategy, seed=seed,
                           round=rnd, n_labelled=n0 + step * rnd, n_pool=100, n_test=25, mae=v,
                           rmse=v, max_error=v, r2=r2 - v, note="")
                rows.append(row)
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def finals(final_mae: dict[str, list[float]], **kw) -> pd.DataFrame:
    """Two rounds per run; round 0 is a constant 1.0, the final round carries the given MAE."""
    return make_runs({s: {seed: [1.0, v] for seed, v in zip(SEEDS, vals, strict=True)}
                      for s, vals in final_mae.items()}, **kw)


RANDOM = np.array([0.30, 0.32, 0.28, 0.31, 0.29])
BETTER = RANDOM - np.array([0.050, 0.060, 0.055, 0.052, 0.058])
WORSE = RANDOM + np.array([0.040, 0.050, 0.045, 0.041, 0.048])
SIMILAR = RANDOM + np.array([0.010, -0.012, 0.005, -0.003, 0.002])


@pytest.fixture(scope="module")
def three() -> pd.DataFrame:
    runs = finals({"random": list(RANDOM), "better": list(BETTER), "worse": list(WORSE),
                   "similar": list(SIMILAR)})
    return final_table(runs)


# --------------------------------------------------------------------------- final_round


def test_final_round_keeps_last_row_of_a_run_that_stopped_early():
    runs = make_runs({"random": {0: [0.9, 0.7, 0.5], 1: [0.8, 0.6]},
                      "uncertainty": {0: [0.9, 0.6, 0.4], 1: [0.8, 0.5, 0.45]}})
    runs = runs.sample(frac=1.0, random_state=1)  # order must not matter
    fin = final_round(runs)
    assert len(fin) == 4
    got = fin.set_index(["strategy", "seed"])[["round", "n_labelled", "mae"]]
    assert got.loc[("random", 0)].tolist() == [2, 30, 0.5]
    assert got.loc[("random", 1)].tolist() == [1, 20, 0.6]  # stopped early: its own last row
    assert got.loc[("uncertainty", 1)].tolist() == [2, 30, 0.45]


def test_statistics_reject_duplicates_and_name_missing_columns():
    runs = make_runs({"random": {0: [0.9, 0.7]}})
    for fn in (final_table, mean_curve):
        with pytest.raises(ValueError, match=r"duplicating a \(system, descriptor, strategy, seed, round\)"):
            fn(pd.concat([runs, runs]))
        with pytest.raises(ValueError, match=r"missing column\(s\) \['seed'\]"):
            fn(runs.drop(columns="seed"))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \[.*'seed'"):
        final_round(runs.drop(columns="seed"))
    # r2 is optional (Track B has none): no r2_* columns then, but asking for it names it.
    no_r2 = final_table(runs.drop(columns="r2"))
    assert not [c for c in no_r2.columns if c.startswith("r2")]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['r2'\]"):
        final_table(runs.drop(columns="r2"), metric="r2")


# --------------------------------------------------------------------------- final_table


def test_final_table_summary_columns(three):
    t = three.set_index("strategy")
    assert list(t.index) == ["random", "better", "worse", "similar"]
    for name, vals in {"random": RANDOM, "better": BETTER, "worse": WORSE}.items():
        assert t.loc[name, "n_seeds"] == 5 and t.loc[name, "n_pairs"] == 5
        assert t.loc[name, "n_labelled"] == 20
        assert t.loc[name, "mae_mean"] == pytest.approx(vals.mean())
        assert t.loc[name, "mae_std"] == pytest.approx(np.std(vals, ddof=1))
        assert t.loc[name, "r2_mean"] == pytest.approx(0.5 - vals.mean())
        assert t.loc[name, "r2_std"] == pytest.approx(np.std(vals, ddof=1))
    assert t.loc["better", "diff_mean"] == pytest.approx((BETTER - RANDOM).mean())
    assert t.loc["worse", "diff_pct"] == pytest.approx(100 * (WORSE - RANDOM).mean() / RANDOM.mean())


def test_final_table_p_values_match_scipy_and_statsmodels(three):
    t = three.set_index("strategy")
    for name, vals in {"better": BETTER, "worse": WORSE, "similar": SIMILAR}.items():
        assert t.loc[name, "p_paired"] == pytest.approx(sps.ttest_rel(vals, RANDOM).pvalue, rel=1e-12)
        assert t.loc[name, "p_welch"] == pytest.approx(
            sps.ttest_ind(vals, RANDOM, equal_var=False).pvalue, rel=1e-12)
        assert t.loc[name, "p_wilcoxon"] == pytest.approx(sps.wilcoxon(vals - RANDOM).pvalue, rel=1e-12)
        d = vals - RANDOM
        assert t.loc[name, "effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    order = ["better", "worse", "similar"]
    holm = multipletests(t.loc[order, "p_paired"].to_numpy(), method="holm")[1]
    np.testing.assert_allclose(t.loc[order, "p_holm"].to_numpy(), holm, rtol=1e-12)


def test_final_table_verdicts(three):
    t = three.set_index("strategy")
    assert t["verdict"].to_dict() == {"random": "baseline", "better": "better", "worse": "worse",
                                      "similar": "similar"}
    assert set(t["verdict"]) <= set(VERDICTS)
    base = t.loc["random"]
    assert base[["p_paired", "p_welch", "p_wilcoxon", "p_holm", "effect_size"]].isna().all()
    assert base["diff_mean"] == 0.0
    assert t.loc["better", "effect_size"] < 0 < t.loc["worse", "effect_size"]
    assert three.attrs == {"metric": "mae", "baseline": "random", "alpha": 0.05}


def test_final_table_alpha_changes_verdict(three):
    runs = finals({"random": list(RANDOM), "better": list(BETTER), "worse": list(WORSE),
                   "similar": list(SIMILAR)})
    p = three.set_index("strategy").loc["better", "p_holm"]
    strict = final_table(runs, alpha=p / 2).set_index("strategy")
    assert strict.loc["better", "verdict"] == "similar"


def test_wilcoxon_with_zero_and_tied_differences():
    # Dyadic numbers, so the differences are exact: two zeros and a tie in |d|.
    base = np.array([0.5, 0.25, 0.75, 0.5, 1.0])
    d = np.array([0.0, 0.125, -0.125, 0.25, 0.0])
    runs = finals({"random": list(base), "tied": list(base + d), "same": list(base)})
    t = final_table(runs).set_index("strategy")
    expected = sps.wilcoxon(d, zero_method="wilcox").pvalue
    assert t.loc["tied", "p_wilcoxon"] == pytest.approx(expected, rel=1e-12)
    assert t.loc["tied", "p_paired"] == pytest.approx(sps.ttest_rel(base + d, base).pvalue, rel=1e-12)
    # All differences zero: no Wilcoxon p-value, no effect size; scipy's t-test gives NaN -> similar.
    assert np.isnan(t.loc["same", "p_wilcoxon"]) and np.isnan(t.loc["same", "effect_size"])
    assert t.loc["same", "verdict"] == "similar"
    # Holm over the finite p-values only (a family of one here).
    assert t.loc["tied", "p_holm"] == pytest.approx(t.loc["tied", "p_paired"])


def test_seed_missing_for_one_strategy_pairs_the_shared_seeds():
    runs = finals({"random": list(RANDOM), "better": list(BETTER), "worse": list(WORSE)})
    runs = runs[~((runs["strategy"] == "better") & (runs["seed"] == 3))]
    t = final_table(runs).set_index("strategy")
    keep = [0, 1, 2, 4]
    assert t.loc["better", "n_seeds"] == 4 and t.loc["better", "n_pairs"] == 4
    assert t.loc["worse", "n_pairs"] == 5
    assert t.loc["better", "p_paired"] == pytest.approx(
        sps.ttest_rel(BETTER[keep], RANDOM[keep]).pvalue, rel=1e-12)
    assert t.loc["better", "diff_mean"] == pytest.approx((BETTER[keep] - RANDOM[keep]).mean())
    # Welch's test is unpaired: all 4 seeds of the strategy against all 5 of random.
    assert t.loc["better", "p_welch"] == pytest.approx(
        sps.ttest_ind(BETTER[keep], RANDOM, equal_var=False).pvalue, rel=1e-12)


def test_one_pair_is_not_testable_and_missing_baseline_is_an_error():
    runs = finals({"random": list(RANDOM), "better": list(BETTER)})
    one = runs[(runs["strategy"] == "random") | (runs["seed"] == 0)]
    t = final_table(one).set_index("strategy")
    assert t.loc["better", "n_pairs"] == 1 and t.loc["better", "verdict"] == "n/a"
    assert np.isnan(t.loc["better", "p_paired"]) and np.isnan(t.loc["better", "p_wilcoxon"])
    with pytest.raises(ValueError, match="baseline strategy 'random'"):
        final_table(runs[runs["strategy"] != "random"])


def test_higher_is_better_metric_flips_the_verdict():
    runs = finals({"random": list(RANDOM), "better": list(BETTER)})
    t = final_table(runs, metric="r2").set_index("strategy")  # r2 = 0.5 - mae: higher for "better"
    assert t.loc["better", "diff_mean"] > 0 and t.loc["better", "verdict"] == "better"


def test_verdict_summary_mentions_each_system_and_strategy():
    a = finals({"random": list(RANDOM), "better": list(BETTER), "similar": list(SIMILAR)}, system="C")
    b = finals({"random": list(RANDOM), "worse": list(WORSE)}, system="Si")
    text = verdict_summary(final_table(pd.concat([a, b], ignore_index=True)))
    paras = text.split("\n\n")
    assert len(paras) == 2
    assert paras[0].startswith("C (magpie)") and paras[1].startswith("Si (magpie)")
    assert " better: better, significant (MAE " in paras[0] and " similar: worse, not significant (MAE " in paras[0]
    assert " worse: worse, significant (MAE " in paras[1] and "No strategy beats random" in paras[1]
    assert "(95 % CI " in paras[0]  # every difference with its interval
    assert "Holm p" in text


# --------------------------------------------------------------------------- curves


def test_mean_curve_with_a_seed_that_stopped_early():
    runs = make_runs({"random": {0: [0.9, 0.7, 0.5], 1: [0.7, 0.5], 2: [0.8, 0.6, 0.4]}})
    mc = mean_curve(runs)
    assert mc.columns.tolist() == ["system", "descriptor", "strategy", "n_labelled", "mean", "std",
                                   "n_seeds"]
    assert mc["n_labelled"].tolist() == [10, 20, 30]
    np.testing.assert_allclose(mc["mean"], [0.8, 0.6, 0.45])
    np.testing.assert_allclose(mc["std"], [0.1, 0.1, np.std([0.5, 0.4], ddof=1)])
    assert mc["n_seeds"].tolist() == [3, 3, 2]


def test_labels_to_reach_first_crossing_interpolated():
    n = np.array([10, 20, 30, 40])
    assert labels_to_reach(n, np.array([1.0, 0.6, 0.2, 0.1]), 0.4) == pytest.approx(25.0)
    assert labels_to_reach(n, np.array([1.0, 0.5, 0.4, 0.3]), 0.5) == pytest.approx(20.0)  # equal counts
    assert labels_to_reach(n, np.array([0.3, 0.6, 0.2, 0.1]), 0.4) == 10.0  # at the first point
    assert np.isnan(labels_to_reach(n, np.array([1.0, 0.9, 0.8, 0.7]), 0.5))  # never
    # First crossing: the early dip counts even though the curve rises again.
    assert labels_to_reach(n, np.array([1.0, 0.3, 0.8, 0.1]), 0.5) == pytest.approx(10 + 10 * 0.5 / 0.7)
    # NaN points are skipped: interpolate across the gap.
    assert labels_to_reach(n, np.array([1.0, np.nan, 0.0, 0.0]), 0.5) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        labels_to_reach(np.array([10, 10, 20]), np.array([1.0, 0.5, 0.2]), 0.4)
    with pytest.raises(ValueError, match="equal length"):
        labels_to_reach(n, np.array([1.0, 0.5]), 0.4)


BASE_CURVE = [1.0, 0.8, 0.6, 0.5]


def _equal_seeds(curves: dict[str, list[float]], offsets=(0.0,) * 5) -> pd.DataFrame:
    return make_runs({s: {seed: [v + off for v in c] for seed, off in zip(SEEDS, offsets, strict=True)}
                      for s, c in curves.items()})


def test_label_savings_exact_when_all_seeds_are_equal():
    runs = _equal_seeds({"random": BASE_CURVE, "fast": [1.0, 0.7, 0.5, 0.4],
                         "interp": [1.0, 0.6, 0.55, 0.45], "slow": [1.0, 0.9, 0.8, 0.7]})
    out = label_savings(runs, n_boot=200, rng=np.random.default_rng(0), fractions=(1.0,)).set_index("strategy")
    assert out["n_baseline"].tolist() == [40.0] * 4
    np.testing.assert_allclose(out["target"], 0.5)
    assert out.loc["random", "saving_pct"] == 0.0 and out.loc["random", "reached"]
    assert out.loc["fast", "n_reach"] == pytest.approx(30.0)
    assert out.loc["fast", "saving_pct"] == pytest.approx(25.0)
    assert out.loc["interp", "n_reach"] == pytest.approx(35.0)
    assert out.loc["interp", "saving_pct"] == pytest.approx(12.5)
    for s in ("random", "fast", "interp"):  # identical seeds: the CI collapses to the point value
        assert out.loc[s, "saving_lo"] == pytest.approx(out.loc[s, "saving_pct"])
        assert out.loc[s, "saving_hi"] == pytest.approx(out.loc[s, "saving_pct"])
        assert out.loc[s, "reach_frac"] == 1.0
    slow = out.loc["slow"]
    assert not slow["reached"] and np.isnan(slow["n_reach"]) and np.isnan(slow["saving_pct"])
    assert np.isnan(slow["saving_lo"]) and slow["reach_frac"] == 0.0
    worst = label_savings(runs, n_boot=50, rng=np.random.default_rng(0), unreached="worst", fractions=(1.0,))
    assert worst.set_index("strategy").loc["slow", "saving_lo"] == -np.inf


def test_label_savings_resamples_seeds_paired():
    # Each seed shifts baseline and strategy by the same offset: with paired resampling every
    # replicate still reaches random's final MAE at exactly 30 labels, so the CI is the point value.
    offsets = (0.0, 0.1, -0.05, 0.2, 0.03)
    runs = _equal_seeds({"random": BASE_CURVE, "fast": [1.0, 0.7, 0.5, 0.4]}, offsets)
    out = label_savings(runs, n_boot=300, rng=np.random.default_rng(1), fractions=(1.0,)).set_index("strategy")
    assert out.loc["fast", "target"] == pytest.approx(0.5 + np.mean(offsets))
    assert out.loc["fast", "saving_pct"] == pytest.approx(25.0)
    assert out.loc["fast", "saving_lo"] == pytest.approx(25.0)
    assert out.loc["fast", "saving_hi"] == pytest.approx(25.0)
    # Only shared seeds are used, and the same generator seed gives the same table.
    part = runs[~((runs["strategy"] == "fast") & (runs["seed"] == 4))]
    a = label_savings(part, n_boot=100, rng=np.random.default_rng(2))
    b = label_savings(part, n_boot=100, rng=np.random.default_rng(2))
    pd.testing.assert_frame_equal(a, b)
    assert (a.loc[a["strategy"] == "fast", "n_pairs"] == 4).all()
    with pytest.raises(TypeError, match="Generator"):
        label_savings(runs, rng=0)


def test_auc_of_a_straight_line_is_its_mean():
    line = [1.0, 0.8, 0.6, 0.4]  # linear in n_labelled = 10..40
    offsets = np.array([0.0, 0.1, -0.1, 0.05, 0.2])
    runs = _equal_seeds({"random": line}, tuple(offsets))
    out = learning_curve_auc(runs, n_boot=200, rng=np.random.default_rng(0)).iloc[0]
    assert out["auc"] == pytest.approx(np.mean(line) + offsets.mean())
    assert out["seed_auc_mean"] == pytest.approx(np.mean(line) + offsets.mean())
    assert out["seed_auc_std"] == pytest.approx(np.std(offsets, ddof=1))
    assert out["auc_lo"] <= out["auc"] <= out["auc_hi"]
    flat = learning_curve_auc(_equal_seeds({"random": line}), n_boot=50, rng=np.random.default_rng(0))
    assert flat.loc[0, "auc_lo"] == pytest.approx(0.7) and flat.loc[0, "auc_hi"] == pytest.approx(0.7)


def test_auc_on_an_uneven_grid_matches_trapezoid():
    runs = make_runs({"random": {0: [1.0, 0.5, 0.45]}})
    runs["n_labelled"] = runs["round"].map({0: 10, 1: 20, 2: 50})
    out = learning_curve_auc(runs, n_boot=10, rng=np.random.default_rng(0))
    expected = ((1.0 + 0.5) / 2 * 10 + (0.5 + 0.45) / 2 * 30) / 40  # trapezoids by hand
    assert out.loc[0, "auc"] == pytest.approx(expected)
    assert out.loc[0, "n_seeds"] == 1 and np.isnan(out.loc[0, "seed_auc_std"])


# --------------------------------------------------------------------------- leakage audit


def _xy(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.normal(size=n)


def test_leakage_audit_flags_a_linear_target_and_not_a_random_one():
    X, noise = _xy()
    names = ["a", "b", "c", "d"]
    leak = leakage_audit(X, 3.0 * X[:, 2] - 1.0, feature_names=names)
    assert leak["leaks"] and leak["r2"] == pytest.approx(1.0, abs=1e-9) and leak["mae"] < 1e-6
    assert leak["top_feature"] == "c" and leak["top_r"] == pytest.approx(1.0)
    clean = leakage_audit(X, noise, feature_names=names)
    assert not clean["leaks"] and clean["r2"] < 0.5
    j = int(np.argmax([abs(sps.pearsonr(X[:, k], noise).statistic) for k in range(4)]))
    assert clean["top_feature"] == names[j]
    assert clean["top_r"] == pytest.approx(sps.pearsonr(X[:, j], noise).statistic)
    # Same out-of-fold R² as a KFold loop written with sklearn directly (ridge, CV-chosen penalty).
    pred = np.empty_like(noise)
    for tr, te in KFold(5, shuffle=True, random_state=0).split(X):
        sc = StandardScaler().fit(X[tr])
        model = RidgeCV(alphas=np.logspace(-6, 3, 10)).fit(sc.transform(X[tr]), noise[tr])
        pred[te] = model.predict(sc.transform(X[te]))
    assert clean["r2"] == pytest.approx(r2_score(noise, pred))
    with pytest.raises(ValueError, match="feature_names"):
        leakage_audit(X, noise, feature_names=names[:3])


def test_leakage_table_one_row_per_descriptor_set():
    X, noise = _xy()
    names = ["a", "b", "c", "d"]
    t = leakage_table({"leaky": (X, X[:, 0] * 2.0, names), "clean": (X, noise, names)})
    assert t["descriptor"].tolist() == ["leaky", "clean"]
    assert t["leaks"].tolist() == [True, False]
    assert {"r2", "mae", "top_feature", "top_r"} <= set(t.columns)


def test_label_savings_baseline_against_itself_is_zero_on_a_dipping_curve():
    # Random's mean curve dips below its final MAE (0.5) before it ends: measured against its own
    # crossing of the same target, random saves nothing, and a strategy's saving is counted from
    # that crossing too (not from the end of the budget).
    runs = _equal_seeds({"random": [1.0, 0.45, 0.6, 0.5], "same": [1.0, 0.45, 0.6, 0.5],
                         "fast": [0.5, 0.45, 0.4, 0.4]})
    out = label_savings(runs, n_boot=50, rng=np.random.default_rng(0), fractions=(1.0,)).set_index("strategy")
    assert out.loc["random", "saving_pct"] == 0.0 and out.loc["same", "saving_pct"] == 0.0
    n_base = 10 + 10 * (1.0 - 0.5) / (1.0 - 0.45)  # random first reaches 0.5 between 10 and 20
    assert out.loc["random", "n_baseline"] == pytest.approx(n_base)
    assert out.loc["fast", "n_reach"] == 10.0
    assert out.loc["fast", "saving_pct"] == pytest.approx(100 * (1 - 10 / n_base))


def test_label_savings_targets_along_the_baseline_budget():
    # random 1.0, 0.8, 0.6, 0.5 over n = 10…40; "fast" = random shifted 10 labels earlier.
    runs = _equal_seeds({"random": BASE_CURVE, "fast": [0.8, 0.6, 0.5, 0.45]})
    out = label_savings(runs, n_boot=20, rng=np.random.default_rng(0)).set_index(["strategy", "budget_frac"])
    # targets at n = 25, 32.5, 40: 0.7, 0.575, 0.5; random reaches each exactly there
    for f, n_t, target in [(0.5, 25.0, 0.7), (0.75, 32.5, 0.575), (1.0, 40.0, 0.5)]:
        assert out.loc[("random", f), "n_target"] == n_t and out.loc[("random", f), "n_baseline"] == n_t
        assert out.loc[("random", f), "target"] == pytest.approx(target)
        assert out.loc[("random", f), "saving_pct"] == 0.0
        assert out.loc[("fast", f), "n_reach"] == pytest.approx(n_t - 10)
        assert out.loc[("fast", f), "saving_pct"] == pytest.approx(100 * 10 / n_t)
    with pytest.raises(ValueError, match="fractions"):
        label_savings(runs, rng=np.random.default_rng(0), fractions=(0.0, 1.0))


def _power_curves(n: np.ndarray, saving: float) -> np.ndarray:
    """MAE(n) = 0.5·(n/10)^−½ and a strategy that needs (1 − saving) of the labels for the same MAE."""
    return 0.5 * (n / (1.0 - saving) / 10.0) ** -0.5


@pytest.mark.parametrize("k", [5, 30])
def test_label_savings_interval_covers_a_known_saving(k):
    # Synthetic curves with a known saving of 15 % (per-seed level offsets and per-point noise,
    # both multiplicative): the nominal 95 % interval must cover the true saving 90–99 % of the time.
    from alhelpers.curves import _boot_weights, _savings, _weighted_curves
    from alhelpers.stats import t_interval

    rng = np.random.default_rng(2026)
    grid = np.arange(10.0, 101.0, 10.0)
    fractions = np.array([0.5, 0.75, 1.0])
    truth = _savings(grid, _power_curves(grid, 0.0)[None], _power_curves(grid, 0.15)[None], fractions)["saving"][0]
    np.testing.assert_allclose(truth, 15.0, atol=0.3)  # only the linear interpolation between points differs
    reps, covered = 300, np.zeros(3)
    for _ in range(reps):
        level = rng.normal(0.0, 0.1, (k, 1))
        B = _power_curves(grid, 0.0) * np.exp(level + rng.normal(0.0, 0.08, (k, grid.size)))
        A = _power_curves(grid, 0.15) * np.exp(level + rng.normal(0.0, 0.08, (k, grid.size)))
        point = _savings(grid, B.mean(0)[None], A.mean(0)[None], fractions)["saving"][0]
        w = _boot_weights(k, 500, rng)
        boot = _savings(grid, _weighted_curves(w, B), _weighted_curves(w, A), fractions)["saving"]
        for j in range(3):
            lo, hi = t_interval(point[j], boot[:, j], k, 0.95)
            covered[j] += lo <= truth[j] <= hi
    coverage = covered / reps
    assert ((coverage >= 0.90) & (coverage <= 0.99)).all(), coverage


def _paired_t_power(effect: float, n: int, alpha: float) -> float:
    """Two-sided paired t-test power from the noncentral t distribution (by hand)."""
    crit = sps.t.ppf(1 - alpha / 2, n - 1)
    nc = effect * np.sqrt(n)
    return float(sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc))


def test_power_columns_against_the_noncentral_t():
    from alhelpers.stats import power_columns

    d = np.array([-0.02, -0.01, -0.03, 0.0, -0.015])  # differences of MAE, baseline mean 0.3
    sd = np.std(d, ddof=1)
    out = power_columns(d, 0.3, alpha=0.05, family=3)
    level = 0.05 / 3
    # the detectable difference has 80 % power with 5 pairs at the Bonferroni level
    dz = out["mde_pct"] / 100 * 0.3 / sd
    assert _paired_t_power(dz, 5, level) == pytest.approx(0.8, abs=1e-6)
    # seeds_needed: the smallest n with power ≥ 0.8 for the observed effect (n − 1 falls short)
    k = int(out["seeds_needed"])
    eff = abs(d.mean()) / sd
    assert _paired_t_power(eff, k, level) >= 0.8 and (k == 2 or _paired_t_power(eff, k - 1, level) < 0.8)
    k5 = int(out["seeds_for_5pct"])
    assert _paired_t_power(0.015 / sd, k5, level) >= 0.8 > _paired_t_power(0.015 / sd, k5 - 1, level)
    assert k5 > 5  # a 5 % difference needs more than these five seeds
    assert np.isnan(power_columns(d[:2], 0.3, alpha=0.05, family=3)["mde_pct"])
    assert power_columns(d - d.mean(), 0.3, alpha=0.05, family=1)["seeds_needed"] == np.inf


def test_final_table_states_its_power(three):
    assert {"mde_pct", "seeds_needed", "seeds_for_5pct"} <= set(three.columns)
    base = three.set_index("strategy").loc["random"]
    assert np.isnan(base["mde_pct"])
    better = three.set_index("strategy").loc["better"]
    assert 2 <= better["seeds_needed"] <= 5  # a clear effect: five seeds were enough
    assert better["mde_pct"] < abs(better["diff_pct"])


# --------------------------------------------------------------------------- stopping rule: a common budget

STOP = "stopped: predicted test MAE 0.3 eV/atom is at or below TARGET_MAE = 0.33 eV/atom (calibrated σ of the pool)"


def _stopped_runs() -> pd.DataFrame:
    """random's seed 1 stops after round 1 (20 labels) under the stopping rule; every other run goes
    on to round 3 (40 labels). Seeds 0, 1, 2."""
    runs = make_runs({"random": {0: [1.0, 0.8, 0.6, 0.5], 1: [1.1, 0.9], 2: [0.9, 0.7, 0.55, 0.45]},
                      "uncertainty": {0: [1.0, 0.7, 0.5, 0.4], 1: [1.1, 0.85, 0.6, 0.5], 2: [0.9, 0.6, 0.5, 0.4]}})
    last = (runs["strategy"] == "random") & (runs["seed"] == 1) & (runs["round"] == 1)
    runs.loc[last, "note"] = STOP
    return runs


def test_common_budget_cuts_every_run_of_a_setting_at_the_budget_all_reached():
    from alhelpers.al.runs import common_budget

    runs = _stopped_runs()
    cb = common_budget(runs)
    assert cb.budgets[["system", "descriptor", "n_compared", "n_max", "n_runs", "n_stopped"]].values.tolist() == [
        ["C", "magpie", 20, 40, 6, 1]]
    assert cb.stopped[["strategy", "seed", "n_labelled", "note"]].values.tolist() == [["random", 1, 20, STOP]]
    assert cb.runs["n_labelled"].max() == 20 and len(cb.runs) == 6 * 2
    # No run stopped early: the very same table back, nothing to list.
    full = runs[~((runs["strategy"] == "random") & (runs["seed"] == 1))]
    same = common_budget(full)
    assert same.runs is full and same.stopped.empty
    assert same.budgets[["n_compared", "n_max", "n_stopped"]].values.tolist() == [[40, 40, 0]]


def test_final_table_compares_strategies_at_the_budget_every_run_reached():
    # Before: random's n_labelled was the mean of 40, 20, 40 and its final MAE mixed budgets.
    runs = _stopped_runs()
    t = final_table(runs).set_index("strategy")
    assert t["n_labelled"].tolist() == [20.0, 20.0]
    assert t["n_stopped"].tolist() == [1, 0]
    rand, unc = np.array([0.8, 0.9, 0.7]), np.array([0.7, 0.85, 0.6])  # everyone's round 1
    assert t.loc["random", "mae_mean"] == pytest.approx(rand.mean())
    assert t.loc["uncertainty", "p_paired"] == pytest.approx(sps.ttest_rel(unc, rand).pvalue, rel=1e-12)
    assert t.loc["uncertainty", "diff_pct"] == pytest.approx(100 * (unc - rand).mean() / rand.mean())


def test_label_savings_and_auc_use_the_same_cut_curves():
    runs = _stopped_runs()
    sav = label_savings(runs, n_boot=50, rng=np.random.default_rng(0), fractions=(1.0,)).set_index("strategy")
    # random's mean curve over the budget 10 … 20: 1.0, 0.8; uncertainty's 1.0, 0.7167
    assert sav.loc["random", "n_target"] == 20.0 and sav.loc["random", "target"] == pytest.approx(0.8)
    assert sav["n_stopped"].tolist() == [1, 0]
    unc20 = (0.7 + 0.85 + 0.6) / 3
    assert sav.loc["uncertainty", "n_reach"] == pytest.approx(10 + 10 * 0.2 / (1.0 - unc20))
    auc = learning_curve_auc(runs, n_boot=50, rng=np.random.default_rng(0)).set_index("strategy")
    assert auc["n_labelled"].tolist() == [20.0, 20.0] and auc["n_stopped"].tolist() == [1, 0]
    assert auc.loc["random", "auc"] == pytest.approx((1.0 + 0.8) / 2)
    assert auc.loc["uncertainty", "auc"] == pytest.approx((1.0 + unc20) / 2)


# --------------------------------------------------------------------------- one seed: nothing to test

def _one_seed() -> pd.DataFrame:
    """C and Si, seed 0 only: random 0.30, uncertainty 0.36 (+20 %), diversity 0.27 (−10 %) on C."""
    c = make_runs({"random": {0: [1.0, 0.30]}, "uncertainty": {0: [1.0, 0.36]}, "diversity": {0: [1.0, 0.27]}})
    si = make_runs({"random": {0: [1.0, 0.50]}, "uncertainty": {0: [1.0, 0.45]}}, system="Si")
    return pd.concat([c, si], ignore_index=True)


def test_one_seed_says_it_cannot_be_tested_with_no_spread_and_no_interval():
    from alhelpers.stats import conclusion_lines

    t = final_table(_one_seed())
    others = t[t["strategy"] != "random"]
    assert others["finding"].tolist() == ["cannot be tested with 1 seed"] * 3
    assert others["verdict"].tolist() == ["n/a"] * 3
    text = verdict_summary(t)
    assert text.split("\n\n") == [
        "C (magpie): after 20 labels, random reaches MAE 0.3 (1 seed: no spread, no test). "
        "uncertainty: cannot be tested with 1 seed (MAE 0.36, +20.0 % vs random on that seed). "
        "diversity: cannot be tested with 1 seed (MAE 0.27, -10.0 % vs random on that seed).",
        "Si (magpie): after 20 labels, random reaches MAE 0.5 (1 seed: no spread, no test). "
        "uncertainty: cannot be tested with 1 seed (MAE 0.45, -10.0 % vs random on that seed)."]
    assert conclusion_lines(t) == [
        "No comparison with random can be tested with 1 seed (a paired test needs 2 or more): "
        "2 strategies in 2 systems.",
        "Observed on that seed alone, without a test or an interval: uncertainty on C +20.0 %; "
        "diversity on C -10.0 %; uncertainty on Si -10.0 %.",
        "With 1 paired seed the power of these comparisons cannot be estimated (3 or more are needed)."]


def test_one_seed_among_testable_settings_is_named_apart():
    from alhelpers.stats import conclusion_lines

    five = finals({"random": list(RANDOM), "worse": list(WORSE)}, system="Fe")
    one = make_runs({"random": {0: [1.0, 0.30]}, "worse": {0: [1.0, 0.36]}}, system="Si")
    t = final_table(pd.concat([five, one], ignore_index=True))
    lines = conclusion_lines(t)
    row = t.set_index(["system", "strategy"]).loc[("Fe", "worse")]
    low, high = sps.ttest_rel(WORSE, RANDOM).confidence_interval(0.95)
    assert lines[0] == ("No strategy beats random after Holm correction over the 1 paired test in this table "
                        "(α = 0.05; 1 strategy in 1 system, 5 paired seeds each).")
    assert lines[1] == (
        f"Worse than random (MAE, significant after correction): worse on Fe, {row['diff_pct']:+.1f} % "
        f"(95 % CI {100 * low / RANDOM.mean():+.1f} … {100 * high / RANDOM.mean():+.1f} %), "
        f"Holm p = {row['p_holm']:.1e}. Cannot be tested with 1 seed: worse on Si (+20.0 % on that seed).")


def test_auc_and_savings_of_one_seed_have_no_interval():
    runs = make_runs({"random": {0: [1.0, 0.8, 0.6]}, "fast": {0: [1.0, 0.6, 0.5]}})
    auc = learning_curve_auc(runs, n_boot=50, rng=np.random.default_rng(0))
    assert auc["auc"].tolist() == pytest.approx([0.8, 0.675])
    assert auc[["auc_lo", "auc_hi", "seed_auc_std"]].isna().all().all()  # was a zero-width "95 % CI"
    sav = label_savings(runs, n_boot=50, rng=np.random.default_rng(0), fractions=(1.0,)).set_index("strategy")
    assert sav.loc["fast", "saving_pct"] == pytest.approx(100 * (1 - 20 / 30))  # fast reaches 0.6 at 20
    assert sav[["saving_lo", "saving_hi", "reach_frac"]].isna().all().all()


# --------------------------------------------------------------------------- below the numbers' precision

def test_a_difference_below_numerical_precision_is_no_difference():
    # A pool that ran out: every strategy trains on the same materials and differs from random only
    # by float32 rounding (here ~1e-8 relative), which once read "worse, not significant".
    tiny = RANDOM * (1 + np.array([1.5e-8, 2e-8, 1e-8, 3e-8, 1.2e-8]))
    t = final_table(finals({"random": list(RANDOM), "same": list(tiny), "worse": list(WORSE)})).set_index("strategy")
    assert t.loc["same", "finding"] == "no difference (within numerical precision)"
    assert t.loc["same", "verdict"] == "similar"
    assert t.loc["same", "diff_pct"] == pytest.approx(100 * (tiny - RANDOM).mean() / RANDOM.mean())
    assert t.loc["worse", "finding"] == "worse, significant"
    # Large differences that cancel on average are not a precision matter.
    mixed = RANDOM + np.array([0.05, -0.05, 0.03, -0.03, 0.0])
    t = final_table(finals({"random": list(RANDOM), "mixed": list(mixed)})).set_index("strategy")
    assert t.loc["mixed", "finding"] == "worse, not significant"


def test_conclusion_when_no_comparison_has_a_p_value():
    # Every pool ran out: the strategies trained on the same materials and differ by rounding only.
    from alhelpers.stats import conclusion_lines

    same = RANDOM * (1 + 1e-8)
    t = final_table(finals({"random": list(RANDOM), "uncertainty": list(same), "diversity": list(RANDOM)}))
    assert conclusion_lines(t) == [
        "No strategy beats random: no comparison has a p-value (2 strategies in 1 system, 5 paired seeds each; "
        "every paired difference is zero, equal on every seed, or below the numbers' precision).",
        "No strategy differs from random (every paired difference is zero or below the numbers' precision).",
        "With 5 paired seeds the power of these comparisons cannot be estimated: the paired differences have no "
        "spread."]
