"""Tests for alhelpers.formation.models (batched deep ensemble, docs/study.md §3)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alhelpers.al.seeding import torch_seed
from alhelpers.formation.models import EnsembleConfig, EnsembleRegressor, fit_ensembles
from alhelpers.select.features import ll_features

# Small, fast configuration (same architecture family as the default).
SMALL = EnsembleConfig(n_members=4, hidden=(32, 32), epochs=100, device="cpu")


def _data(n: int = 40, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth real-valued target with an offset and scale far from (0, 1)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, size=(n, d))
    y = 50.0 + 8.0 * np.sin(X[:, 0]) + 4.0 * X[:, 1] ** 2 - 3.0 * X[:, 2]
    return X, y


@pytest.fixture(scope="module")
def fitted() -> tuple[EnsembleRegressor, np.ndarray, np.ndarray]:
    X, y = _data()
    return EnsembleRegressor(SMALL, seed=7).fit(X, y), X, y


# ----------------------------------------------------------------- predictions
def test_predict_is_member_mean_and_population_variance(fitted) -> None:
    model, X, _ = fitted
    Xq, _ = _data(n=25, seed=1)
    members = model.predict_members(Xq)
    mean, var = model.predict(Xq)
    assert members.shape == (SMALL.n_members, 25)
    assert mean.shape == var.shape == (25,)
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(var, np.var(members, axis=0), rtol=0, atol=1e-12)  # ddof=0
    assert not np.allclose(var, np.var(members, axis=0, ddof=1))
    assert np.all(var >= 0)


def test_batched_forward_equals_per_member_linear(fitted) -> None:
    model, _, _ = fitted
    Xq, _ = _data(n=17, seed=2)
    xs = torch.as_tensor(model.transform_inputs(Xq), dtype=torch.float32)
    ref = []
    for k in range(model.n_members):
        h = xs
        for layer, (w, b) in enumerate(zip(model.weights_, model.biases_)):
            # member k's slice: w[k] is (d_in, d_out), nn.Linear wants (d_out, d_in)
            h = F.linear(h, w[k].T, b[k, 0])
            if layer < len(model.weights_) - 1:
                h = torch.relu(h)
        ref.append(h[:, 0].double().numpy())
    ref = np.stack(ref)
    np.testing.assert_allclose(model.predict_members_standardised(Xq), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        model.predict_members(Xq), ref * model.y_std_ + model.y_mean_, rtol=1e-5, atol=1e-4
    )
    # stacked shapes
    assert [tuple(w.shape) for w in model.weights_] == [(4, 3, 32), (4, 32, 32), (4, 32, 1)]
    assert [tuple(b.shape) for b in model.biases_] == [(4, 1, 32), (4, 1, 32), (4, 1, 1)]


def test_training_together_equals_training_alone() -> None:
    """Member k of the batched ensemble = the same member trained on its own."""
    X, y = _data(n=30)
    cfg3 = EnsembleConfig(n_members=3, hidden=(16, 16), epochs=60, device="cpu")
    cfg1 = EnsembleConfig(n_members=1, hidden=(16, 16), epochs=60, device="cpu")
    together = EnsembleRegressor(cfg3, seed=3).fit(X, y).predict_members_standardised(X)
    alone = EnsembleRegressor(cfg1, seed=3).fit(X, y).predict_members_standardised(X)
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bootstrap", [False, True])
def test_fit_ensembles_equals_separate_fits(bootstrap: bool) -> None:
    """Several ensembles trained as one stacked computation = each fitted on its own."""
    cfg = EnsembleConfig(n_members=2, hidden=(16, 16), epochs=60, bootstrap=bootstrap, device="cpu")
    data = [_data(n=30, seed=0), _data(n=30, seed=1), _data(n=20, seed=2)]  # two sizes -> two groups
    seeds = [4, 5, 4]
    together = fit_ensembles([X for X, _ in data], [y for _, y in data], cfg, seeds=seeds)
    Xq, _ = _data(n=12, seed=9)
    for model, (X, y), seed in zip(together, data, seeds):
        alone = EnsembleRegressor(cfg, seed=seed).fit(X, y)
        assert model.seed == seed and model.n_features_in_ == 3
        np.testing.assert_allclose(model.predict_members(Xq), alone.predict_members(Xq), rtol=1e-4, atol=1e-4)
        if bootstrap:
            np.testing.assert_array_equal(model.bootstrap_indices_, alone.bootstrap_indices_)
    # `into` fills the given regressors; lengths must agree
    regs = [EnsembleRegressor(cfg, seed=s) for s in seeds[:2]]
    out = fit_ensembles([data[0][0], data[1][0]], [data[0][1], data[1][1]], cfg, seeds=seeds[:2], into=regs)
    assert out[0] is regs[0] and out[1] is regs[1] and regs[1].weights_ is not None
    with pytest.raises(ValueError, match="seeds"):
        fit_ensembles([data[0][0]], [data[0][1]], cfg, seeds=[1, 2])


# -------------------------------------------------------- seeds / determinism
def test_members_differ_same_seed_identical_other_seed_differs(fitted) -> None:
    model, X, y = fitted
    Xq, _ = _data(n=20, seed=3)
    members = model.predict_members(Xq)
    for i in range(SMALL.n_members):
        for j in range(i + 1, SMALL.n_members):
            assert not np.allclose(members[i], members[j])
    again = EnsembleRegressor(SMALL, seed=7).fit(X, y)
    np.testing.assert_array_equal(again.predict_members(Xq), members)  # bit-identical
    # refitting the same object starts from scratch (fresh init from the seed)
    again.fit(X[:10, :], y[:10]).fit(X, y)
    np.testing.assert_array_equal(again.predict_members(Xq), members)
    other = EnsembleRegressor(SMALL, seed=8).fit(X, y)
    assert not np.allclose(other.predict_members(Xq), members)


def test_init_matches_nn_linear_default() -> None:
    """Member k's init = nn.Linear's default (kaiming_uniform a=sqrt(5)) drawn from its own generator."""
    model = EnsembleRegressor(EnsembleConfig(n_members=3, hidden=(8, 6), device="cpu"), seed=11)
    weights, biases = model._init_parameters(5)
    for k in range(3):
        g = torch.Generator().manual_seed(torch_seed(11, spawn_key=(0, k)))
        for layer, (fan_in, fan_out) in enumerate([(5, 8), (8, 6), (6, 1)]):
            w = torch.empty(fan_out, fan_in)
            torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
            b = torch.empty(fan_out).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=g)
            torch.testing.assert_close(weights[layer][k], w.T, rtol=0, atol=1e-7)
            torch.testing.assert_close(biases[layer][k, 0], b, rtol=0, atol=1e-7)
    assert not torch.equal(weights[0][0], weights[0][1])


# ------------------------------------------------------------------- learning
def test_learns_a_simple_function_in_target_units() -> None:
    X = np.linspace(-3, 3, 64)[:, None]
    y = 100.0 + 10.0 * np.sin(X[:, 0])
    cfg = EnsembleConfig(n_members=3, hidden=(32, 32), epochs=300, device="cpu")
    model = EnsembleRegressor(cfg, seed=0).fit(X, y)
    mean, var = model.predict(X)
    mse = float(np.mean((mean - y) ** 2))
    assert mse < 0.02 * np.var(y), (mse, np.var(y))
    assert abs(mean.mean() - y.mean()) < 1.0  # target units, not standardised
    assert model.train_loss_ < 0.05  # standardised MSE
    assert model.y_mean_ == pytest.approx(y.mean()) and model.y_std_ == pytest.approx(y.std())
    # predictions at unseen interior points are also close
    Xt = np.array([[-2.05], [0.33], [1.71]])
    np.testing.assert_allclose(model.predict(Xt)[0], 100.0 + 10.0 * np.sin(Xt[:, 0]), atol=1.5)


def test_minibatch_training_is_deterministic_and_learns() -> None:
    X, y = _data(n=48)
    cfg = EnsembleConfig(n_members=2, hidden=(16, 16), epochs=40, batch_size=16, device="cpu")
    a = EnsembleRegressor(cfg, seed=1).fit(X, y)
    b = EnsembleRegressor(cfg, seed=1).fit(X, y)
    np.testing.assert_array_equal(a.predict_members(X), b.predict_members(X))
    assert np.mean((a.predict(X)[0] - y) ** 2) < 0.5 * np.var(y)


# ---------------------------------------------------------------- FEAT(LL)
def test_last_layer_features_equal_autograd_gradient(fitted) -> None:
    model, _, _ = fitted
    Xq, _ = _data(n=6, seed=4)
    H = SMALL.hidden[-1]
    hidden = model.last_hidden(Xq)
    assert hidden.shape == (SMALL.n_members, 6, H)
    assert np.all(hidden >= 0)  # ReLU activations

    xs = torch.as_tensor(model.transform_inputs(Xq), dtype=torch.float32)
    W = model.weights_[-1].clone().requires_grad_(True)  # (M, H, 1) stacked last layer
    B = model.biases_[-1].clone().requires_grad_(True)  # (M, 1, 1)
    h = xs.unsqueeze(0).expand(SMALL.n_members, -1, -1)
    for w, b in zip(model.weights_[:-1], model.biases_[:-1]):
        h = torch.relu(torch.baddbmm(b, h, w))
    out = torch.baddbmm(B, h, W)[..., 0]  # (M, n) standardised outputs
    np.testing.assert_allclose(out.detach().numpy(), model.predict_members_standardised(Xq), atol=1e-5)

    for member in (0, SMALL.n_members - 1):
        feats = ll_features(model, Xq, member=member)  # the one FEAT(LL), float64
        assert feats.shape == (6, H + 1)
        np.testing.assert_allclose(feats[:, :H], hidden[member], rtol=1e-6, atol=1e-6)
        for i in range(6):
            gW, gB = torch.autograd.grad(out[member, i], (W, B), retain_graph=True)
            grad = np.concatenate([gW[member, :, 0].numpy(), gB[member, 0].numpy()])
            np.testing.assert_allclose(feats[i], grad, rtol=1e-6, atol=1e-6)
            others = [k for k in range(SMALL.n_members) if k != member]
            assert torch.all(gW[others] == 0) and torch.all(gB[others] == 0)


# ------------------------------------------------------------------ bootstrap
def test_bootstrap_members_use_different_resamples_deterministically() -> None:
    X, y = _data(n=40)
    cfg = EnsembleConfig(n_members=4, hidden=(32, 32), epochs=150, bootstrap=True, device="cpu")
    a = EnsembleRegressor(cfg, seed=5).fit(X, y)
    idx = a.bootstrap_indices_
    assert idx.shape == (4, 40)
    assert idx.min() >= 0 and idx.max() < 40
    assert all(len(np.unique(row)) < 40 for row in idx)  # drawn with replacement
    assert all(not np.array_equal(idx[i], idx[j]) for i in range(4) for j in range(i + 1, 4))

    b = EnsembleRegressor(cfg, seed=5).fit(X, y)
    np.testing.assert_array_equal(b.bootstrap_indices_, idx)
    np.testing.assert_array_equal(b.predict_members(X), a.predict_members(X))
    c = EnsembleRegressor(cfg, seed=6).fit(X, y)
    assert not np.array_equal(c.bootstrap_indices_, idx)

    # Same init streams without bootstrap: the resample is what changes the members.
    plain = EnsembleRegressor(dataclasses.replace(cfg, bootstrap=False), seed=5).fit(X, y)
    assert plain.bootstrap_indices_ is None
    assert not np.allclose(plain.predict_members(X), a.predict_members(X))
    # members fit their own resample (in-bag rows) better than the rows they never saw
    members = a.predict_members(X)
    in_bag, out_of_bag = [], []
    for k in range(4):
        seen = np.zeros(40, bool)
        seen[idx[k]] = True
        err = (members[k] - y) ** 2
        in_bag.append(err[seen].mean())
        out_of_bag.append(err[~seen].mean())
    assert np.mean(in_bag) < 0.5 * np.mean(out_of_bag)


# ------------------------------------------------------------- input scaling
def test_inputs_standardised_on_training_rows_constant_ignored_and_clipped() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    X[:, 1] = 4.0  # constant on the training rows
    X[:, 2] = 0.0
    X[0, 2] = 2e-5  # nearly constant (like Magpie "minimum GSmagmom" on a small set)
    y = np.sin(X[:, 0])
    cfg = EnsembleConfig(n_members=2, hidden=(16,), epochs=30, device="cpu")
    model = EnsembleRegressor(cfg, seed=0).fit(X, y)
    np.testing.assert_array_equal(model.active_, [True, False, True])

    Xq = np.array([[0.3, 4.0, 0.0], [0.3, 123.0, 0.0], [0.3, 4.0, 1.5], [0.3, 4.0, -1.5]])
    Z = model.transform_inputs(Xq)
    np.testing.assert_allclose(Z[:, 0], (0.3 - X[:, 0].mean()) / X[:, 0].std())
    assert np.all(Z[:, 1] == 0.0)  # constant-on-training feature carries no information
    assert Z[2, 2] == cfg.input_clip and Z[3, 2] == -cfg.input_clip  # z ~ 4e5 clipped to ±10
    np.testing.assert_allclose(Z, np.clip(Z, -10, 10))
    mean, var = model.predict(Xq)
    assert mean[0] == mean[1] and np.all(np.isfinite(mean)) and np.all(np.abs(mean) < 50)
    # training inputs: the scaler is fitted on exactly these rows
    np.testing.assert_allclose(model.transform_inputs(X)[:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(model.transform_inputs(X)[:, 0].std(), 1.0)

    unclipped = EnsembleRegressor(dataclasses.replace(cfg, input_clip=None), seed=0).fit(X, y)
    assert unclipped.transform_inputs(Xq)[2, 2] > 1e5


# ----------------------------------------------------------------- validation
def test_predict_before_fit_raises() -> None:
    model = EnsembleRegressor(SMALL, seed=0)
    X, _ = _data(n=5)
    calls = (model.predict, model.predict_members, model.last_hidden, model.transform_inputs)
    for call in calls:
        with pytest.raises(RuntimeError, match="fit"):
            call(X)


def test_feature_count_mismatch_names_both_counts(fitted) -> None:
    model, _, _ = fitted
    with pytest.raises(ValueError, match=r"5 features.*3 features"):
        model.predict(np.zeros((2, 5)))


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros(4), np.zeros(4), "2-D"),
        (np.zeros((2, 2, 2)), np.zeros(2), "2-D"),
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), np.zeros(3), "non-finite"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), np.zeros(3), "non-finite"),
        (np.zeros((3, 2)), np.zeros((3, 1)), "1-D"),
        (np.zeros((3, 2)), np.array([0.0, np.nan, 1.0]), "non-finite"),
        (np.zeros((3, 2)), np.zeros(4), "3 vs 4"),
        (np.zeros((1, 2)), np.zeros(1), "at least 2"),
        ([["a", "b"], ["c", "d"]], np.zeros(2), "numeric"),
    ],
)
def test_fit_input_validation(X, y, match) -> None:
    with pytest.raises(ValueError, match=match):
        EnsembleRegressor(SMALL, seed=0).fit(X, y)


def test_predict_input_validation(fitted) -> None:
    model, _, _ = fitted
    with pytest.raises(ValueError, match="2-D"):
        model.predict(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        model.predict(np.array([[np.nan, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="member"):
        ll_features(model, np.zeros((2, 3)), member=SMALL.n_members)
    mean, var = model.predict(np.zeros((0, 3)))
    assert mean.shape == var.shape == (0,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_members": 0},
        {"hidden": ()},
        {"hidden": (8, 0)},
        {"lr": 0.0},
        {"epochs": 0},
        {"batch_size": 0},
        {"weight_decay": -1.0},
        {"bootstrap": 1},
        {"input_clip": 0.0},
        {"input_clip": -1.0},
    ],
)
def test_config_validation(kwargs) -> None:
    with pytest.raises(ValueError):
        EnsembleConfig(**kwargs)


def test_seed_validation_and_constant_target() -> None:
    with pytest.raises(ValueError, match="seed"):
        EnsembleRegressor(SMALL, seed=-1)
    with pytest.raises(TypeError):
        EnsembleRegressor(SMALL)  # type: ignore[call-arg]  # seed is keyword-only and required
    X, _ = _data(n=10)
    model = EnsembleRegressor(EnsembleConfig(n_members=2, hidden=(8,), epochs=5, device="cpu"), seed=0)
    mean, _ = model.fit(X, np.full(10, 3.0)).predict(X)
    assert model.y_std_ == 1.0 and np.all(np.isfinite(mean))
