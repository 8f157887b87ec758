"""The convex hull and the stability strategies, on hand-checked Ti–O cases (STUDY §4).

Hand calculation: with TiO2 at −3 eV/atom (x_O = 2/3) and Ti2O3 at −2.5 (x_O = 3/5), the hull
from Ti (0, 0) runs straight to TiO2, because at x_O = 3/5 that line is at −2.7 < −2.5: Ti2O3 lies
0.2 eV/atom above it. At TiO (x_O = 1/2) the hull is −3 · (1/2)/(2/3) = −2.25, at Ti3O5
(x_O = 5/8) −2.8125; LiTiO2 = Li + TiO2, with no Li compound labelled, lies at ¾ · (−3) = −2.25.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from alhelpers.formation.hull import (below_hull_probability, expected_hull_improvement, hull_distances,
                                      hull_energies, on_hull)
from alhelpers.select import HullInputs, QueryContext, get_strategy, select_stability


def test_hull_energies_and_distances_by_hand():
    hull = hull_energies(["TiO2", "Ti2O3"], np.array([-3.0, -2.5]), ["TiO", "Ti3O5", "LiTiO2", "TiO2", "Li2O"])
    np.testing.assert_allclose(hull, [-2.25, -2.8125, -2.25, -3.0, 0.0], atol=1e-12)
    # with TiO at −2.3 the hull runs TiO → TiO2: at x_O = 3/5 it is −2.3 − 0.7 · 0.1/(1/6) = −2.72
    np.testing.assert_allclose(hull_distances(["TiO2", "Ti2O3", "TiO"], np.array([-3.0, -2.5, -2.3])),
                               [0.0, 0.22, 0.0], atol=1e-12)
    # TiO at −2.3 is below the Ti–TiO2 line (−2.25), so it is on the hull and Ti2O3 still above it;
    # a compound above the elements is never stable
    assert on_hull(["TiO2", "Ti2O3", "TiO", "TiO3"], np.array([-3.0, -2.5, -2.3, 0.4])).tolist() == \
        [True, False, True, False]


def test_probability_and_expected_improvement_by_hand():
    # mean −2, σ' 0.5, hull −2.25: z = −0.5
    p = below_hull_probability(np.array([-2.0]), np.array([0.5]), np.array([-2.25]))
    ei = expected_hull_improvement(np.array([-2.0]), np.array([0.5]), np.array([-2.25]))
    assert p[0] == pytest.approx(0.3085375387259869, abs=1e-12)
    phi = math.exp(-0.125) / math.sqrt(2 * math.pi)
    assert ei[0] == pytest.approx(-0.25 * stats.norm.cdf(-0.5) + 0.5 * phi, abs=1e-12)
    assert ei[0] == pytest.approx(0.098899, abs=1e-6)  # −0.25 · 0.308538 + 0.5 · 0.352065
    with pytest.raises(ValueError, match="sigma finite and > 0"):
        below_hull_probability(np.array([-2.0]), np.array([0.0]), np.array([-2.25]))


def test_stability_strategies_pick_by_hand():
    # candidate 0: far above its hull, sure; 1: 0.1 below, sure → P≈1; 2: at the hull, unsure → P=½
    # but the largest expected improvement (σ' 1 gives φ(0) = 0.399 > 0.1); 3: 0.2 above, unsure
    mean = np.array([0.5, -2.35, -2.25, -2.05])
    sigma = np.array([0.05, 0.01, 1.0, 0.5])
    hull = np.array([-1.0, -2.25, -2.25, -2.25])
    rng = np.random.default_rng(0)
    assert select_stability(mean, sigma, hull, 2, rng=rng).tolist() == [1, 2]
    assert select_stability(mean, sigma, hull, 2, rng=rng, score="improvement").tolist() == [2, 3]
    ctx = QueryContext(np.zeros((4, 1)), np.zeros((1, 1)), None, 1, rng, hull=HullInputs(mean, sigma, hull))
    assert get_strategy("stability")(ctx).tolist() == [1]
    assert get_strategy("stability-ei")(ctx).tolist() == [2]
    with pytest.raises(ValueError, match="needs the convex hull"):
        get_strategy("stability")(QueryContext(np.zeros((4, 1)), np.zeros((1, 1)), None, 1, rng))


def test_the_studies_run_the_stability_strategies_with_the_formulas(tio2_entries):
    from alhelpers.formation.config import ALConfig
    from alhelpers.formation.features import featurize
    from alhelpers.formation.loop import run_al

    fs = featurize(tio2_entries, "magpie")
    cfg = ALConfig(system="Ti-O", strategies=("random", "stability", "stability-ei"), rounds=2, n_init=20, batch=5)
    with pytest.raises(ValueError, match=r"\['stability', 'stability-ei'\] need the convex hull.*formulas="):
        run_al(fs.X, fs.y, cfg)
    runs = run_al(fs.X, fs.y, cfg, formulas=fs.table["formula"].tolist())
    assert runs.groupby("strategy")["n_labelled"].max().to_dict() == {"random": 25, "stability": 25, "stability-ei": 25}
    first = runs[runs["round"] == 0]["mae"].to_numpy()  # one initial set and model for every strategy (to the
    np.testing.assert_allclose(first, first[0], rtol=1e-7)  # summation order of the stacked training)


def test_a_batch_believes_each_pick_into_the_hull_before_the_next():
    """TiO2 labelled at −3. Ti2O3 predicted −3.2 (σ' 0.1) is 5σ' below the hull (−2.7 at x_O = 3/5),
    Ti3O5 predicted −3.15 3.375σ' (hull −2.8125 at 5/8), Li2O predicted −1 (σ' 0.5) 2σ' below the
    elements. The top two scores are Ti2O3 and Ti3O5; but with Ti2O3 believed at −3.2 the hull at
    Ti3O5 drops to −3.2 + 0.2 · (1/40)/(1/15) = −3.125, only 0.25σ' above its prediction, so the
    batch takes Li2O instead."""
    mean, sigma = np.array([-3.2, -3.15, -1.0]), np.array([0.1, 0.1, 0.5])
    cands = ["Ti2O3", "Ti3O5", "Li2O"]
    hull = hull_energies(["TiO2"], np.array([-3.0]), cands)
    np.testing.assert_allclose(hull, [-2.7, -2.8125, 0.0])
    rng = np.random.default_rng(0)
    assert select_stability(mean, sigma, hull, 2, rng=rng).tolist() == [0, 1]
    believed = select_stability(mean, sigma, hull, 2, rng=rng, formulas=(["TiO2"], np.array([-3.0]), cands))
    assert believed.tolist() == [0, 2]
    np.testing.assert_allclose(hull_energies(["TiO2", "Ti2O3"], np.array([-3.0, -3.2]), ["Ti3O5"]), [-3.125])
