"""Calibration diagnostics (alhelpers.calibration): hand-computed values, uncertainty-toolbox as the
reference implementation, and recalibration of a known mis-scaled Gaussian."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alhelpers.calibration import (
    Recalibration,
    calibration_metrics,
    ence,
    gaussian_nll,
    miscalibration_area,
    predicted_mae,
    recalibrate,
    reliability_curve,
    sigma_scale,
    z2_mean,
)

ERR = np.array([1.0, -2.0, 0.5, -0.25])
SIGMA = np.array([1.0, 2.0, 0.25, 0.5])


def test_nll_and_z2_by_hand():
    # z = 1, -1, 2, -0.5 → z² = 1, 1, 4, 0.25
    assert z2_mean(ERR, SIGMA) == pytest.approx((1 + 1 + 4 + 0.25) / 4, abs=1e-15)
    want = np.mean([0.5 * math.log(2 * math.pi * s * s) + 0.5 * z * z
                    for z, s in [(1, 1.0), (-1, 2.0), (2, 0.25), (-0.5, 0.5)]])
    assert gaussian_nll(ERR, SIGMA) == pytest.approx(want, abs=1e-14)
    # two points with |z| = 1: ½log(2π) + ½ + ½log 4 / 2
    assert gaussian_nll([1.0, -2.0], [1.0, 2.0]) == pytest.approx(0.5 * math.log(2 * math.pi) + 0.5 + 0.5 * math.log(2))


def test_ence_by_hand():
    err, sigma = np.array([1.0, -1.0, 3.0, -3.0]), np.array([1.0, 1.0, 1.0, 3.0])
    # sorted by σ: bins {0, 1} (RMV 1, RMSE 1) and {2, 3} (RMV √5, RMSE 3)
    assert ence(err, sigma, bins=2) == pytest.approx(abs(math.sqrt(5) - 3) / math.sqrt(5) / 2, abs=1e-15)
    # one bin per error: mean |σ − |e|| / σ
    assert ence(err, sigma, bins=4) == pytest.approx(np.mean([0, 0, 2, 0]), abs=1e-15)


def test_miscalibration_area_by_hand():
    # every error 0: all inside every interval, observed 1 for all p → ∫(1 − p) dp = ½
    assert miscalibration_area(np.zeros(7), np.ones(7)) == pytest.approx(0.5, abs=1e-12)
    # every |z| huge: observed 0 until p = 1, then 1; d = −p on 98 segments (∫ = (98/99)²/2) and
    # −98/99 → 0 on the last: 98/99²/2 more, 49/99 in all
    assert miscalibration_area(np.full(5, 1e3), np.ones(5)) == pytest.approx(49 / 99, abs=1e-12)
    # two levels (p = 0, 1) and one error with |z| = 0.5: observed 0 then 1, on the diagonal
    curve = reliability_curve([0.5], [1.0], levels=2)
    assert curve["observed"].tolist() == [0.0, 1.0]
    assert miscalibration_area([0.5], [1.0], levels=2) == pytest.approx(0.0, abs=1e-15)


def test_crossing_reliability_curve_counts_both_sides():
    # three levels p = 0, ½, 1; z ∈ {0, 0.2, 3, 3}: observed 0.25 at p=0 (only z ≤ 0), ½ at p=½
    # (Φ⁻¹(0.75) = 0.674), 1 at p=1. Differences d = 0.25, 0, 0: triangle ½·½·0.25
    err, sigma = np.array([0.0, 0.2, 3.0, -3.0]), np.ones(4)
    assert reliability_curve(err, sigma, levels=3)["observed"].tolist() == [0.25, 0.5, 1.0]
    assert miscalibration_area(err, sigma, levels=3) == pytest.approx(0.0625, abs=1e-15)
    # z ∈ {0, 5, 5, 5}: observed ¼, ¼, 1 → d = +¼, −¼, 0. The first segment crosses the diagonal:
    # two triangles of ½·¼·¼ (they must not cancel), the second a triangle of ½·½·¼
    err, sigma = np.array([0.0, 5.0, -5.0, 5.0]), np.ones(4)
    assert reliability_curve(err, sigma, levels=3)["observed"].tolist() == [0.25, 0.25, 1.0]
    assert miscalibration_area(err, sigma, levels=3) == pytest.approx(2 * 0.5 * 0.25 * 0.25 + 0.0625, abs=1e-15)


def test_agrees_with_uncertainty_toolbox():
    uct = pytest.importorskip("uncertainty_toolbox", reason="uncertainty-toolbox is the reference (test extra)")
    rng = np.random.default_rng(3)
    for n, factor in [(40, 1.0), (250, 2.5), (1000, 0.4)]:
        sigma = rng.uniform(0.05, 0.5, n)
        y = rng.normal(size=n)
        pred = y + factor * sigma * rng.normal(size=n)
        err = pred - y
        assert miscalibration_area(err, sigma) == pytest.approx(
            uct.metrics_calibration.miscalibration_area(pred, sigma, y), abs=1e-12)
        assert gaussian_nll(err, sigma) == pytest.approx(uct.metrics_scoring_rule.nll_gaussian(pred, sigma, y), rel=1e-12)
        exp, obs = uct.metrics_calibration.get_proportion_lists_vectorized(pred, sigma, y)
        curve = reliability_curve(err, sigma)
        np.testing.assert_allclose(curve["expected"], exp, atol=1e-15)
        np.testing.assert_allclose(curve["observed"], obs, atol=1e-15)


def test_recalibration_of_a_known_misscaled_gaussian():
    rng = np.random.default_rng(11)
    sigma = rng.uniform(0.02, 0.2, 4000)
    err = rng.normal(0.0, 3.0 * sigma)  # σ three times too small (over-confident)
    cal, test = slice(0, 1000), slice(1000, None)
    assert sigma_scale(err[cal], sigma[cal]) == pytest.approx(3.0, rel=0.1)
    r = recalibrate(err[cal], sigma[cal])
    # no floor in these data: the fitted one stays small next to every scaled σ (sampling noise)
    assert r.scale == pytest.approx(3.0, rel=0.1) and r.floor < 0.5 * r.scale * sigma.min()
    row = calibration_metrics(err[test], sigma[test], recal=r)
    assert row["z2_mean"] == pytest.approx(9.0, rel=0.1)
    assert row["z2_mean_cal"] == pytest.approx(1.0, abs=0.1)
    assert row["nll_cal"] < row["nll"]
    assert row["miscal_area_cal"] < 0.03 < row["miscal_area"]
    assert row["ence_cal"] < 0.1 < row["ence"]
    # the stopping rule's estimate: the calibrated σ predicts the test MAE
    assert predicted_mae(sigma[test], recal=r) == pytest.approx(np.abs(err[test]).mean(), rel=0.05)


def test_recalibration_finds_a_known_error_floor():
    # errors ~ N(0, (1.5σ)² + 0.05²) with many σ near 0 (a model sure of what it cannot know):
    # the floor is needed; scaling alone cannot make those errors calibrated
    rng = np.random.default_rng(5)
    sigma = np.concatenate([rng.uniform(1e-4, 1e-3, 1500), rng.uniform(0.02, 0.3, 2500)])
    rng.shuffle(sigma)
    err = rng.normal(0.0, np.sqrt((1.5 * sigma) ** 2 + 0.05**2))
    cal, test = slice(0, 1500), slice(1500, None)
    r = recalibrate(err[cal], sigma[cal])
    assert r.scale == pytest.approx(1.5, rel=0.1) and r.floor == pytest.approx(0.05, rel=0.15)
    row = calibration_metrics(err[test], sigma[test], recal=r)
    assert row["z2_mean_cal"] == pytest.approx(1.0, abs=0.1) and row["z2_mean"] > 100
    scale_only = calibration_metrics(err[test], sigma[test], recal=recalibrate(err[cal], sigma[cal], floor=False))
    assert scale_only["nll_cal"] > row["nll_cal"] and scale_only["miscal_area_cal"] > row["miscal_area_cal"]
    np.testing.assert_allclose(r.apply(np.array([0.0, 1.0])), [r.floor, np.hypot(r.scale, r.floor)])


def test_predicted_mae_by_hand():
    assert predicted_mae([1.0, 3.0], recal=Recalibration(0.5)) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-15)
    assert predicted_mae([0.0, 0.0], recal=Recalibration(1.0, 1.0)) == pytest.approx(math.sqrt(2 / math.pi))
    # atom-weighted: (1·1 + 3·3) / 4
    assert predicted_mae([1.0, 3.0], weights=[1, 3]) == pytest.approx(2.5 * math.sqrt(2 / math.pi), abs=1e-15)


def test_calibration_metrics_without_scale_repeats_raw():
    row = calibration_metrics(ERR, SIGMA)
    for name in ("nll", "z2_mean", "miscal_area", "ence"):
        assert row[name + "_cal"] == row[name]


@pytest.mark.parametrize("err, sigma, message", [
    ([1.0, 2.0], [1.0], "same length"),
    ([], [], "at least one"),
    ([np.nan], [1.0], "not finite"),
    ([1.0, 1.0], [1.0, 0.0], "finite and positive"),
])
def test_bad_input_is_named(err, sigma, message):
    with pytest.raises(ValueError, match=message):
        z2_mean(err, sigma)


def test_bad_recalibration_is_named():
    with pytest.raises(ValueError, match="scale"):
        Recalibration(0.0)
    with pytest.raises(ValueError, match="floor"):
        Recalibration(1.0, -1.0)


def test_cv_folds_cover_every_row_once():
    from alhelpers.calibration import cv_folds

    folds = cv_folds(10, 3, np.random.default_rng(0))
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(10)) and [len(h) for _, h in folds] == [4, 3, 3]
    for train, h in folds:
        assert sorted(np.concatenate([train, h]).tolist()) == list(range(10))
    assert cv_folds(3, 3, np.random.default_rng(0)) != [] and cv_folds(2, 3, np.random.default_rng(0)) == []
    with pytest.raises(ValueError, match="2 folds"):
        cv_folds(10, 1, np.random.default_rng(0))


def test_round_calibration_nan_where_undefined():
    from alhelpers.calibration import ROUND_COLUMNS, round_calibration

    # every calibration error exactly 2σ: the factor 2 and no floor have the smallest NLL
    row = round_calibration(ERR, SIGMA, cal_err=2 * SIGMA * [1, -1, 1, -1], cal_sigma=SIGMA,
                            pool_sigma=np.array([1.0, 3.0]))
    assert list(row) == [str(c) for c in ROUND_COLUMNS]
    assert row["sigma_scale"] == pytest.approx(2.0, abs=1e-12) and row["sigma_floor"] == 0.0
    assert row["z2_mean_cal"] == pytest.approx(row["z2_mean"] / 4)
    assert row["mae_pred"] == pytest.approx(2.0 * 2.0 * math.sqrt(2 / math.pi))
    # a zero σ on the test set: no test metrics; an empty calibration set: no scale, no _cal, no prediction
    bad = round_calibration(ERR, np.array([1.0, 0.0, 1.0, 1.0]), cal_err=ERR, cal_sigma=SIGMA)
    assert np.isnan(bad["z2_mean"]) and np.isnan(bad["nll_cal"]) and np.isfinite(bad["sigma_scale"])
    none = round_calibration(ERR, SIGMA, cal_err=np.empty(0), cal_sigma=np.empty(0), pool_sigma=SIGMA)
    assert np.isnan(none["sigma_scale"]) and np.isnan(none["z2_mean_cal"]) and np.isnan(none["mae_pred"])
    assert none["z2_mean"] == z2_mean(ERR, SIGMA)


def test_round_calibration_keeps_the_reliability_diagram():
    from alhelpers.calibration import RELIABILITY_COLUMNS, round_calibration

    # |z| = 1, 1, 2, 0.5; the central interval of probability p is ±Φ⁻¹(½ + p/2): 0.524 at p = 0.4,
    # 1.036 at p = 0.7, so 1 of 4 errors is inside at 0.4–0.6 and 3 of 4 at 0.7–0.9
    row = round_calibration(ERR, SIGMA)
    assert [row[c] for c in RELIABILITY_COLUMNS[:9]] == [0, 0, 0, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75]
    assert [row[c] for c in RELIABILITY_COLUMNS[9:]] == [row[c] for c in RELIABILITY_COLUMNS[:9]]


def test_calibration_table_means_over_seeds():
    import pandas as pd

    from alhelpers.calibration import CALIBRATION_COLUMNS, calibration_table

    rows = []
    for seed, (mae, pred) in enumerate([(0.2, 0.1), (0.4, 0.5)]):
        for rnd, n in enumerate((10, 20)):
            row = dict(system="C", descriptor="magpie", strategy="random", seed=seed, round=rnd, n_labelled=n,
                       mae=mae / (rnd + 1), mae_pred=pred / (rnd + 1), sigma_scale=2.0 + seed, sigma_floor=0.1)
            row.update({str(c): float(seed) for c in CALIBRATION_COLUMNS})
            rows.append(row)
    t = calibration_table(pd.DataFrame(rows)).set_index("n_labelled")
    assert t.loc[10, "mae"] == pytest.approx(0.3) and t.loc[10, "mae_pred"] == pytest.approx(0.3)
    assert t.loc[20, "pred_ratio"] == pytest.approx(0.15 / 0.15) and t.loc[10, "n_seeds"] == 2
    assert t.loc[20, "z2_mean_cal"] == 0.5 and t.loc[20, "sigma_scale"] == 2.5
    with pytest.raises(ValueError, match="rerun the active-learning notebook"):
        calibration_table(pd.DataFrame(rows).drop(columns="mae_pred"))
