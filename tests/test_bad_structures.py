"""Track B refuses bad structures and bad files by name: XSF energy units, non-finite numbers,
atoms on top of each other, malformed lines (file and line named), a non-finite training loss
(the structure named), and unreadable checkpoints (named, recomputed)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import write
from ase.units import Hartree, Ry

from alhelpers.atomistic.data import read_xsf, read_xsf_tarball
from alhelpers.atomistic.data.offline import load_offline
from alhelpers.atomistic.data.xsf import XSFError
from alhelpers.atomistic.structures import BadStructureError, StructureSet
from alhelpers.atomistic.train import NonFiniteLossError, TrainConfig, fit_potential, predict

SMALL_XSF = """# total energy = -12.5 eV

CRYSTAL
PRIMVEC
  4.0 0.0 0.0
  0.0 4.0 0.0
  0.0 0.0 4.0
PRIMCOORD
2 1
Li  0.0 0.0 0.0   0.1 -0.2 0.3
O   2.0 2.0 2.0  -0.1  0.2 -0.3
"""
FAST = TrainConfig(max_epochs=2, patience=2, dtype="float32")


@pytest.fixture(scope="module")
def offline() -> StructureSet:
    return load_offline(limit=24)


def _file(tmp_path: Path, text: str | bytes, name: str = "s.xsf") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _tarball(tmp_path: Path, members: dict[str, str]) -> Path:
    path = tmp_path / "set.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


# --------------------------------------------------------------------------- energy units


@pytest.mark.parametrize("unit, factor", [("eV", 1.0), ("Ry", Ry), ("Ha", Hartree), ("hartree", Hartree),
                                          ("meV", 1e-3)])
def test_xsf_energy_units_are_converted(tmp_path, unit, factor):
    path = _file(tmp_path, SMALL_XSF.replace("-12.5 eV", f"-12.5 {unit}"))
    assert read_xsf(path)[1] == pytest.approx(-12.5 * factor, rel=1e-15)
    assert Ry == pytest.approx(13.605693, rel=1e-6) and Hartree == pytest.approx(27.211386, rel=1e-6)


def test_xsf_unknown_energy_unit_is_refused_with_file_and_line(tmp_path):
    path = _file(tmp_path, "\n" + SMALL_XSF.replace("-12.5 eV", "-12.5 furlongs"))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:2: unknown energy unit 'furlongs'"):
        read_xsf(path)


def test_xsf_energy_without_unit_is_read_as_ev_and_said(tmp_path):
    path = _file(tmp_path, SMALL_XSF.replace("-12.5 eV", "-12.5"))
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}: the total energy has no unit; read as eV"):
        assert read_xsf(path)[1] == -12.5
    # a tarball says it once, with the count
    tar = _tarball(tmp_path, {"d/a.xsf": SMALL_XSF.replace(" eV", ""), "d/b.xsf": SMALL_XSF.replace(" eV", ""),
                              "d/c.xsf": SMALL_XSF})
    with pytest.warns(UserWarning, match=r"2 of 3 files \(first: .*set.tar.gz:d/a.xsf\): the total energy has no unit") as rec:
        read_xsf_tarball(tar, references=None, name="toy")
    assert len([w for w in rec if "no unit" in str(w.message)]) == 1


# --------------------------------------------------------------------------- malformed lines


@pytest.mark.parametrize("edit, line, message", [
    (("2.0 2.0 2.0", "2.0 2.0.1 2.0"), 11, r"'2.0.1' is not a number \(a coordinate\)"),
    (("2.0 2.0 2.0", "2.0 nan 2.0"), 11, r"'nan' is not a finite number \(a coordinate\)"),
    (("-0.1  0.2 -0.3", "-0.1  inf -0.3"), 11, r"'inf' is not a finite number \(a force\)"),
    (("-12.5 eV", "-1x2.5 eV"), 1, r"'-1x2.5' is not a number \(the total energy\)"),
    (("2 1\n", "3 1\n"), 9, r"PRIMCOORD announces 3 atoms but 2 atom lines follow"),
    (("4.0 0.0 0.0\n  0.0 4.0", "4.0 0.0 0.0\n  0.0 x4.0"), 6, r"'x4.0' is not a number \(a cell vector\)"),
    (("O   2.0", "Qq  2.0"), 11, r"unknown element symbol 'Qq'"),
    (("O   2.0 2.0 2.0  -0.1  0.2 -0.3", "O   2.0 2.0 2.0  -0.1  0.2"), 11, r"an atom line has 4 fields"),
])
def test_xsf_errors_name_the_file_and_the_line(tmp_path, edit, line, message):
    path = _file(tmp_path, SMALL_XSF.replace(*edit))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        read_xsf(path)


def test_xsf_non_utf8_bytes_name_the_file_and_the_line(tmp_path):
    raw = SMALL_XSF.replace("Li ", "L\xe9 ").encode("latin-1")
    path = _file(tmp_path, raw)
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:10: byte 0xe9 is not UTF-8 text"):
        read_xsf(path)


def test_tarball_member_errors_name_the_archive_the_member_and_the_line(tmp_path):
    """Before: one inf force made the whole tarball energy-only without a word."""
    tar = _tarball(tmp_path, {"d/a.xsf": SMALL_XSF, "d/b.xsf": SMALL_XSF.replace("-0.1  0.2", "-0.1  inf")})
    with pytest.raises(XSFError, match=rf"^{re.escape(str(tar))}:d/b.xsf:11: 'inf' is not a finite number"):
        read_xsf_tarball(tar, references=None, name="toy")


def test_xsf_atoms_on_top_of_each_other_are_refused_with_both_lines(tmp_path):
    path = _file(tmp_path, SMALL_XSF.replace("O   2.0 2.0 2.0", "O   0.0 0.0 0.1"))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:10: atoms 0 and 1 \(lines 10 and 11\) are "
                                       r"0.100 Å apart, closer than 0.5 Å"):
        read_xsf(path)
    # periodic images count: an atom 0.2 Å from the image of another across the cell face
    path = _file(tmp_path, SMALL_XSF.replace("O   2.0 2.0 2.0", "O   3.8 0.0 0.0"), "image.xsf")
    with pytest.raises(XSFError, match=r"atoms 0 and 1 \(lines 10 and 11\) are 0.200 Å apart"):
        read_xsf(path)


def test_xsf_structures_agree_with_ase(tmp_path):
    import ase.io

    text = SMALL_XSF.replace("O   2.0 2.0 2.0", "8   2.0 2.5 1.5")
    ours = read_xsf(io.StringIO(text))[0]
    ref = ase.io.read(io.StringIO(text), format="xsf")
    assert ours.get_chemical_symbols() == ref.get_chemical_symbols() == ["Li", "O"]
    assert np.array_equal(ours.positions, ref.positions) and np.array_equal(ours.cell[:], ref.cell[:])
    assert ours.pbc.tolist() == ref.pbc.tolist() == [True, True, True]


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
    from alhelpers.atomistic.structures import closest_pair

    h2 = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.3]])
    assert closest_pair(h2) == (0, 1, pytest.approx(0.3))
    assert closest_pair(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])) is None
