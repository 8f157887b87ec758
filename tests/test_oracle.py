"""Oracles: revealing pool labels, and labelling on demand with ASE calculators (tblite, EMT)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from alhelpers.atomistic.data.offline import load_offline
from alhelpers.atomistic.oracle import (
    CalculatorOracle,
    Oracle,
    OracleError,
    PoolOracle,
    isolated_atom_energies,
    tblite_oracle,
)


@pytest.fixture(scope="module")
def offline():
    return load_offline()


def test_pool_oracle_reveals_by_index_and_by_structure(offline):
    pool = PoolOracle(offline)
    assert isinstance(pool, Oracle) and len(pool) == len(offline)
    e, f = pool.reveal([5, 2])
    assert np.array_equal(e, offline.energy[[5, 2]])
    assert np.array_equal(f[0], offline.forces[5])
    f[0][:] = 0.0  # copies: the pool's labels are not changed through them
    assert np.abs(offline.forces[5]).max() > 0
    e2, _ = pool.label([offline.structures[7], offline.structures[2].copy()])  # identity, then geometry
    assert np.array_equal(e2, offline.energy[[7, 2]])
    assert pool.revealed == {2, 5, 7} and pool.n_calls == 2
    foreign = molecule("CH4")
    with pytest.raises(OracleError, match="not in the pool"):
        pool.label([foreign])
    with pytest.raises(IndexError):
        pool.reveal([len(offline)])


def test_tblite_oracle_reproduces_offline_labels(offline):
    """Same method, same geometry → same labels as stored by the MD build.

    Energies agree to ~1e-7 eV; forces to ~3e-4 eV/Å, the SCF convergence of tblite's default
    accuracy (the MD restarts each SCF from the previous step's wavefunction, a fresh call does not).
    """
    idx = [0, len(offline) // 2, len(offline) - 1]
    frames = [offline.structures[i] for i in idx]
    before = [a.positions.copy() for a in frames]
    oracle = tblite_oracle(references=offline.references)
    assert isinstance(oracle, Oracle)
    e, f = oracle.label(frames)
    assert np.allclose(e, offline.energy[idx], atol=1e-6, rtol=0.0)
    for k, i in enumerate(idx):
        assert np.allclose(f[k], offline.forces[i], atol=1e-3, rtol=0.0)
    # the caller's structures are untouched
    assert all(a.calc is None for a in frames)
    assert all(np.array_equal(a.positions, p) for a, p in zip(frames, before))
    assert oracle.n_calls == 3 and oracle.seconds > 0


def test_tblite_auto_references_match_the_offline_set(offline):
    oracle = tblite_oracle(references="auto", elements=("H", "C", "O"))
    assert oracle.references == pytest.approx(offline.references, abs=1e-8)
    mols = [molecule("H2O"), molecule("CH4")]
    e, f = oracle.label(mols)
    assert np.all(np.isfinite(e)) and np.all(e < 0)  # bound relative to free atoms
    assert [x.shape for x in f] == [(3, 3), (5, 3)]
    assert all(np.abs(x.sum(axis=0)).max() < 1e-6 for x in f)  # no net force
    with pytest.raises(OracleError, match=r"'N'"):
        oracle.label([molecule("NH3")])  # no N reference: the error names the element


def test_emt_oracle_on_a_metal_cell():
    cell = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    cell.rattle(stdev=0.05, seed=1)
    snapshot = cell.copy()
    refs = isolated_atom_energies(EMT, ["Cu"])
    oracle = CalculatorOracle(EMT, refs, name="EMT")
    e, f = oracle.label([cell])
    direct = cell.copy()
    direct.calc = EMT()
    assert e[0] == pytest.approx(direct.get_potential_energy() - len(cell) * refs["Cu"], abs=1e-10)
    assert np.allclose(f[0], direct.get_forces(), atol=1e-12)
    assert -5.0 < e[0] / len(cell) < -2.0  # a cohesive energy per atom
    assert cell.calc is None and cell == snapshot
    total = CalculatorOracle(EMT).label([cell])[0][0]  # references=None: total energy
    assert total == pytest.approx(direct.get_potential_energy(), abs=1e-10)


def test_calculator_failure_names_the_structure():
    oracle = CalculatorOracle(EMT, None, name="EMT")
    good = bulk("Cu", "fcc", a=3.6)
    bad = Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.5]], cell=[8, 8, 8], pbc=True)
    bad.info["source"] = "my-uranium-dimer"
    with pytest.raises(OracleError, match=r"EMT.*structure 1 \(U2, 2 atoms, my-uranium-dimer\)"):
        oracle.label([good, bad])
    assert oracle.n_calls == 2


def test_label_set_returns_a_labelled_copy(offline):
    oracle = CalculatorOracle(EMT, None, name="EMT")
    metals = [bulk("Cu", "fcc", a=a) for a in (3.5, 3.6)]
    from alhelpers.structures import StructureSet

    unlabelled = StructureSet("cu", metals, np.full(2, np.nan), [np.full((1, 3), np.nan)] * 2)
    labelled = oracle.label_set(unlabelled)
    assert np.isfinite(labelled.energy).all() and labelled.meta["oracle"] == "EMT"
    assert np.isnan(unlabelled.energy).all()
