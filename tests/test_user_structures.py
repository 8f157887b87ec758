"""Your own structures in the Track B study: ``--system file --data PATH`` and ``SYSTEM = "file"``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from alhelpers.atomistic.config import system_name
from alhelpers.atomistic.data.user import labelled_frames, load_structure_file
from alhelpers.run import main

#: Columns that are measured times, not results.
TIMES = ["fit_s", "feature_s", "query_s", "label_s", "code_id"]


def _write(path: Path, structures, energies, forces, **kw) -> Path:
    frames = []
    for a, e, f in zip(structures, energies, forces):
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=float(e), forces=np.asarray(f)) if f is not None else None
        if f is None:
            b.info["energy"] = float(e)
        frames.append(b)
    write(path, frames, format="extxyz", **kw)
    return path


@pytest.fixture(scope="module")
def aspirin():
    from alhelpers.atomistic.data import load_dataset

    return load_dataset("offline").subset(range(12))


def test_a_file_loads_with_its_energies_and_forces_in_ev(tmp_path, aspirin):
    path = _write(tmp_path / "my md.extxyz", aspirin.structures, aspirin.energy, aspirin.forces)
    got = load_structure_file(path)
    assert got.name == "file-my_md" == system_name("file", str(path))
    assert got.has_forces and len(got) == 12
    np.testing.assert_array_equal(got.energy, aspirin.energy)  # extxyz keeps a float's every digit here
    for a, b in zip(got.forces, aspirin.forces):  # and 8 decimals of per-atom arrays ("%16.8f")
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-9)
    for a, b in zip(got.structures, aspirin.structures):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=5e-9)
        assert a.calc is None  # labels live in the set, never in a calculator the models could call


def test_energy_and_forces_keys_and_units(tmp_path, aspirin):
    """Energies in Hartree under info["E_dft"], forces in Hartree/Å under arrays["F_dft"]."""
    frames = []
    for a, e, f in zip(aspirin.structures, aspirin.energy, aspirin.forces):
        b = a.copy()
        b.info["E_dft"] = float(e) / units.Hartree
        b.arrays["F_dft"] = np.asarray(f) / units.Hartree
        frames.append(b)
    path = tmp_path / "ha.extxyz"
    write(path, frames, format="extxyz")
    got = load_structure_file(path, energy_key="E_dft", forces_key="F_dft", energy_unit="Hartree")
    np.testing.assert_allclose(got.energy, aspirin.energy, rtol=1e-12, atol=1e-9)
    # 8 decimals of Hartree/Å in the file: 5e-9 Ha/Å = 1.4e-7 eV/Å
    np.testing.assert_allclose(np.concatenate(got.forces), np.concatenate(aspirin.forces), rtol=0,
                               atol=5e-9 * units.Hartree)
    with pytest.raises(ValueError, match=r"ha\.extxyz:1: frame 0 \(C9H8O4\) has no energy \(no extxyz energy=") as err:
        load_structure_file(path)  # no energy= and no key named
    assert "E_dft" in str(err.value) and "--energy-key" in str(err.value)
    with pytest.raises(ValueError, match="unknown energy unit 'Hartrees'.*eV, meV, Hartree"):
        load_structure_file(path, energy_key="E_dft", energy_unit="Hartrees")


def test_an_energies_only_file_is_an_energies_only_set(tmp_path, aspirin):
    path = _write(tmp_path / "e.extxyz", aspirin.structures, aspirin.energy, [None] * 12)
    got = load_structure_file(path)
    assert not got.has_forces and all(np.isnan(f).all() for f in got.forces)


def test_bad_files_are_refused_naming_the_file_frame_and_line(tmp_path, aspirin):
    n = len(aspirin.structures[0])  # 21 atoms: frame k starts on line 1 + k·23
    forces = [np.array(f) for f in aspirin.forces]
    forces[2][3, 1] = np.nan
    bad = _write(tmp_path / "nan.extxyz", aspirin.structures, aspirin.energy, forces)
    with pytest.raises(ValueError, match=rf"nan\.extxyz:{1 + 2 * (n + 2)}: frame 2: NaN in the forces of atoms \[3\]"):
        load_structure_file(bad)
    mixed = _write(tmp_path / "mixed.extxyz", aspirin.structures, aspirin.energy, [*aspirin.forces[:6], *[None] * 6])
    with pytest.raises(ValueError, match=r"mixed\.extxyz: 6 of 12 frames have no force columns \(frame 6, frame 7"):
        load_structure_file(mixed)
    close = [a.copy() for a in aspirin.structures]
    close[1].positions[4] = close[1].positions[5] + [0.1, 0, 0]
    near = _write(tmp_path / "close.extxyz", close, aspirin.energy, aspirin.forces)
    with pytest.raises(ValueError, match=rf"close\.extxyz:{1 + n + 2}: frame 1: atoms 4 and 5 .* 0\.100 Å apart"):
        load_structure_file(near)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_structure_file(tmp_path / "nothing.extxyz")
    (tmp_path / "junk.extxyz").write_text("this is not\na structure file\n")
    with pytest.raises(ValueError, match=r"junk\.extxyz could not be read by ase\.io"):
        load_structure_file(tmp_path / "junk.extxyz")
    with pytest.raises(ValueError, match="needs its energy"):
        labelled_frames(_write(tmp_path / "e.extxyz", aspirin.structures, aspirin.energy, [None] * 12),
                        require_forces=True)


@pytest.mark.parametrize("argv, message", [
    (["--system", "file"], "--system file needs --data PATH"),
    (["--system", "offline", "--data", "x.extxyz"], "--data, --energy-key, --forces-key and --energy-unit are for "
                                                    "--system file"),
    (["--system", "file", "--data", "nowhere.extxyz"], "--data: the structure file 'nowhere.extxyz' does not exist"),
])
def test_the_runner_refuses_a_bad_data_flag_before_any_task(tmp_path, capsys, argv, message):
    out = tmp_path / "res"
    assert main(["potentials", *argv, "--smoke", "--seeds", "0", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_system_file_gives_the_same_runs_as_the_same_structures_loaded_as_tio2(tmp_path, tio2):
    """The TiO2 set written to an extxyz by this test, run through the command line with
    ``--system file``, gives the rows of ``--system tio2`` (notebook 07's own stage, in process)."""
    from alhelpers.atomistic.al import run_potentials
    from alhelpers.atomistic.stages import potentials_config

    data = tio2
    path = _write(tmp_path / "TiO2 set.extxyz", data.structures, data.energy, data.forces)
    out = tmp_path / "res"
    strategies = ["random", "maxdet-gp-ll"]
    assert main(["potentials", "--system", "file", "--data", str(path), "--smoke", "--seeds", "0",
                 "--strategies", *strategies, "--out", str(out)]) == 0
    got = pd.read_parquet(out / "potentials" / "file-TiO2_set_runs.parquet")
    cfg = potentials_config("tio2", len(data), smoke=True, strategies=strategies)
    want = run_potentials(data, cfg)
    assert set(got["system"]) == {"file-TiO2_set"}
    keep = [c for c in want.columns if c not in TIMES and c != "system"]
    pd.testing.assert_frame_equal(got.sort_values(["strategy", "round"])[keep].reset_index(drop=True),
                                  want.sort_values(["strategy", "round"])[keep].reset_index(drop=True),
                                  check_exact=True)
    assert (out / "figures" / "potentials_curves_file-TiO2_set.png").exists()
