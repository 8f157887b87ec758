"""alhelpers.stats on a Track B runs table (interatomic potentials): settings are (system, batch),
there is no descriptor and no r2, the metric is a force error. Expected values are computed here
by hand from the arrays that built the table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from alhelpers.curves import label_savings, learning_curve_auc, mean_curve
from alhelpers.stats import final_table, verdict_summary

#: Track B's runs columns (no descriptor, no r2; batch is a setting column).
TRACK_B_COLUMNS = ("system", "strategy", "batch", "seed", "round", "n_labelled", "n_atoms_labelled",
                   "energy_mae", "energy_rmse", "energy_maxe", "force_mae", "force_rmse", "force_maxe",
                   "unc_pearson", "fit_s", "feature_s", "query_s", "label_s", "epochs", "note")
N0 = 20  # initial labelled structures; round r has N0 + batch * r
ROUNDS = 4
LCMD = "lcmd-feat-ll"

# force_mae per (batch, strategy): rows are seeds 0-3, columns rounds 0-3. Multiples of 1/64, so
# sums and means over seeds are exact in floating point.
FORCE_MAE = {
    (10, "random"): np.array([[0.5, 0.375, 0.3125, 0.25],
                              [0.53125, 0.40625, 0.3125, 0.28125],
                              [0.46875, 0.375, 0.28125, 0.234375],
                              [0.5, 0.4375, 0.34375, 0.265625]]),
    (10, LCMD): np.array([[0.5, 0.3125, 0.25, 0.1875],
                          [0.53125, 0.34375, 0.265625, 0.234375],
                          [0.46875, 0.3125, 0.234375, 0.171875],
                          [0.5, 0.375, 0.28125, 0.1875]]),
    (20, "random"): np.array([[0.5, 0.34375, 0.265625, 0.21875],
                              [0.53125, 0.375, 0.28125, 0.234375],
                              [0.46875, 0.328125, 0.25, 0.203125],
                              [0.5, 0.359375, 0.296875, 0.25]]),
    (20, LCMD): np.array([[0.5, 0.34375, 0.28125, 0.234375],
                          [0.53125, 0.375, 0.28125, 0.21875],
                          [0.46875, 0.34375, 0.28125, 0.234375],
                          [0.5, 0.359375, 0.28125, 0.25]]),
}
SEEDS = (0, 1, 2, 3)


def track_b_runs(force_mae: dict = FORCE_MAE) -> pd.DataFrame:
    rows = []
    for (batch, strategy), values in force_mae.items():
        for seed, curve in zip(SEEDS, values, strict=True):
            for rnd, v in enumerate(curve):
                n = N0 + batch * rnd
                rows.append({"system": "tio2", "strategy": strategy, "batch": batch, "seed": seed,
                             "round": rnd, "n_labelled": n, "n_atoms_labelled": 12 * n,
                             "energy_mae": v / 100, "energy_rmse": v / 80, "energy_maxe": v / 20,
                             "force_mae": v, "force_rmse": 1.25 * v, "force_maxe": 4 * v,
                             "unc_pearson": 0.5, "fit_s": 1.0, "feature_s": 0.1, "query_s": 0.2,
                             "label_s": 0.0, "epochs": 100, "note": ""})
    return pd.DataFrame(rows, columns=list(TRACK_B_COLUMNS))


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return track_b_runs()


def _final(batch: int, strategy: str) -> np.ndarray:
    return FORCE_MAE[(batch, strategy)][:, -1]


# --------------------------------------------------------------------------- final_table


def test_final_table_on_track_b_columns(runs):
    t = final_table(runs, metric="force_mae")
    assert t.columns.tolist() == [
        "system", "batch", "strategy", "n_seeds", "n_pairs", "n_labelled", "n_stopped", "force_mae_mean",
        "force_mae_std", "diff_mean", "diff_low", "diff_high", "diff_pct", "diff_pct_low", "diff_pct_high",
        "p_paired", "p_welch", "p_wilcoxon", "p_holm", "effect_size", "verdict", "finding", "mde_pct",
        "seeds_needed", "seeds_for_5pct"]
    assert "descriptor" not in t.columns and not [c for c in t.columns if c.startswith("r2")]
    assert t[["system", "batch", "strategy"]].values.tolist() == [
        ["tio2", 10, "random"], ["tio2", 10, LCMD], ["tio2", 20, "random"], ["tio2", 20, LCMD]]
    assert t.attrs == {"metric": "force_mae", "baseline": "random", "alpha": 0.05}


@pytest.mark.parametrize("batch", [10, 20])
def test_final_table_paired_statistics_per_batch(runs, batch):
    t = final_table(runs, metric="force_mae").set_index(["batch", "strategy"])
    base, lcmd = _final(batch, "random"), _final(batch, LCMD)
    d = lcmd - base
    for strategy, vals in (("random", base), (LCMD, lcmd)):
        row = t.loc[(batch, strategy)]
        assert row["n_seeds"] == 4 and row["n_pairs"] == 4
        assert row["n_labelled"] == N0 + 3 * batch
        assert row["force_mae_mean"] == vals.sum() / 4  # exact: multiples of 1/64
        sd = np.sqrt(((vals - vals.mean()) ** 2).sum() / 3)
        assert row["force_mae_std"] == pytest.approx(sd, rel=1e-12)
    row = t.loc[(batch, LCMD)]
    assert row["diff_mean"] == d.sum() / 4
    assert row["diff_pct"] == pytest.approx(100 * (d.sum() / 4) / (base.sum() / 4), rel=1e-12)
    p = sps.ttest_rel(lcmd, base).pvalue
    assert row["p_paired"] == pytest.approx(p, rel=1e-12)
    assert row["p_welch"] == pytest.approx(sps.ttest_ind(lcmd, base, equal_var=False).pvalue, rel=1e-12)
    assert row["p_wilcoxon"] == pytest.approx(sps.wilcoxon(d, zero_method="wilcox").pvalue, rel=1e-12)
    assert row["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-12)
    # Each batch size is its own Holm family of one non-baseline strategy: p_holm == p_paired.
    assert row["p_holm"] == pytest.approx(p, rel=1e-12)
    assert t.loc[(batch, "random"), "verdict"] == "baseline"


def test_final_table_compares_the_batch_sizes_separately(runs):
    t = final_table(runs, metric="force_mae")
    verdict = t.set_index(["batch", "strategy"])["verdict"]
    # Batch 10: lcmd is lower on every seed (d = -1/16, -3/64, -1/16, -5/64): p ≈ 0.0011 → better.
    assert sps.ttest_rel(_final(10, LCMD), _final(10, "random")).pvalue < 0.01
    assert verdict[(10, LCMD)] == "better"
    # Batch 20: mixed signs (d = +1/64, -1/64, +1/32, 0) → similar.
    assert verdict[(20, LCMD)] == "similar"
    # Pooling both batch sizes would pair 8 "seeds"; each batch's rows equal those of its own table.
    for batch in (10, 20):
        alone = final_table(runs[runs["batch"] == batch], metric="force_mae")
        pd.testing.assert_frame_equal(t[t["batch"] == batch].reset_index(drop=True), alone)
    text = verdict_summary(t)
    paras = text.split("\n\n")
    assert len(paras) == 2
    assert paras[0].startswith("tio2 (batch 10): after 50 labels, random reaches force_mae 0.2578")
    assert paras[1].startswith("tio2 (batch 20): after 80 labels")
    assert f"{LCMD}: better, significant (force_mae " in paras[0]
    # batch 20: the mean difference (+1/128) is above zero, p far from 0.05
    assert f"{LCMD}: worse, not significant (force_mae " in paras[1]


def test_missing_baseline_in_one_batch_names_the_batch(runs):
    part = runs[~((runs["batch"] == 20) & (runs["strategy"] == "random"))]
    with pytest.raises(ValueError, match=r"no runs for system='tio2', batch=20"):
        final_table(part, metric="force_mae")


# --------------------------------------------------------------------------- curves


def _first_crossing(n: list[float], curve: np.ndarray, target: float) -> float:
    """Labels at which ``curve`` first gets to ``<= target`` (linear between points), by hand."""
    for i, v in enumerate(curve):
        if v <= target:
            if i == 0:
                return float(n[0])
            return n[i - 1] + (curve[i - 1] - target) / (curve[i - 1] - v) * (n[i] - n[i - 1])
    return float("nan")


def test_label_savings_per_batch(runs):
    out = label_savings(runs, metric="force_mae", n_boot=200, rng=np.random.default_rng(0), fractions=(1.0,))
    assert out.columns.tolist()[:6] == ["system", "batch", "strategy", "budget_frac", "n_pairs", "n_stopped"]
    assert "descriptor" not in out.columns
    assert out[["batch", "strategy"]].values.tolist() == [[10, "random"], [10, LCMD], [20, "random"],
                                                           [20, LCMD]]
    got = out.set_index(["batch", "strategy"])
    for batch in (10, 20):
        n = [N0 + batch * r for r in range(ROUNDS)]
        base_curve = FORCE_MAE[(batch, "random")].sum(axis=0) / 4
        lcmd_curve = FORCE_MAE[(batch, LCMD)].sum(axis=0) / 4
        target = base_curve[-1]
        n_reach = _first_crossing(n, lcmd_curve, target)
        row = got.loc[(batch, LCMD)]
        assert row["n_pairs"] == 4
        assert row["target"] == target and row["n_target"] == n[-1]
        n_base = _first_crossing(n, base_curve, target)
        assert row["n_baseline"] == n_base
        assert row["n_reach"] == pytest.approx(n_reach, rel=1e-12, nan_ok=True)
        assert row["saving_pct"] == pytest.approx(100 * (1 - n_reach / n_base), rel=1e-12, nan_ok=True)
        assert row["reached"] == np.isfinite(n_reach)
        assert 0.0 <= row["reach_frac"] <= 1.0
        if row["reached"]:
            assert row["saving_lo"] <= row["saving_pct"] <= row["saving_hi"]
    # Batch 10: mean lcmd curve 0.5, 0.3359375, 0.2578125, 0.1953125 against random's final
    # 0.2578125 (the mean of its finals): reached exactly at round 2 = 40 labels of 50 → 20 %.
    assert got.loc[(10, LCMD), "n_reach"] == 40.0 and got.loc[(10, LCMD), "saving_pct"] == pytest.approx(20.0, abs=1e-12)
    # Batch 20: random's final 0.2265625; lcmd's mean curve reaches 0.234375 at its last round,
    # so it never gets there.
    assert not got.loc[(20, LCMD), "reached"] and np.isnan(got.loc[(20, LCMD), "saving_pct"])
    # Each batch size on its own gives the same rows (same generator, batch 10 drawn first).
    alone = label_savings(runs[runs["batch"] == 10], metric="force_mae", n_boot=200,
                          rng=np.random.default_rng(0), fractions=(1.0,))
    pd.testing.assert_frame_equal(out[out["batch"] == 10].reset_index(drop=True), alone)


def test_learning_curve_auc_per_batch(runs):
    out = learning_curve_auc(runs, metric="force_mae", n_boot=200, rng=np.random.default_rng(0))
    assert out.columns.tolist() == ["system", "batch", "strategy", "n_seeds", "n_labelled", "n_stopped", "auc",
                                    "auc_lo", "auc_hi", "seed_auc_mean", "seed_auc_std"]
    got = out.set_index(["batch", "strategy"])
    for (batch, strategy), values in FORCE_MAE.items():
        n = np.array([N0 + batch * r for r in range(ROUNDS)], dtype=float)

        def area(y, n=n):  # trapezoids by hand, over the labelled range
            return sum((y[i] + y[i + 1]) / 2 * (n[i + 1] - n[i]) for i in range(ROUNDS - 1)) / (n[-1] - n[0])

        per_seed = np.array([area(v) for v in values])
        row = got.loc[(batch, strategy)]
        assert row["n_seeds"] == 4
        assert row["auc"] == pytest.approx(area(values.sum(axis=0) / 4), rel=1e-12)
        assert row["seed_auc_mean"] == pytest.approx(per_seed.mean(), rel=1e-12)
        assert row["seed_auc_std"] == pytest.approx(per_seed.std(ddof=1), rel=1e-12)
        assert row["auc_lo"] <= row["auc"] <= row["auc_hi"]
    assert out.attrs["metric"] == "force_mae"


def test_mean_curve_per_batch(runs):
    mc = mean_curve(runs, metric="force_mae")
    assert mc.columns.tolist() == ["system", "batch", "strategy", "n_labelled", "mean", "std", "n_seeds"]
    lcmd20 = mc[(mc["batch"] == 20) & (mc["strategy"] == LCMD)]
    assert lcmd20["n_labelled"].tolist() == [20, 40, 60, 80]
    assert lcmd20["mean"].tolist() == (FORCE_MAE[(20, LCMD)].sum(axis=0) / 4).tolist()
    assert lcmd20["n_seeds"].tolist() == [4] * 4


# --------------------------------------------------------------------------- Track B: stopping rule, one seed

TRACK_B_STOP = ("stopped: predicted test MAE 0.2812 eV/Å is at or below TARGET_MAE = 0.3 eV/Å "
                "(calibrated σ of the pool)")


def _stopped_track_b() -> pd.DataFrame:
    """Batch 10: lcmd's seed 1 stopped after round 1 (30 structures) under the stopping rule."""
    runs = track_b_runs()
    lcmd1 = (runs["batch"] == 10) & (runs["strategy"] == LCMD) & (runs["seed"] == 1)
    runs = runs[~(lcmd1 & (runs["round"] > 1))].copy()
    runs.loc[lcmd1 & (runs["round"] == 1), "note"] = TRACK_B_STOP
    return runs.reset_index(drop=True)


def test_track_b_compares_at_the_budget_every_run_reached():
    from alhelpers.atomistic.summary import potential_summary, versus_random

    runs = _stopped_track_b()
    t = versus_random(runs, metrics=("force_mae",)).set_index(["batch", "strategy"])
    assert t.loc[(10, "random"), "n_labelled"] == 30 and t.loc[(10, LCMD), "n_stopped"] == 1
    assert t.loc[(20, LCMD), "n_labelled"] == N0 + 3 * 20 and t.loc[(20, LCMD), "n_stopped"] == 0  # unchanged
    base, lcmd = FORCE_MAE[(10, "random")][:, 1], FORCE_MAE[(10, LCMD)][:, 1]
    assert t.loc[(10, LCMD), "p_paired"] == pytest.approx(sps.ttest_rel(lcmd, base).pvalue, rel=1e-12)
    summary = potential_summary(runs).set_index(["batch", "strategy"])
    assert summary.loc[(10, LCMD), "n_labelled"] == 30 and summary.loc[(10, LCMD), "n_stopped"] == 1
    assert summary.loc[(10, LCMD), "force_mae"] == pytest.approx(lcmd.mean())
    assert summary.loc[(10, LCMD), "stopped"] == f"seed 1 at 30: {TRACK_B_STOP}"
    assert summary.loc[(10, "random"), "stopped"] == ""


def test_track_b_with_one_seed_tests_nothing_and_shows_no_zero_spread():
    from alhelpers.atomistic.summary import potential_summary, versus_random
    from alhelpers.paired import mean_std_text

    runs = track_b_runs()
    one = runs[runs["seed"] == 0]
    t = versus_random(one, metrics=("force_mae",))
    assert t.loc[t["strategy"] == LCMD, "finding"].tolist() == ["cannot be tested with 1 seed"] * 2
    assert t.loc[t["strategy"] == LCMD, ["p_paired", "diff_pct_low", "std"]].isna().all().all()
    summary = potential_summary(one)
    assert summary["force_mae_std"].isna().all()  # not 0
    assert mean_std_text(0.25, float("nan"), 1) == "0.2500 (1 seed)"
    assert mean_std_text(0.25, 0.0123, 4) == "0.2500 ± 0.0123"
    assert mean_std_text(0.25, 0.0, 4, scale=1000, digits=2) == "250.00 ± 0.00"
