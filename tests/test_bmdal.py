"""BMDAL parts (STUDY §7): hand-checked selections, feature maps, and equivalence with bmdal_reg."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alhelpers.formation.models import EnsembleConfig, EnsembleRegressor
from alhelpers.select import (
    BMDAL_METHODS,
    STRATEGIES,
    GradientSketch,
    QueryContext,
    get_strategy,
    gp_posterior_matrix,
    lcmd,
    ll_features,
    maxdet,
    maxdiag,
    maxdist,
    needs_variance,
    parse_method,
    rp_features,
)
from alhelpers.select.features import default_sigma2, full_gradient_features, mlp_layer_terms

CPU = "cpu"


# --------------------------------------------------------------------------- hand-checked rules


def test_maxdist_on_a_line() -> None:
    # labelled 0; pool 1..9. First the farthest (9); then 4 and 5 tie at distance 4 -> lowest
    # position (4); then 2, 6, 7 tie at distance 2 -> 2.
    pool = np.arange(1.0, 10.0).reshape(-1, 1)
    picks = maxdist(pool, np.array([[0.0]]), 3, device=CPU)
    np.testing.assert_array_equal(pool[picks, 0], [9.0, 4.0, 2.0])


def test_maxdist_without_training_starts_with_largest_norm() -> None:
    pool = np.array([[1.0], [-3.0], [2.0]])
    np.testing.assert_array_equal(maxdist(pool, None, 2, device=CPU), [1, 2])


def test_lcmd_on_a_line() -> None:
    # labelled 0; pool 1, 2, 3, 10, 11, 12. One cluster -> its farthest member 12. Then cluster 0
    # holds 1, 2, 3 (size 1+4+9 = 14) > cluster 12 (10, 11: 4+1 = 5) -> 3. Then cluster 0 = {1}
    # (1), cluster 3 = {2} (1), cluster 12 = 5 -> 10.
    pool = np.array([[1.0], [2.0], [3.0], [10.0], [11.0], [12.0]])
    picks = lcmd(pool, np.array([[0.0]]), 3, device=CPU)
    np.testing.assert_array_equal(pool[picks, 0], [12.0, 3.0, 10.0])


def test_maxdet_on_a_grid() -> None:
    # diag 4, 1, 2, 0.25 -> [2,0,0]; residuals then 1, 1, 0.25 -> tie, lowest position [0,1,0];
    # then [1,1,0] has residual 0 and [0,0,.5] 0.25 -> [0,0,.5].
    pool = np.array([[2.0, 0, 0], [0, 1.0, 0], [1.0, 1.0, 0], [0, 0, 0.5]])
    np.testing.assert_array_equal(maxdet(pool, 3, device=CPU), [0, 1, 3])
    # batch larger than the rank: the rest is filled by the largest k(x, x)
    np.testing.assert_array_equal(maxdet(pool, 4, device=CPU), [0, 1, 3, 2])


def test_maxdiag_ties_random_or_lowest() -> None:
    diag = np.array([1.0, 3.0, 3.0, 0.5])
    np.testing.assert_array_equal(maxdiag(diag, 2), [1, 2])
    seen = {tuple(maxdiag(diag, 1, rng=np.random.default_rng(s))) for s in range(20)}
    assert seen == {(1,), (2,)}


def test_rules_validate() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        maxdist(np.ones((3, 2)), None, 0)
    with pytest.raises(ValueError, match="width"):
        lcmd(np.ones((3, 2)), np.ones((2, 3)), 1)
    with pytest.raises(ValueError, match="rows"):
        maxdet(np.ones((3, 2)), 1, transform=np.eye(3))


def test_batch_larger_than_pool() -> None:
    pool = np.random.default_rng(0).standard_normal((5, 3))
    for picks in (maxdist(pool, pool[:2], 9, device=CPU), lcmd(pool, pool[:2], 9, device=CPU),
                  maxdet(pool, 9, device=CPU)):
        assert sorted(picks.tolist()) == list(range(5))


# --------------------------------------------------------------------------- GP transform


def test_gp_posterior_is_the_gp_posterior_covariance() -> None:
    g = np.random.default_rng(1)
    phi_t, phi = g.standard_normal((7, 4)), g.standard_normal((5, 4))
    s2 = default_sigma2(phi_t)
    assert s2 == pytest.approx(np.trace(phi_t.T @ phi_t) / (7 * 4))
    psi = phi @ gp_posterior_matrix(phi_t).numpy()
    # kernel-space formula: k(x,x') - k(x,T) (K_TT + s2 I)^-1 k(T,x')
    K, k_xt, K_tt = phi @ phi.T, phi @ phi_t.T, phi_t @ phi_t.T
    post = K - k_xt @ np.linalg.solve(K_tt + s2 * np.eye(7), k_xt.T)
    np.testing.assert_allclose(psi @ psi.T, post, atol=1e-12)


# --------------------------------------------------------------------------- feature maps


@pytest.fixture(scope="module")
def tiny_model() -> tuple[EnsembleRegressor, np.ndarray]:
    g = np.random.default_rng(0)
    X = g.standard_normal((40, 3))
    y = X[:, 0] - X[:, 1] ** 2
    model = EnsembleRegressor(EnsembleConfig(n_members=2, hidden=(5, 4), epochs=30, device="cpu"), seed=0)
    return model.fit(X, y), X


def _autograd_gradient(model: EnsembleRegressor, x_row: np.ndarray, member: int) -> list[torch.Tensor]:
    x = torch.as_tensor(model.transform_inputs(x_row[None]), dtype=torch.float64)
    ws = [w[member].double().clone().requires_grad_(True) for w in model.weights_]
    bs = [b[member].double().clone().requires_grad_(True) for b in model.biases_]
    out = EnsembleRegressor._forward(x, [w[None] for w in ws], [b[None] for b in bs])
    grads = torch.autograd.grad(out.sum(), [*ws, *bs])
    return list(grads)


def test_ll_features_equal_autograd_last_layer_gradient(tiny_model) -> None:
    model, X = tiny_model
    feats = ll_features(model, X[:6], member=1)
    for i in range(6):
        grads = _autograd_gradient(model, X[i], member=1)
        n_layers = len(model.weights_)
        gw, gb = grads[n_layers - 1], grads[2 * n_layers - 1]
        np.testing.assert_allclose(feats[i], np.concatenate([gw[:, 0].numpy(), gb[0].numpy()]), rtol=1e-6)
    # ensemble mean: members side by side / M
    both = ll_features(model, X[:6])
    np.testing.assert_allclose(both[:, feats.shape[1]:], feats / 2, rtol=1e-12)


def test_full_gradient_features_equal_autograd(tiny_model) -> None:
    model, X = tiny_model
    full = full_gradient_features(model, X[:4], member=0)
    for i in range(4):
        grads = _autograd_gradient(model, X[i], member=0)
        n = len(model.weights_)
        expect = np.concatenate([t.numpy().ravel() for pair in zip(grads[:n], grads[n:]) for t in pair])
        np.testing.assert_allclose(full[i], expect, rtol=1e-6, atol=1e-12)


def test_rp_kernel_is_unbiased(tiny_model) -> None:
    model, X = tiny_model
    exact = full_gradient_features(model, X[:5], member=0)
    K = exact @ exact.T
    kernels = np.stack([(f := rp_features(model, X[:5], p=8, seed=s, member=0)) @ f.T for s in range(600)])
    mean, se = kernels.mean(0), kernels.std(0, ddof=1) / np.sqrt(len(kernels))
    assert np.all(np.abs(mean - K) <= 4.5 * se + 1e-9), np.max(np.abs(mean - K) / (se + 1e-12))
    # seeded: same seed, same features; different seed, different features
    a, b = rp_features(model, X[:5], seed=3), rp_features(model, X[:5], seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, rp_features(model, X[:5], seed=4))


def test_sketch_sums_over_atoms_with_shared_matrices() -> None:
    g = torch.Generator().manual_seed(0)
    w = [torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(4, 1, generator=g, dtype=torch.float64)]
    b = [torch.randn(4, generator=g, dtype=torch.float64), torch.randn(1, generator=g, dtype=torch.float64)]
    atoms = torch.randn(5, 3, generator=g, dtype=torch.float64)
    segments = torch.tensor([0, 0, 1, 1, 1])
    inputs, sens = mlp_layer_terms(atoms, w, b)
    sk = GradientSketch([3, 4, 1], p=16, seed=7)
    per_atom = sk.sketch(inputs, sens)
    summed = sk.sketch(inputs, sens, segments=segments, n_segments=2)
    torch.testing.assert_close(summed, torch.stack([per_atom[:2].sum(0), per_atom[2:].sum(0)]))


# --------------------------------------------------------------------------- Track A strategies


def test_all_methods_registered_and_named() -> None:
    for name in BMDAL_METHODS:
        assert name in STRATEGIES
        parse_method(name)
    assert STRATEGIES["maxdiag-qbc"] is STRATEGIES["uncertainty"] and needs_variance("maxdiag-qbc")
    for bad in ("lcmd-qbc", "maxdist-foo", "nope-feat-ll"):
        with pytest.raises(ValueError):
            parse_method(bad)


@pytest.mark.parametrize("name", [n for n in BMDAL_METHODS if n != "maxdiag-qbc"])
def test_strategies_valid_and_seeded(name: str, tiny_model) -> None:
    model, X = tiny_model
    scaler = model.scaler_

    def ctx(seed: int) -> QueryContext:
        return QueryContext(X_candidates=scaler.transform(X[10:]), X_labelled=scaler.transform(X[:10]),
                            variance=None, batch=6, rng=np.random.default_rng(seed), model=model)

    c = ctx(0)
    picks = get_strategy(name)(c)
    assert len(set(picks.tolist())) == 6 and picks.min() >= 0 and picks.max() < 30
    np.testing.assert_array_equal(picks, get_strategy(name)(ctx(0)))
    if "feat" in name or "gp" in name:
        assert c.timings["feature_s"] > 0


# --------------------------------------------------------------------------- equivalence with bmdal_reg


def _bmdal(method: str, pool: np.ndarray, train: np.ndarray, batch: int, tfms: list) -> np.ndarray:
    pytest.importorskip("bmdal_reg")
    if not hasattr(np, "Inf"):
        np.Inf = np.inf  # bmdal_reg 3.0.2 uses np.Inf, removed in NumPy 2
    from bmdal_reg.bmdal.algorithms import select_batch
    from bmdal_reg.bmdal.feature_data import TensorFeatureData

    data = {"train": TensorFeatureData(torch.as_tensor(train)), "pool": TensorFeatureData(torch.as_tensor(pool))}
    idx, _ = select_batch(batch, [None], data, None, "linear", tfms, method, verbosity=0)
    return idx.numpy()


def _assert_same_as_bmdal(pool: np.ndarray, train: np.ndarray, batch: int, chunk_rows: int = 8192,
                          bf16_bounds: bool | None = None) -> None:
    kw = dict(device=CPU, chunk_rows=chunk_rows)
    b16 = dict(kw, bf16_bounds=bf16_bounds)
    for method, ours in (("maxdist", maxdist(pool, train, batch, **b16)), ("lcmd", lcmd(pool, train, batch, **b16))):
        ref = _bmdal(method, pool, train, batch, [])
        assert set(ours.tolist()) == set(ref.tolist()), method
        np.testing.assert_array_equal(ours, ref)  # the same order, too
    sigma = default_sigma2(train) ** 0.5
    ours = maxdet(pool, batch, transform=gp_posterior_matrix(train), **kw)
    ref = _bmdal("maxdet", pool, train, batch, [("train", [sigma])])
    assert set(ours.tolist()) == set(ref.tolist()), "maxdet"


@pytest.mark.parametrize(("chunk_rows", "bf16_bounds"), [(8192, False), (37, False), (8192, True), (37, True)])
def test_same_as_bmdal_on_gaussian_features(chunk_rows: int, bf16_bounds: bool) -> None:
    g = np.random.default_rng(42)
    _assert_same_as_bmdal(g.standard_normal((600, 48)), g.standard_normal((60, 48)), 40, chunk_rows, bf16_bounds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bf16_bounds_change_nothing(dtype) -> None:
    # the bf16 product only gives rigorous bounds: the picks equal the full-precision ones
    g = np.random.default_rng(7)
    pool, train = g.standard_normal((2000, 64)).astype(dtype), g.standard_normal((150, 64)).astype(dtype)
    for rule in (maxdist, lcmd):
        np.testing.assert_array_equal(rule(pool, train, 30, device=CPU, bf16_bounds=True),
                                      rule(pool, train, 30, device=CPU, bf16_bounds=False))


def test_same_as_bmdal_on_clustered_features() -> None:
    # well-separated blobs: LCMD's triangle-inequality pruning is exercised
    g = np.random.default_rng(3)
    centres = 10 * g.standard_normal((12, 40))
    pts = centres[g.integers(0, 12, 800)] + g.standard_normal((800, 40))
    stats: dict = {}
    lcmd(pts[100:], pts[:100], 30, device=CPU, stats=stats)
    assert stats["n_recomputed"] < 700 * 30 / 2
    _assert_same_as_bmdal(pts[100:], pts[:100], 30)


def test_same_as_bmdal_on_real_descriptors() -> None:
    from alhelpers.data import fetch_system
    from alhelpers.formation.features import featurize

    fs = featurize(fetch_system("snapshot", "C")[0], "magpie")
    X = np.asarray(fs.X, dtype=np.float64)
    X = X[:, X.std(0) > 0]
    X = (X - X.mean(0)) / X.std(0)
    perm = np.random.default_rng(0).permutation(len(X))
    _assert_same_as_bmdal(X[perm[80:]], X[perm[:80]], 30)
    _assert_same_as_bmdal(X[perm[80:]], X[perm[:80]], 30, bf16_bounds=True)


def test_lcmd_and_maxdist_never_repeat_when_pool_points_duplicate_training_points():
    """Found on real Ti–O data: polymorphs share a composition, so their descriptors (and
    gradient features) coincide; once every unselected point sits on a centre, all clusters have
    size ~0 (rounding) and the pick must still be a new point, never a repeat."""
    from alhelpers.select.rules import lcmd, maxdist

    rng = np.random.default_rng(0)
    train = rng.normal(size=(3, 4))
    uniq = rng.normal(size=(2, 4))
    pool = np.vstack([train[rng.integers(0, 3, size=4)], uniq, uniq])  # 8 points, 6 duplicates
    for rule in (lcmd, maxdist):
        picks = rule(pool, train, len(pool))
        assert sorted(picks.tolist()) == list(range(len(pool))), rule.__name__
        assert set(picks[:2].tolist()) <= {4, 5, 6, 7}  # the points off the training set come first


def test_lazy_front_breaks_exact_ties_by_lowest_position(monkeypatch) -> None:
    """Integer points (distances exact in float64) with every point present three times: the
    lazy greedy with a small front must take, among exactly tied leaders, the lowest position, as
    a dense running-minimum argmax does."""
    import alhelpers.select.engine as E
    import alhelpers.select.rules as R

    monkeypatch.setattr(E, "FRONT_ROWS", 64)
    g = np.random.default_rng(5)
    base = g.integers(-6, 7, size=(400, 3)).astype(np.float64)
    pool = base[g.permutation(np.repeat(np.arange(400), 3))]
    train = g.integers(-6, 7, size=(5, 3)).astype(np.float64)
    min_sq = ((pool[:, None, :] - train[None]) ** 2).sum(-1).min(1)
    ref = []
    for _ in range(40):
        i = int(np.argmax(min_sq))
        ref.append(i)
        min_sq = np.minimum(min_sq, ((pool - pool[i]) ** 2).sum(1))
        min_sq[i] = -np.inf
    np.testing.assert_array_equal(R.maxdist(pool, train, 40, device=CPU), ref)


@pytest.mark.parametrize("front_rows", [64, 4096])
def test_lazy_greedy_ends_on_ties_wider_than_its_front(monkeypatch, front_rows: int) -> None:
    """±unit vectors: every point ties with every other at each step (distance 1 to the training
    point at the origin; residual variance 1 until its opposite is taken, then 0). With a front
    smaller than the tie the lazy greedy must still end, taking the lowest positions in order
    (this used to loop for ever)."""
    import alhelpers.select.engine as E
    import alhelpers.select.rules as R

    monkeypatch.setattr(E, "FRONT_ROWS", front_rows)
    d = 100
    pool = np.vstack([np.eye(d), -np.eye(d)])
    np.testing.assert_array_equal(R.maxdist(pool, np.zeros((1, d)), 150, device=CPU), np.arange(150))
    # MAXDET: e_0 … e_99 (each leaves its opposite at 0), then the rest by prior variance
    np.testing.assert_array_equal(R.maxdet(pool, 150, device=CPU), np.arange(150))


@pytest.mark.parametrize("front_rows", [64, 4096])
def test_lazy_front_and_lcmd_cache_change_no_pick(monkeypatch, front_rows: int) -> None:
    """The lazy-greedy front (rebuilt when rows outside it compete) and LCMD's speculative
    distance columns are exact shortcuts: the picks equal those without them and bmdal_reg's."""
    import alhelpers.select.engine as E
    import alhelpers.select.rules as R

    monkeypatch.setattr(E, "FRONT_ROWS", front_rows)
    g = np.random.default_rng(11)
    centres = g.standard_normal((40, 64))  # overlapping blobs: full passes, and guesses that hit
    pts = centres[g.integers(0, 40, 2600)] + g.standard_normal((2600, 64))
    pool, train = pts[100:], pts[:100]
    stats: dict = {}
    picks = R.lcmd(pool, train, 60, device=CPU, stats=stats)
    np.testing.assert_array_equal(picks, R.lcmd(pool, train, 60, device=CPU, speculate=1))
    np.testing.assert_array_equal(picks, _bmdal("lcmd", pool, train, 60, []))
    assert stats["n_cache_hits"] > 0
    # the same from the bf16 shadow (bounded columns, exact recheck of the undecided rows)
    st16: dict = {}
    for f32 in (np.float64, np.float32):
        np.testing.assert_array_equal(
            R.lcmd(pool.astype(f32), train.astype(f32), 60, device=CPU, bf16_bounds=True, stats=st16), picks)
        assert st16["n_cache_hits"] > 0 and st16["n_full_passes"] > 0
    for rule in (R.maxdist, R.lcmd):
        np.testing.assert_array_equal(rule(pool, train, 60, device=CPU), _bmdal(rule.__name__, pool, train, 60, []))
    sigma = default_sigma2(train) ** 0.5
    ref = np.sort(_bmdal("maxdet", pool, train, 60, [("train", [sigma])]))
    A = gp_posterior_matrix(train)
    st: dict = {}
    ours = R.maxdet(pool, 60, transform=A, device=CPU, stats=st, refresh_every=None, pass_on_rebuild=None)
    assert (st["n_fronts"] > 1) == (front_rows < len(pool))
    assert st["n_full_passes"] == 0  # no passes
    np.testing.assert_array_equal(np.sort(ours), ref)
    # a full pass every 7 picks brings every row up to date: the same picks
    st = {}
    np.testing.assert_array_equal(
        R.maxdet(pool, 60, transform=A, device=CPU, stats=st, refresh_every=7, pass_on_rebuild=None), ours)
    assert st["n_full_passes"] == 60 // 7
    # a pass in place of each front rebuild (the default, after >= 16 picks): the same picks
    st = {}
    np.testing.assert_array_equal(
        R.maxdet(pool, 60, transform=A, device=CPU, stats=st, refresh_every=None, pass_on_rebuild=4), ours)
    assert (st["n_full_passes"] > 0) == (front_rows < len(pool))
    # passes that apply only a multiple of 16 picks (23 since the last: 16, 7 left to the lazy
    # refresh): the same picks
    st = {}
    np.testing.assert_array_equal(
        R.maxdet(pool, 60, transform=A, device=CPU, stats=st, refresh_every=23, pass_on_rebuild=None,
                 pass_multiple=16), ours)
    assert st["n_full_passes"] == 3  # after 23, 39 and 55 picks, through 16, 32 and 48
    # float32 (on a CPU the passes run through oneDNN's fp32 kernel): the same set
    f32 = R.maxdet(pool.astype(np.float32), 60, transform=A, device=CPU, refresh_every=7)
    np.testing.assert_array_equal(np.sort(f32), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_thin_products_equal_the_plain_product(dtype) -> None:
    """The pass products (oneDNN's fp32 kernel, or a stride-0 batch of small MKL products) equal
    ``X @ W.T`` to the dtype's accuracy, for widths on and off the fast sizes."""
    import alhelpers.select.engine as E

    g = torch.Generator().manual_seed(3)
    X = torch.randn(5003, 96, generator=g, dtype=dtype)
    for k in (1, 32, 33, 64):
        W = torch.randn(k, 96, generator=g, dtype=dtype)
        ref = X.double() @ W.double().T
        got = E.thin_mm(X, W, X.new_empty(5003, k)).double()
        scale = float((X.double().abs() @ W.double().abs().T).max())
        assert float((got - ref).abs().max()) <= 96 * torch.finfo(dtype).eps * scale


def test_triangular_transform_norms_equal_the_full_product() -> None:
    """``‖x A‖²`` with an upper-triangular ``A`` (as the GP posterior matrix is) skips its zero
    blocks; the values equal the full product's."""
    import alhelpers.select.engine as E

    g = np.random.default_rng(5)
    X = torch.as_tensor(g.standard_normal((700, 300)))
    A = torch.as_tensor(np.triu(g.standard_normal((300, 300))))
    full = ((X @ A) ** 2).sum(1)
    np.testing.assert_allclose(E.sq_norms(X, 128, A).numpy(), full.numpy(), rtol=1e-12)
    A[5, 2] = 1.0  # not triangular: the plain product
    np.testing.assert_allclose(E.sq_norms(X, 128, A).numpy(), ((X @ A) ** 2).sum(1).numpy(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bf16_shadow_bounds_hold_and_decide_the_nearest_training_row(dtype) -> None:
    """The bf16 shadow's error bound covers every product (rows of very different scales
    included), and the nearest training rows from it equal the full-precision ones."""
    import alhelpers.select.distances as D

    g = torch.Generator().manual_seed(0)
    X = torch.randn(3000, 96, generator=g, dtype=dtype) * torch.logspace(-3, 3, 3000, dtype=dtype)[:, None]
    T = torch.randn(150, 96, generator=g, dtype=dtype)
    sh = D.Bf16Shadow(X, 512)
    Cb, cnorm, beta = sh.columns(T)
    m = (sh.Xb @ Cb).to(dtype)  # (N, n_t) bf16 products
    exact = X.double() @ T.double().T
    bound = D.SAFETY * (sh.norm[:, None] * beta[None] + sh.err[:, None] * cnorm[None]
                        + D.U_BF16 * (1 + 2 * D.U_BF16) * m.abs())
    assert bool(((exact - m.double()).abs() <= bound.double()).all())
    Xn = torch.randn(3000, 96, generator=g, dtype=dtype)
    sqn = (Xn * Xn).sum(1)
    ref_sq, ref_arg = D.nearest_train(Xn, sqn, T, 700)
    sq, arg = D.train_bounds_bf16(D.Bf16Shadow(Xn, 700), Xn, sqn, T, 700, exact=True)
    np.testing.assert_array_equal(arg.numpy(), ref_arg.numpy())
    np.testing.assert_allclose(sq.numpy(), ref_sq.numpy(), rtol=1e-5 if dtype == torch.float32 else 1e-12)
    ub, _ = D.train_bounds_bf16(D.Bf16Shadow(Xn, 700), Xn, sqn, T, 700, exact=False)
    assert bool((ub >= ref_sq).all())


def test_lcmd_guesses_the_whole_batch_on_isotropic_features() -> None:
    """On N(0, 1) features new centres capture almost nothing, so the no-capture simulation in
    ``speculative_centres`` predicts every later pick: one pass over the pool serves the batch."""
    import alhelpers.select.rules as R

    g = np.random.default_rng(1)
    pool, train = g.standard_normal((20000, 64)).astype(np.float32), g.standard_normal((200, 64)).astype(np.float32)
    st: dict = {}
    picks = R.lcmd(pool, train, 60, device=CPU, bf16_bounds=True, stats=st)
    assert st["n_full_passes"] == 1 and st["n_cache_hits"] == 59
    np.testing.assert_array_equal(picks, R.lcmd(pool, train, 60, device=CPU, bf16_bounds=False))
