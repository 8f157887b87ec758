"""Track B refuses bad structures by name: non-finite numbers, atoms on top of each other (the
structure named), a non-finite training loss (the structure named), bad extxyz frames (file, frame
and line). The XSF reader's errors (file and line) are tested with the reader in
test_atomistic_data.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.io import write

from alhelpers.anymodel.train import NonFiniteLossError, TrainConfig
from alhelpers.atomistic.data.offline import load_offline
from alhelpers.atomistic.train import fit_potential, predict
from alhelpers.structures import BadStructureError, StructureSet

FAST = TrainConfig(max_epochs=2, patience=2, dtype="float32")


@pytest.fixture(scope="module")
def offline() -> StructureSet:
    return load_offline(limit=24)


# --------------------------------------------------------------------------- structure sets


def test_a_nan_coordinate_is_refused_naming_the_structure(offline):
    atoms = [a.copy() for a in offline.structures[:3]]
    atoms[2].positions[4, 1] = np.nan
    with pytest.raises(BadStructureError, match=r"structure 2 of 'offline'.*non-finite coordinates \(atoms \[4\]"):
        StructureSet("offline", atoms, offline.energy[:3], offline.forces[:3])


def test_infinite_labels_are_refused_naming_the_structure(offline):
    forces = [f.copy() for f in offline.forces[:3]]
    forces[1][0, 2] = np.inf
    with pytest.raises(BadStructureError, match=r"structure 1 of 'offline'.*infinite forces \(atoms \[0\]"):
        StructureSet("offline", offline.structures[:3], offline.energy[:3], forces)
    energy = offline.energy[:3].copy()
    energy[0] = -np.inf
    with pytest.raises(BadStructureError, match=r"structure 0 of 'offline'.*an infinite energy"):
        StructureSet("offline", offline.structures[:3], energy, offline.forces[:3])


def test_coincident_atoms_stop_training_and_prediction_naming_the_structure(offline):
    """Before: every loss was NaN, then every prediction, with no error."""
    train = offline.subset(range(2, 14))
    bad = train.structures[5].copy()
    bad.positions[3] = bad.positions[7]
    train.structures[5] = bad
    with pytest.raises(BadStructureError, match=r"training set, structure 5 of 'offline' \(structure 7 as read\) "
                                                r"\[.*aspirin_gfn2_md.npz: offline:frame7\]: "
                                                r"atoms 3 and 7 are 0.000 Å apart, closer than 0.5 Å"):
        fit_potential(train, None, FAST, seed=0, hidden=(8,))
    with pytest.raises(BadStructureError, match=r"closer than 0.5 Å"):
        train.check_geometry()
    model, _ = fit_potential(offline.subset(range(4)), None, FAST, seed=0, hidden=(8,))
    with pytest.raises(BadStructureError, match=r"structure 5 of 'offline' \(structure 7 as read\) \[.*\]: atoms 3 and 7"):
        predict(model, train)


def test_a_non_finite_loss_stops_training_naming_the_structure(offline):
    """A finite label whose square overflows float32 (forces of 1e20 eV/Å): before, NaN weights silently."""
    train = offline.subset(range(8))
    train.forces = [f.copy() for f in train.forces]
    train.forces[6][2] = [1e20, 0.0, 0.0]
    with pytest.raises(NonFiniteLossError, match=r"non-finite in epoch 1 for structure 6 of 'offline' "
                                                 r"\(structure 6 as read\) \[.*frame6\] \(energy .* largest \|force\| 1e\+20 eV/Å\)"):
        fit_potential(train, None, TrainConfig(max_epochs=2, patience=2, dtype="float32", batch_size=8), seed=0,
                      hidden=(8,))


def test_extxyz_frames_are_checked_with_file_frame_and_line(tmp_path, offline):
    from alhelpers.anymodel.select import read_structures

    frames = [a.copy() for a in offline.structures[:3]]
    frames[2].positions[1] = frames[2].positions[0] + [0.05, 0.0, 0.0]
    path = tmp_path / "pool.extxyz"
    write(path, frames, format="extxyz")
    n = len(frames[0])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:{2 * (n + 2) + 1}: frame 2: atoms 0 and 1 "
                                         r"\(C, C\) are 0.050 Å apart"):
        read_structures(path)
    write(tmp_path / "ok.extxyz", frames[:2], format="extxyz")
    assert len(read_structures(tmp_path / "ok.extxyz")) == 2


def test_molecules_without_a_cell_are_checked_too():
    from alhelpers.structures import closest_pair

    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.3]])
    assert closest_pair(h2) == (0, 1, pytest.approx(0.3))
    assert closest_pair(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])) is None


def test_a_periodic_structure_without_cell_volume_is_refused_by_name(tmp_path):
    """Before: ``numpy.linalg.LinAlgError: Singular matrix`` from the neighbour list, naming nothing."""
    from alhelpers.anymodel.select import read_structures

    good = Atoms("LiO", positions=[[0, 0, 0], [2, 2, 2]], cell=[4, 4, 4], pbc=True)
    flat = Atoms("LiO", positions=[[0, 0, 0], [2, 2, 2]], cell=[[4, 0, 0], [0, 4, 0], [4, 4, 0]], pbc=True)
    path = tmp_path / "pool.extxyz"
    write(path, [good, good, flat], format="extxyz")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:9: frame 2: a periodic cell \(pbc \[True, True, "
                                         r"True\]\) without volume: the cell vectors \[\[4.0, 0.0, 0.0\], \[0.0, 4.0, "
                                         r"0.0\], \[4.0, 4.0, 0.0\]\] are linearly dependent"):
        read_structures(path)
    with pytest.raises(BadStructureError, match=r"^structure 1 of 'toy': a periodic cell .* without volume"):
        StructureSet("toy", [good, flat], [0.0, 0.0], [np.zeros((2, 3))] * 2)
    molecule = Atoms("LiO", positions=[[0, 0, 0], [2, 2, 2]])  # no periodic direction: no cell needed
    assert len(StructureSet("toy", [good, molecule], [0.0, 0.0], [np.zeros((2, 3))] * 2)) == 2


def test_extxyz_frames_keep_their_own_forces(tmp_path):
    """The extxyz reader (ase.io) gives every frame its own calculator: frames without forces do not
    take the forces of the others away (the selection does not use labels anyway)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from alhelpers.anymodel.select import read_structures

    frames = []
    for k in range(3):
        a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74 + 0.01 * k]])
        a.calc = SinglePointCalculator(a, energy=-1.0 - k, **({} if k == 1 else {"forces": np.full((2, 3), k + 1.0)}))
        frames.append(a)
    write(tmp_path / "mixed.extxyz", frames, format="extxyz")
    got = read_structures(tmp_path / "mixed.extxyz")
    assert [sorted(a.calc.results) for a in got] == [["energy", "forces"], ["energy"], ["energy", "forces"]]
    assert got[0].calc.results["forces"].tolist() == [[1.0] * 3] * 2 and got[2].calc.results["forces"][0, 0] == 3.0
