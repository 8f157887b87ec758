"""Tests for alhelpers.select: exact selections on tiny hand-checked cases (STUDY §4)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import chisquare

from alhelpers.select import (
    HullInputs,
    STRATEGIES,
    QueryContext,
    get_strategy,
    minmax,
    nearest_distance,
    needs_variance,
    register_strategy,
    select_diversity,
    select_hybrid,
    select_random,
    select_uncertainty,
    top_k,
)
from alhelpers.select import strategies as strategies_module
from alhelpers.select.strategies import _farthest_point_refinement

# Points on a line 0..9; point 0 is labelled, the candidates are 1..9 (positions 0..8).
LINE_LABELLED = np.array([[0.0]])
LINE_CANDIDATES = np.arange(1.0, 10.0).reshape(-1, 1)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_valid(positions: np.ndarray, n_candidates: int, batch_size: int) -> None:
    """Unique integer positions in range, of length min(batch_size, n_candidates)."""
    assert positions.ndim == 1
    assert np.issubdtype(positions.dtype, np.integer)
    assert len(positions) == min(batch_size, n_candidates)
    assert len(set(positions.tolist())) == len(positions)
    assert all(0 <= p < n_candidates for p in positions.tolist())


# --------------------------------------------------------------------------- helpers


def test_minmax_constant_is_zeros() -> None:
    np.testing.assert_array_equal(minmax(np.full(4, 3.7)), np.zeros(4))


def test_minmax_scales_to_unit_interval() -> None:
    np.testing.assert_allclose(minmax(np.array([1.0, 3.0, 5.0, 2.0])), [0.0, 0.5, 1.0, 0.25])


def test_minmax_empty_and_nan() -> None:
    assert minmax(np.array([])).shape == (0,)
    with pytest.raises(ValueError, match="finite"):
        minmax(np.array([0.0, np.nan]))


@pytest.mark.parametrize("max_block_elements", [1, 7, 1 << 22])
def test_nearest_distance_matches_cdist(max_block_elements: int) -> None:
    gen = rng(3)
    X_from, X_to = gen.normal(size=(53, 4)), gen.normal(size=(11, 4))
    expected = cdist(X_from, X_to).min(axis=1)
    got = nearest_distance(X_from, X_to, max_block_elements=max_block_elements)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_nearest_distance_to_empty_is_inf() -> None:
    got = nearest_distance(np.ones((3, 2)), np.empty((0, 2)))
    assert got.shape == (3,) and np.all(np.isinf(got))


def test_nearest_distance_shape_mismatch_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(4, 5\)"):
        nearest_distance(np.ones((3, 2)), np.ones((4, 5)))


# --------------------------------------------------------------------------- top_k


def test_top_k_exact_order() -> None:
    assert top_k(np.array([0.2, 0.9, -1.0, 0.5]), 3, rng=rng()).tolist() == [1, 3, 0]


def test_top_k_ties_random_but_reproducible() -> None:
    scores = np.array([5.0, 3.0, 3.0, 3.0, 1.0])
    assert top_k(scores, 2, rng=rng(7)).tolist() == top_k(scores, 2, rng=rng(7)).tolist()
    seconds = Counter(int(top_k(scores, 2, rng=rng(s))[1]) for s in range(300))
    assert set(seconds) == {1, 2, 3}
    assert min(seconds.values()) > 60  # each tied point about a third of the time
    assert all(top_k(scores, 2, rng=rng(s))[0] == 0 for s in range(20))


def test_top_k_rejects_nan_and_bad_k() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([1.0, np.nan]), 1, rng=rng())
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k(np.array([1.0]), 0, rng=rng())


# --------------------------------------------------------------------------- random


def test_random_unique_and_reproducible() -> None:
    a = select_random(50, 15, rng=rng(1))
    assert_valid(a, 50, 15)
    np.testing.assert_array_equal(a, select_random(50, 15, rng=rng(1)))
    assert not np.array_equal(a, select_random(50, 15, rng=rng(2)))


def test_random_is_uniform() -> None:
    gen = rng(11)
    n, batch, draws = 10, 3, 5000
    counts = np.bincount(
        np.concatenate([select_random(n, batch, rng=gen) for _ in range(draws)]), minlength=n
    )
    assert counts.sum() == batch * draws
    assert chisquare(counts).pvalue > 1e-3


# --------------------------------------------------------------------------- uncertainty


def test_uncertainty_picks_known_top_b() -> None:
    variance = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.8, 0.0, 0.4, 0.7])
    assert select_uncertainty(variance, 3, rng=rng()).tolist() == [3, 5, 8]


def test_uncertainty_ties_each_point_chosen() -> None:
    variance = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    picks = [frozenset(select_uncertainty(variance, 2, rng=rng(s)).tolist()) for s in range(200)]
    assert all(p <= {0, 1, 2} for p in picks)
    assert set().union(*picks) == {0, 1, 2}
    assert len(set(picks)) == 3  # every pair of the tied points occurs
    np.testing.assert_array_equal(
        select_uncertainty(variance, 2, rng=rng(5)), select_uncertainty(variance, 2, rng=rng(5))
    )


def test_uncertainty_length_mismatch_in_context() -> None:
    with pytest.raises(ValueError, match=r"shape \(9,\).*got shape \(4,\)"):
        QueryContext(LINE_CANDIDATES, LINE_LABELLED, np.ones(4), 3, rng())


# --------------------------------------------------------------------------- hybrid


def test_hybrid_constant_variance_picks_farthest() -> None:
    picks = select_hybrid(LINE_CANDIDATES, LINE_LABELLED, np.ones(9), 3, rng=rng())
    assert picks.tolist() == [8, 7, 6]  # the points 9, 8, 7


def test_hybrid_mixes_uncertainty_and_distance() -> None:
    # Candidates 1, 2, 3; labelled 0. U_norm = [1, 0, .5], D_norm = [0, .5, 1].
    # alpha = .6 -> scores [.6, .2, .7]; alpha = 1 -> pure uncertainty.
    X_c = np.array([[1.0], [2.0], [3.0]])
    variance = np.array([1.0, 0.0, 0.5])
    assert select_hybrid(X_c, LINE_LABELLED, variance, 2, rng=rng()).tolist() == [2, 0]
    assert select_hybrid(X_c, LINE_LABELLED, variance, 2, rng=rng(), alpha=1.0).tolist() == [0, 2]
    assert select_hybrid(X_c, LINE_LABELLED, variance, 2, rng=rng(), alpha=0.0).tolist() == [2, 1]


def test_hybrid_rejects_bad_alpha_and_shapes() -> None:
    with pytest.raises(ValueError, match="alpha"):
        select_hybrid(LINE_CANDIDATES, LINE_LABELLED, np.ones(9), 3, rng=rng(), alpha=1.5)
    with pytest.raises(ValueError, match=r"\(9, 1\).*\(1, 2\)"):
        select_hybrid(LINE_CANDIDATES, np.zeros((1, 2)), np.ones(9), 3, rng=rng())


# --------------------------------------------------------------------------- diversity

# Three well-separated clusters in 2-D; the candidate nearest each cluster mean, by hand:
#   A = {(0,0), (1,0), (2,0), (0,1)}         mean (0.75, 0.25)  -> nearest (1, 0)
#   B = 3x3 grid around (20,20) + (23,20)    mean (20.3, 20)    -> nearest (20, 20)
#   C = {(0,20), (0,21), (0,22)}             mean (0, 21)       -> nearest (0, 21)
CLUSTER_A = [(0, 0), (1, 0), (2, 0), (0, 1)]
CLUSTER_B = [(20 + i, 20 + j) for i in (-1, 0, 1) for j in (-1, 0, 1)] + [(23, 20)]
CLUSTER_C = [(0, 20), (0, 21), (0, 22)]
POINTS = CLUSTER_A + CLUSTER_B + CLUSTER_C
ORDER = np.random.default_rng(123).permutation(len(POINTS))  # shuffle the positions
CLUSTERS = np.array([POINTS[i] for i in ORDER], dtype=float)


def position_of(point: tuple[int, int]) -> int:
    return int(np.flatnonzero((CLUSTERS == point).all(axis=1))[0])


def test_diversity_two_clusters_one_each() -> None:
    X_c = np.array(CLUSTER_A + CLUSTER_C, dtype=float)
    for seed in range(5):
        picks = select_diversity(X_c, np.empty((0, 2)), 2, rng=rng(seed))
        assert sorted(picks.tolist()) == [1, 5]  # (1, 0) and (0, 21)


@pytest.mark.parametrize("seed", range(5))
def test_diversity_three_clusters_picks_nearest_to_centres(seed: int) -> None:
    far_labelled = np.array([[-50.0, -50.0]])
    picks = select_diversity(CLUSTERS, far_labelled, 3, rng=rng(seed))
    expected = {position_of((1, 0)), position_of((20, 20)), position_of((0, 21))}
    assert set(picks.tolist()) == expected


def test_diversity_refines_pick_on_labelled_point() -> None:
    # (20,20) is nearest B's centre but is labelled: replace it by the candidate farthest
    # from {(20,20), (1,0), (0,21)}, which is (23,20) at distance 3 (all others <= sqrt 2).
    labelled = np.array([[20.0, 20.0]])
    for seed in range(5):
        picks = select_diversity(CLUSTERS, labelled, 3, rng=rng(seed))
        expected = {position_of((1, 0)), position_of((23, 20)), position_of((0, 21))}
        assert set(picks.tolist()) == expected


def test_farthest_point_refinement_replaces_duplicate_pick() -> None:
    # Candidates 1, 2, 4, 7, 11, 16 on a line, labelled 0; initial picks [0, 0, 5].
    # Kept: points 1 and 16; distances to {0, 1, 16}: 2 -> 1, 4 -> 3, 7 -> 6, 11 -> 5,
    # so the repeated slot becomes point 7 (position 3).
    X_c = np.array([[1.0], [2.0], [4.0], [7.0], [11.0], [16.0]])
    got = _farthest_point_refinement(X_c, LINE_LABELLED, [0, 0, 5], tol=1e-6, rng=rng())
    assert got.tolist() == [0, 3, 5]


def test_farthest_point_refinement_respects_tol() -> None:
    # With tol = 1.5 the pick at point 1 is too close to the labelled 0; the refinement
    # takes the farthest from {0, 16}: 1 -> 1, 2 -> 2, 4 -> 4, 7 -> 7, 11 -> 5 -> point 7.
    X_c = np.array([[1.0], [2.0], [4.0], [7.0], [11.0], [16.0]])
    got = _farthest_point_refinement(X_c, LINE_LABELLED, [0, 5], tol=1.5, rng=rng())
    assert got.tolist() == [3, 5]


def test_diversity_repeated_rows_still_unique() -> None:
    X_c = np.array([[0.0, 0.0]] * 3 + [[5.0, 5.0]] * 3 + [[10.0, 0.0]] * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the k-means convergence warning is handled inside
        picks = select_diversity(X_c, np.empty((0, 2)), 5, rng=rng(4))
    assert_valid(picks, 8, 5)
    assert {tuple(row) for row in X_c[picks]} == {(0.0, 0.0), (5.0, 5.0), (10.0, 0.0)}


def test_diversity_reproducible_for_rng_state() -> None:
    X_c = rng(9).normal(size=(60, 3))
    X_l = rng(10).normal(size=(5, 3))
    a = select_diversity(X_c, X_l, 7, rng=rng(42))
    np.testing.assert_array_equal(a, select_diversity(X_c, X_l, 7, rng=rng(42)))
    assert_valid(a, 60, 7)


# --------------------------------------------------------------------------- edge cases


def test_fewer_candidates_than_batch_returns_all() -> None:
    X_c = LINE_CANDIDATES[:4]
    variance = np.array([0.3, 0.1, 0.4, 0.2])
    assert sorted(select_random(4, 10, rng=rng()).tolist()) == [0, 1, 2, 3]
    assert select_uncertainty(variance, 10, rng=rng()).tolist() == [2, 0, 3, 1]
    assert select_diversity(X_c, LINE_LABELLED, 10, rng=rng()).tolist() == [0, 1, 2, 3]
    hybrid = select_hybrid(X_c, LINE_LABELLED, variance, 10, rng=rng())
    assert sorted(hybrid.tolist()) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "call",
    [
        lambda b: select_random(9, b, rng=rng()),
        lambda b: select_uncertainty(np.ones(9), b, rng=rng()),
        lambda b: select_diversity(LINE_CANDIDATES, LINE_LABELLED, b, rng=rng()),
        lambda b: select_hybrid(LINE_CANDIDATES, LINE_LABELLED, np.ones(9), b, rng=rng()),
        lambda b: QueryContext(LINE_CANDIDATES, LINE_LABELLED, None, b, rng()),
    ],
    ids=["random", "uncertainty", "diversity", "hybrid", "context"],
)
def test_batch_size_zero_raises(call: Callable[[int], object]) -> None:
    with pytest.raises(ValueError, match=r"batch(_size)? must be >= 1"):
        call(0)


# --------------------------------------------------------------------------- registry


def test_registry_has_the_four_strategies() -> None:
    assert {"random", "uncertainty", "diversity", "hybrid"} <= set(STRATEGIES)
    assert needs_variance("uncertainty") and needs_variance("hybrid")
    assert not needs_variance("random") and not needs_variance("diversity")


@pytest.mark.parametrize("name", ["uncertainty", "hybrid"])
def test_variance_none_raises(name: str) -> None:
    ctx = QueryContext(LINE_CANDIDATES, LINE_LABELLED, None, 3, rng())
    with pytest.raises(ValueError, match="variance is None"):
        get_strategy(name)(ctx)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="'diversity'.*'hybrid'.*'random'.*'uncertainty'"):
        get_strategy("nope")
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        needs_variance("nope")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("n_candidates", [3, 40])
def test_every_strategy_returns_valid_positions(name: str, n_candidates: int) -> None:
    gen = rng(21)
    ctx = QueryContext(
        X_candidates=gen.normal(size=(n_candidates, 4)),
        X_labelled=gen.normal(size=(6, 4)),
        variance=gen.random(n_candidates),
        batch=5,
        rng=rng(0),
        hull=HullInputs(-gen.random(n_candidates), 0.1 + gen.random(n_candidates), -gen.random(n_candidates)),
    )
    assert_valid(get_strategy(name)(ctx), n_candidates, 5)


def test_registry_matches_direct_calls() -> None:
    variance = np.linspace(0.0, 1.0, 9)[::-1].copy()
    ctx = QueryContext(LINE_CANDIDATES, LINE_LABELLED, variance, 3, rng(1))
    assert get_strategy("uncertainty")(ctx).tolist() == [0, 1, 2]
    ctx = QueryContext(LINE_CANDIDATES, LINE_LABELLED, np.ones(9), 3, rng(1))
    assert get_strategy("hybrid")(ctx).tolist() == [8, 7, 6]


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register strategies without leaking them into other tests."""
    monkeypatch.setattr(strategies_module, "STRATEGIES", dict(strategies_module.STRATEGIES))
    needs = set(strategies_module._NEEDS_VARIANCE)
    monkeypatch.setattr(strategies_module, "_NEEDS_VARIANCE", needs)


@pytest.mark.usefixtures("scratch_registry")
def test_register_strategy_extends_and_checks() -> None:
    register_strategy("first", lambda ctx: np.arange(ctx.batch), needs_variance=True)
    assert needs_variance("first")
    ctx = QueryContext(LINE_CANDIDATES, LINE_LABELLED, None, 2, rng())
    with pytest.raises(ValueError, match="'first' needs the ensemble variance"):
        get_strategy("first")(ctx)
    ctx = QueryContext(LINE_CANDIDATES, LINE_LABELLED, np.ones(9), 2, rng())
    assert get_strategy("first")(ctx).tolist() == [0, 1]
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("first", lambda ctx: np.arange(2))
    register_strategy("broken", lambda ctx: np.zeros(ctx.batch, dtype=int))
    with pytest.raises(RuntimeError, match="repeated positions"):
        get_strategy("broken")(ctx)


def test_strategies_leave_global_numpy_rng_alone() -> None:
    before = np.random.get_state()[1].copy()
    n = len(CLUSTERS)
    ctx = QueryContext(CLUSTERS, np.array([[20.0, 20.0]]), np.ones(n), 3, rng(),
                       hull=HullInputs(-np.linspace(0, 1, n), np.full(n, 0.1), np.full(n, -0.5)))
    for name in STRATEGIES:
        get_strategy(name)(ctx)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_every_strategy_of_both_tracks_is_described_in_one_line():
    from alhelpers.atomistic.config import METHODS
    from alhelpers.select import STRATEGIES, describe_strategy, strategy_table

    names = sorted(set(STRATEGIES) | set(METHODS))
    words = {n: describe_strategy(n) for n in names}
    assert all(w and "\n" not in w for w in words.values())
    assert words["random"] == "uniformly at random from the pool: the baseline"
    assert words["maxdet-gp-ll"].startswith("MAXDET on the GP posterior of last-layer gradient features: ")
    assert words["lcmd-feat-rp"].startswith("LCMD on random projections of the full parameter gradient: ")
    assert words["maxdiag-qbc-f"].startswith("MAXDIAG on the committee's spread of forces: ")
    assert len(set(words.values())) == len(names) - 0  # no two strategies read the same
    table = strategy_table(["random", "lcmd-feat-ll", "my-own"]).splitlines()
    assert table[:2] == ["| strategy | what it labels next |", "|---|---|"] and len(table) == 5
    assert table[4] == "| `my-own` | a strategy registered in this session (no description) |"
