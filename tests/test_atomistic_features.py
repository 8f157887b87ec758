"""Track B gradient features, QBC and oracle scores (alhelpers.atomistic.features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from alhelpers.atomistic.descriptor import DescriptorConfig
from alhelpers.atomistic.features import (
    ae_energy,
    ae_forces,
    full_gradient_features,
    ll_features,
    qbc_energy,
    qbc_forces,
    rp_features,
)
from alhelpers.atomistic.model import AtomisticModel
from alhelpers.atomistic.train import freeze_structures, predict
from alhelpers.neighbours import build_graphs
from alhelpers.select.rules import lcmd, maxdist
from alhelpers.structures import StructureSet

CUTOFF = 4.0


def structures(n: int = 5, seed: int = 0) -> list[Atoms]:
    """Rattled rutile-like TiO2 cells of different sizes plus an isolated molecule."""
    rng = np.random.default_rng(seed)
    u = 0.305
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]]
    out = []
    for k in range(n - 1):
        a = Atoms("Ti2O4", scaled_positions=frac, cell=[4.6, 4.6, 2.96], pbc=True)
        if k % 2:
            a = a.repeat((1, 1, 2))
        a.positions += 0.1 * rng.standard_normal(a.positions.shape)
        out.append(a)
    out.append(Atoms("Ti2O3", positions=[[0, 0, 0], [2.6, 0.3, 0.1], [1.2, 1.4, 0.2], [1.3, -1.3, -0.3], [1.4, 0.1, 1.6]]))
    return out


def make_model(atoms: list[Atoms], seed: int, hidden=(6, 5)) -> AtomisticModel:
    model = AtomisticModel(DescriptorConfig((8, 22), cutoff=CUTOFF, n_radial=3), hidden, seed=seed)
    graphs = build_graphs(atoms, CUTOFF)
    model.fit_scaler(graphs)
    model.init_shifts(graphs, np.linspace(-30.0, -10.0, len(graphs)))
    with torch.no_grad():
        model.species_scale.copy_(torch.tensor([0.6, 1.5], dtype=model.dtype))
        model.energy_scale.fill_(0.9)
    return model


@pytest.fixture(scope="module")
def atoms() -> list[Atoms]:
    return structures()


@pytest.fixture(scope="module")
def model(atoms) -> AtomisticModel:
    return make_model(atoms, seed=0)


def autograd_rows(model: AtomisticModel, atoms: list[Atoms], params: list[torch.Tensor]) -> np.ndarray:
    """Gradient of each structure's energy with respect to ``params``, by torch.autograd."""
    batch = model.collate(build_graphs(atoms, CUTOFF))
    rows = []
    for s in range(len(atoms)):
        E = model(batch)
        grads = torch.autograd.grad(E[s], params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).numpy()


def test_ll_features_are_last_layer_gradient(model, atoms):
    phi = ll_features(model, atoms)
    last = model.layers[-1]
    assert phi.shape == (len(atoms), last.in_features + 1)
    np.testing.assert_allclose(phi, autograd_rows(model, atoms, [last.weight, last.bias]), rtol=1e-10, atol=1e-12)


def test_full_gradient_features_match_autograd(model, atoms):
    params = [p for lin in model.layers for p in lin.parameters()]
    full = full_gradient_features(model, atoms)
    assert full.shape == (len(atoms), sum(p.numel() for p in params))
    np.testing.assert_allclose(full, autograd_rows(model, atoms, params), rtol=1e-10, atol=1e-12)


def test_rp_kernel_is_unbiased_estimate_of_full_gradient_kernel(model, atoms):
    full = full_gradient_features(model, atoms)
    exact = full @ full.T
    p, n_seeds = 64, 300
    samples = np.stack([(lambda r: r @ r.T)(rp_features(model, atoms, p=p, seed=s)) for s in range(n_seeds)])
    mean = samples.mean(0)
    se = samples.std(0, ddof=1) / np.sqrt(n_seeds)
    assert np.all(np.abs(mean - exact) <= 5 * se + 1e-12 * np.abs(exact).max())
    assert np.linalg.norm(mean - exact) < 0.1 * np.linalg.norm(exact)
    # one seed: the same matrices for every chunk and call
    np.testing.assert_array_equal(rp_features(model, atoms, p=p, seed=7), rp_features(model, atoms, p=p, seed=7))


def test_chunking_and_frozen_pool_do_not_change_features(model, atoms):
    frozen = freeze_structures(build_graphs(atoms, CUTOFF), model.descriptor_cfg)
    for fn, kw in ((ll_features, {}), (rp_features, {"seed": 3, "p": 32})):
        ref = fn(model, atoms, **kw)
        np.testing.assert_allclose(fn(model, atoms, chunk_atoms=7, **kw), ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fn(model, frozen, chunk_atoms=7, **kw), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(qbc_forces([model, make_model(atoms, seed=4)], frozen, chunk_atoms=9),
                               qbc_forces([model, make_model(atoms, seed=4)], atoms), rtol=1e-12)


def test_qbc_energy_and_forces(atoms):
    m1, m2 = make_model(atoms, seed=1), make_model(atoms, seed=2)
    assert np.all(qbc_energy([m1, m1], atoms) == 0.0)
    E1, F1 = predict(m1, atoms)
    E2, F2 = predict(m2, atoms)
    n = np.array([len(a) for a in atoms])
    np.testing.assert_allclose(qbc_energy([m1, m2], atoms), np.abs(E1 - E2) / 2, rtol=1e-10)
    np.testing.assert_allclose(qbc_energy([m1, m2], atoms, per_atom=True), np.abs(E1 - E2) / 2 / n, rtol=1e-10)
    expected = [np.sqrt((((f1 - f2) / 2) ** 2).mean()) for f1, f2 in zip(F1, F2)]
    np.testing.assert_allclose(qbc_forces([m1, m2], atoms, chunk_atoms=10), expected, rtol=1e-10)


def test_oracle_scores(model, atoms):
    E, F = predict(model, atoms)
    rng = np.random.default_rng(0)
    labels = StructureSet("t", atoms, E + rng.normal(size=len(atoms)), [f + rng.normal(size=f.shape) for f in F])
    np.testing.assert_allclose(ae_energy(model, labels), np.abs(E - labels.energy), rtol=1e-10)
    n = labels.n_atoms
    np.testing.assert_allclose(ae_energy(model, labels, per_atom=True), np.abs(E - labels.energy) / n, rtol=1e-10)
    expected = [np.sqrt(((f - g) ** 2).mean()) for f, g in zip(F, labels.forces)]
    np.testing.assert_allclose(ae_forces(model, labels), expected, rtol=1e-10)
    with pytest.raises(TypeError):
        ae_energy(model, atoms)  # type: ignore[arg-type]


def test_features_feed_selection_rules(model):
    pool_atoms = structures(12, seed=1)
    train_atoms = structures(3, seed=2)
    for phi_pool, phi_train in (
        (ll_features(model, pool_atoms), ll_features(model, train_atoms)),
        (rp_features(model, pool_atoms, seed=0, p=16), rp_features(model, train_atoms, seed=0, p=16)),
    ):
        for rule in (maxdist, lcmd):
            picked = rule(phi_pool, phi_train, 4, device="cpu")
            assert len(picked) == 4 and len(set(picked.tolist())) == 4


def test_errors(model):
    with pytest.raises(ValueError, match="empty"):
        ll_features(model, [])
    with pytest.raises(ValueError, match="at least one model"):
        qbc_energy([], structures(2))
    with pytest.raises(ValueError, match=r"Fe \(Z=26\)"):
        rp_features(model, [Atoms("FeO", positions=[[0, 0, 0], [1.9, 0, 0]])], seed=0)
