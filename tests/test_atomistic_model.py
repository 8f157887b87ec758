"""Neighbour graphs, descriptor, potential and training of Track B (alhelpers.atomistic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones

from alhelpers.anymodel.train import TrainConfig
from alhelpers.atomistic.descriptor import (
    DescriptorConfig,
    compute_descriptor,
    moments,
    species_index,
)
from alhelpers.atomistic.frozen import freeze, frozen_descriptor
from alhelpers.atomistic.model import AtomisticModel
from alhelpers.atomistic.train import (
    _loss_terms,
    _targets,
    fit_potential,
    freeze_structures,
    predict,
)
from alhelpers.neighbours import GraphCache, build_graph, build_graphs, collate
from alhelpers.structures import StructureSet

CUTOFF = 4.0
SPECIES = (8, 22)


def rutile(a: float = 4.6, c: float = 2.96, u: float = 0.305) -> Atoms:
    """A 6-atom rutile-like TiO2 cell; c < cutoff, so atoms see their own images along z."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5], [0.5 - u, 0.5 + u, 0.5]]
    return Atoms("Ti2O4", scaled_positions=frac, cell=[a, a, c], pbc=True)


def rattled(atoms: Atoms, rng: np.random.Generator, amp: float = 0.12) -> Atoms:
    out = atoms.copy()
    out.positions += amp * rng.standard_normal(out.positions.shape)
    return out


def cluster() -> Atoms:
    """An isolated Ti2O3 molecule (no cell, no pbc)."""
    pos = [[0.0, 0.0, 0.0], [2.6, 0.3, 0.1], [1.2, 1.4, 0.2], [1.3, -1.3, -0.3], [1.4, 0.1, 1.6]]
    return Atoms("Ti2O3", positions=pos)


def tiny_model(graphs, seed: int = 0, hidden=(16, 16), dtype=torch.float64) -> AtomisticModel:
    model = AtomisticModel(DescriptorConfig(SPECIES, cutoff=CUTOFF, n_radial=4), hidden, seed=seed, dtype=dtype)
    model.fit_scaler(graphs)
    model.init_shifts(graphs, np.linspace(-40.0, -20.0, len(graphs)))
    with torch.no_grad():  # make every factor of E_i = c·(s_Z·NN + μ_Z) matter
        model.species_scale.copy_(torch.tensor([0.7, 1.4], dtype=dtype))
        model.energy_scale.fill_(0.8)
    return model


@pytest.fixture(scope="module")
def systems() -> list[Atoms]:
    rng = np.random.default_rng(0)
    return [rattled(rutile(), rng), cluster(), rattled(rutile(4.5, 3.05), rng)]


@pytest.fixture(scope="module")
def model(systems) -> AtomisticModel:
    return tiny_model(build_graphs(systems, CUTOFF))


def energy_forces(model: AtomisticModel, atoms: Atoms) -> tuple[float, np.ndarray]:
    E, F = predict(model, [atoms])
    return float(E[0]), F[0]


# --------------------------------------------------------------------------- neighbours


def _edge_set(g) -> set[tuple[int, int, int, int, int]]:
    return {(int(i), int(j), *map(int, s)) for i, j, s in zip(g.edge_i, g.edge_j, g.shifts)}


def test_neighbour_graph_periodic_matches_ase_and_sees_own_images():
    from ase.neighborlist import neighbor_list

    atoms = rattled(rutile(), np.random.default_rng(1))
    g = build_graph(atoms, CUTOFF)
    i, j, S = neighbor_list("ijS", atoms, CUTOFF)
    assert _edge_set(g) == {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, S)}
    r = np.linalg.norm(g.edge_vectors(), axis=1)
    assert r.max() < CUTOFF and r.min() > 0.5
    assert np.any((g.edge_i == g.edge_j) & np.any(g.shifts != 0, axis=1))  # own images (c = 2.96 Å < cutoff)
    # every edge has its reverse
    assert {(j, i, -a, -b, -c) for i, j, a, b, c in _edge_set(g)} == _edge_set(g)


def test_neighbour_graph_molecule_and_errors():
    g = build_graph(cluster(), CUTOFF)
    assert g.n_atoms == 5 and not g.pbc.any() and np.all(g.shifts == 0)
    d = np.linalg.norm(cluster().positions[:, None] - cluster().positions[None], axis=-1)
    assert g.n_edges == int(((d < CUTOFF) & (d > 0)).sum())
    with pytest.raises(ValueError, match="no atoms"):
        build_graph(Atoms(), CUTOFF)
    with pytest.raises(ValueError, match="degenerate"):
        build_graph(Atoms("O", positions=[[0, 0, 0]], pbc=True), CUTOFF)


def test_graph_cache_and_collate_offsets(systems):
    cache = GraphCache()
    g1 = cache.graphs(systems, CUTOFF)
    g2 = cache.graphs([a.copy() for a in systems], CUTOFF)
    assert len(cache) == len(systems) and all(a is b for a, b in zip(g1, g2))
    b = collate(g1, [2, 0])
    assert b.n_structures == 2 and b.n_total_atoms == 12
    assert b.structure.tolist() == [0] * 6 + [1] * 6
    assert torch.allclose(b.edge_vectors(), torch.as_tensor(np.concatenate([g1[2].edge_vectors(), g1[0].edge_vectors()])))
    with pytest.raises(ValueError, match="empty"):
        collate(g1, [])


# --------------------------------------------------------------------------- descriptor and forces


def test_descriptor_width_and_frozen_path_agree(systems):
    assert DescriptorConfig((8, 22)).width == 240
    assert DescriptorConfig((1, 6, 8)).width == 507
    cfg = DescriptorConfig(SPECIES, cutoff=CUTOFF, n_radial=4)
    assert len(cfg.labels()) == cfg.width
    b = collate(build_graphs(systems, CUTOFF))
    G = compute_descriptor(cfg, b)
    assert G.shape == (b.n_total_atoms, cfg.width)
    assert torch.allclose(G, frozen_descriptor(freeze(cfg, b)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", [0, 1])
def test_forces_are_minus_energy_gradient(model, systems, which):
    atoms = systems[which]
    b = model.collate([build_graph(atoms, CUTOFF)])
    E_fast, F_fast = model.energy_and_forces(b)
    E_ag, F_ag = model.energy_and_forces(b, method="autograd")
    assert torch.allclose(E_fast, E_ag, rtol=1e-12)
    assert torch.allclose(F_fast, F_ag, atol=1e-12)
    h = 1e-5
    F_fd = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, c] += h
            minus.positions[a, c] -= h
            F_fd[a, c] = -(energy_forces(model, plus)[0] - energy_forces(model, minus)[0]) / (2 * h)
    F = F_fast.numpy()
    assert np.abs(F).max() > 1e-2  # a real test, not zeros against zeros
    np.testing.assert_allclose(F, F_fd, atol=1e-7 * max(1.0, np.abs(F).max()))


def test_force_loss_gradient_frozen_equals_autograd(model, systems):
    """The hand-written adjoints give the same training gradient as double backward by autograd."""
    b = model.collate(build_graphs(systems, CUTOFF))
    target = torch.randn(b.n_total_atoms, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    params = list(model.parameters())
    grads = {}
    for method in ("frozen", "autograd"):
        E, F = model.energy_and_forces(b, create_graph=True, method=method)
        loss = ((F - target) ** 2).sum() + (E**2).sum()
        grads[method] = torch.autograd.grad(loss, params)
    for g1, g2 in zip(grads["frozen"], grads["autograd"]):
        assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-12)


def test_linear_maps_pass_gradcheck(systems):
    from alhelpers.atomistic.frozen import (
        frozen_descriptor_gradient,
        frozen_position_gradient,
    )

    cfg = DescriptorConfig(SPECIES, cutoff=CUTOFF, n_radial=2)
    fb = freeze(cfg, collate(build_graphs(systems[:2], CUTOFF)))
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(fb.moments.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(fb.descriptor.shape, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: frozen_position_gradient(fb, x), (w,))
    assert torch.autograd.gradcheck(lambda x: frozen_descriptor_gradient(fb, x), (v,))
    # and the maps are the gradients they claim to be
    b = collate(build_graphs(systems[:2], CUTOFF))
    pos = b.positions.clone().requires_grad_(True)
    M = moments(cfg, b, species_index(cfg, b.numbers), pos)
    (ref,) = torch.autograd.grad((M * w.detach()).sum(), pos)
    assert torch.allclose(frozen_position_gradient(fb, w.detach()), ref, atol=1e-12)


def test_invariance_rotation_translation_permutation(model, systems):
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    for atoms in systems[:2]:
        E, F = energy_forces(model, atoms)
        rot = atoms.copy()
        rot.positions = atoms.positions @ Q.T
        if atoms.pbc.any():
            rot.cell = atoms.cell[:] @ Q.T
        E_r, F_r = energy_forces(model, rot)
        assert E_r == pytest.approx(E, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(F_r, F @ Q.T, atol=1e-9)

        moved = atoms.copy()
        moved.positions += np.array([0.37, -1.1, 2.3])
        if atoms.pbc.any():
            moved.wrap()
        E_t, F_t = energy_forces(model, moved)
        assert E_t == pytest.approx(E, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(F_t, F, atol=1e-9)

        perm = rng.permutation(len(atoms))
        E_p, F_p = energy_forces(model, atoms[perm])
        assert E_p == pytest.approx(E, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(F_p, F[perm], atol=1e-9)


def test_supercell_energy_per_atom_with_cutoff_beyond_cell(model):
    rng = np.random.default_rng(4)
    small = Atoms("TiO", scaled_positions=[[0, 0, 0], [0.45, 0.55, 0.5]], cell=[2.2, 2.4, 2.6], pbc=True)
    small.positions += 0.05 * rng.standard_normal((2, 3))
    assert small.cell.lengths().max() < CUTOFF
    for atoms in (small, rattled(rutile(), rng)):
        E, F = energy_forces(model, atoms)
        big = atoms.repeat((2, 1, 1))
        E2, F2 = energy_forces(model, big)
        assert E2 / len(big) == pytest.approx(E / len(atoms), rel=1e-10)
        np.testing.assert_allclose(F2, np.concatenate([F, F]), atol=1e-9)


def test_energy_smooth_as_neighbour_crosses_cutoff(model):
    def dimer(r: float) -> float:
        return energy_forces(model, Atoms("TiO", positions=[[0, 0, 0], [r, 0, 0]]))[0]

    far = dimer(CUTOFF + 0.5)
    eps = 1e-4
    assert dimer(CUTOFF + eps) == pytest.approx(far, abs=1e-12)
    # value and slope vanish at the cutoff: E(rc - eps) - E(far) = O(eps^2)
    assert abs(dimer(CUTOFF - eps) - far) < 1e-6
    assert abs(dimer(CUTOFF - 0.3) - far) > 1e-5  # but the neighbour does matter inside
    F = energy_forces(model, Atoms("TiO", positions=[[0, 0, 0], [CUTOFF - eps, 0, 0]]))[1]
    assert np.abs(F).max() < 1e-4


def test_unknown_species_error_names_species(model):
    fe = Atoms("FeO", positions=[[0, 0, 0], [1.9, 0, 0]])
    with pytest.raises(ValueError, match=r"Fe \(Z=26\).*species"):
        predict(model, [fe])


def test_frozen_select_and_chunked_freeze_match_separate_batches(model, systems):
    graphs = build_graphs(systems, CUTOFF)
    E2, F2 = model.energy_and_forces(model.collate(graphs, [2, 0]), method="autograd")
    whole = model.freeze(model.collate(graphs))
    chunked = freeze_structures(graphs, model.descriptor_cfg, chunk_atoms=5)  # one structure per chunk
    for fb in (whole, chunked):
        E, F = model.energy_and_forces(fb.select([2, 0]))
        assert torch.allclose(E, E2, rtol=1e-12) and torch.allclose(F, F2, atol=1e-12)
    E_all, F_all = predict(model, systems)
    E_small, F_small = predict(model, systems, chunk_atoms=5)
    np.testing.assert_allclose(E_small, E_all, rtol=1e-12)
    for a, b in zip(F_small, F_all):
        np.testing.assert_allclose(a, b, atol=1e-12)


# --------------------------------------------------------------------------- training


def lj_set(n: int, seed: int, *, forces: bool = True) -> StructureSet:
    """Rattled, strained rutile-like cells labelled by a Lennard-Jones potential."""
    rng = np.random.default_rng(seed)
    calc = LennardJones(sigma=1.9, epsilon=0.1, rc=CUTOFF, smooth=True)
    structures, E, F = [], [], []
    for _ in range(n):
        a = rutile(4.6 * (1 + 0.04 * rng.standard_normal()), 2.96 * (1 + 0.04 * rng.standard_normal()))
        a = rattled(a, rng, 0.1)
        a.calc = calc
        E.append(a.get_potential_energy())
        F.append(a.get_forces() if forces else np.full((len(a), 3), np.nan))
        a.calc = None
        structures.append(a)
    return StructureSet("lj", structures, np.array(E), F, has_forces=forces)


@pytest.fixture(scope="module")
def lj_data() -> tuple[StructureSet, StructureSet]:
    return lj_set(24, 0), lj_set(8, 1)


FAST = dict(batch_size=6, lr=3e-3, patience=4, lr_patience=3)
TINY = dict(hidden=(24, 24), descriptor=DescriptorConfig(SPECIES, cutoff=CUTOFF, n_radial=4))


def _errors(model, data):
    E, F = predict(model, data)
    dF = np.concatenate(F) - np.concatenate(data.forces)
    return float(np.abs(E - data.energy).mean()), float(np.sqrt((dF**2).mean()))


def test_training_reduces_errors_and_restores_best(lj_data):
    train, val = lj_data
    cfg = TrainConfig(max_epochs=40, **FAST)
    m0, h0 = fit_potential(train, val, TrainConfig(max_epochs=0), seed=0, **TINY)
    assert len(h0) == 0
    model, hist = fit_potential(train, val, cfg, seed=0, **TINY)
    e0, f0 = _errors(m0, val)
    e1, f1 = _errors(model, val)
    assert f1 < 0.5 * f0 and e1 < e0
    best = int(hist["val_loss"].idxmin())
    assert hist.attrs["best_epoch"] == hist["epoch"][best]
    # the returned weights are the best epoch's, not the last one's
    fb = model.freeze(model.collate(build_graphs(val.structures, CUTOFF)))
    vloss, _, _ = _loss_terms(model, fb, _targets(val, model.dtype, model.device, True), cfg, True, create_graph=False)
    assert float(vloss.mean()) == pytest.approx(hist["val_loss"].min(), rel=1e-9)
    assert len(hist) == cfg.max_epochs or len(hist) == hist.attrs["best_epoch"] + cfg.patience


def test_training_is_reproducible_and_seeded(lj_data):
    train, val = lj_data
    cfg = TrainConfig(max_epochs=3, **FAST)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a, ha = fit_potential(train, val, cfg, seed=5, **TINY)
    assert torch.equal(torch_state, torch.get_rng_state())  # the global RNGs are never used
    assert np.array_equal(numpy_state, np.random.get_state()[1])
    b, hb = fit_potential(train, val, cfg, seed=5, **TINY)
    c, _ = fit_potential(train, val, cfg, seed=6, **TINY)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert ha["val_loss"].tolist() == hb["val_loss"].tolist()
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)


def test_energies_only_training_and_warm_start(lj_data):
    train = lj_set(16, 2, forces=False)
    val = lj_set(6, 3, forces=False)
    cfg = TrainConfig(max_epochs=15, **FAST)
    m0, _ = fit_potential(train, val, TrainConfig(max_epochs=0), seed=0, **TINY)
    model, hist = fit_potential(train, val, cfg, seed=0, **TINY)
    assert hist["val_force_mae"].isna().all()
    E0, _ = predict(m0, val, forces=False)
    E1, F1 = predict(model, val, forces=False)
    assert F1 is None
    assert np.abs(E1 - val.energy).mean() < np.abs(E0 - val.energy).mean()
    warm, _ = fit_potential(train, val, TrainConfig(max_epochs=0), init_from=model, seed=0)
    np.testing.assert_allclose(predict(warm, val, forces=False)[0], E1, rtol=1e-12)
    assert warm is not model


def test_restandardising_a_warm_start_refits_the_scaler_and_shifts(lj_data):
    """A warm start restandardised on a new training set has the scaler, energy scale and shifts a
    fresh model gets on that set, and the copied weights."""
    first, other = lj_set(6, 4), lj_set(20, 5)  # the first round's few structures, then a larger set
    model, _ = fit_potential(first, None, TrainConfig(max_epochs=5, **FAST), seed=0, **TINY)
    warm, _ = fit_potential(other, None, TrainConfig(max_epochs=0), init_from=model, restandardise=True, seed=0)
    kept, _ = fit_potential(other, None, TrainConfig(max_epochs=0), init_from=model, seed=0)
    fresh, _ = fit_potential(other, None, TrainConfig(max_epochs=0), seed=0, **TINY)
    for name in ("feature_mean", "feature_std", "energy_scale", "species_shift"):
        assert torch.equal(getattr(warm, name), getattr(fresh, name)), name
        assert torch.equal(getattr(kept, name), getattr(model, name)), name
    assert all(torch.equal(a, b) for a, b in zip(warm.layers.parameters(), model.layers.parameters()))


def test_validation_every_other_epoch(lj_data):
    """``val_every=2``: the validation set is evaluated after epochs 2, 4, … and the last; the
    restored weights are those of one of them, and the epochs between train exactly as before."""
    train, val = lj_data
    settings = {**FAST, "patience": 10, "max_epochs": 7}
    _, hist = fit_potential(train, val, TrainConfig(**settings, val_every=2), seed=0, **TINY)
    assert hist["val_loss"].notna().tolist() == [False, True, False, True, False, True, True]
    assert hist.attrs["best_epoch"] in (2, 4, 6, 7)
    _, each = fit_potential(train, val, TrainConfig(**settings), seed=0, **TINY)
    np.testing.assert_array_equal(hist["train_loss"], each["train_loss"])  # no plateau here: the same steps
    np.testing.assert_array_equal(hist["val_loss"].dropna(), each["val_loss"].iloc[[1, 3, 5, 6]])
    with pytest.raises(ValueError, match="val_every"):
        TrainConfig(val_every=0)


def test_clear_errors_for_empty_or_unlabelled_sets(lj_data):
    train, _ = lj_data
    empty = train.subset([])
    with pytest.raises(ValueError, match="empty"):
        fit_potential(empty, None, TrainConfig(max_epochs=1), seed=0, **TINY)
    with pytest.raises(ValueError, match="empty"):
        predict(tiny_model(build_graphs(train.structures[:2], CUTOFF)), [])
    unlabelled = train.subset([0, 1])
    unlabelled.energy[1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_potential(unlabelled, None, TrainConfig(max_epochs=1), seed=0, **TINY)
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="float16")


def test_max_steps_grows_the_mini_batches_of_large_sets():
    cfg = TrainConfig(batch_size=8, max_steps=7)
    assert [cfg.batch_for(n) for n in (5, 56, 57, 70, 100)] == [8, 8, 9, 10, 15]
    assert TrainConfig(batch_size=8).batch_for(1000) == 8
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=-1)
