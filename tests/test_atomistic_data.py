"""Track B data: real TiO2/LMNTO DFT sets, the offline GFN2-xTB MD set, QM9, splits, downloads."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from ase.units import Hartree, Ry

from alhelpers.atomistic import data as D
from alhelpers.atomistic.data import offline, remote
from alhelpers.atomistic.data.xsf import XSFError
from alhelpers.files import UnreadableFileError
from alhelpers.structures import StructureSet

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TIO2_FILE = SHARED_DATA / "tio2_aenet" / "tio2_dir_xsf.tar.gz"
LMNTO_FILE = SHARED_DATA / "lmnto_aenet" / "lmnto_xsf.tar.gz"

needs_tio2 = pytest.mark.skipif(not TIO2_FILE.exists(), reason=f"real TiO2 data absent ({TIO2_FILE})")
needs_lmnto = pytest.mark.skipif(not LMNTO_FILE.exists(), reason=f"real LMNTO data absent ({LMNTO_FILE})")

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


@pytest.fixture(scope="module")
def tio2() -> StructureSet:
    if not TIO2_FILE.exists():
        pytest.skip(f"real TiO2 data absent ({TIO2_FILE})")
    return D.load_tio2()


def _member_text(tarball: Path, member: str) -> str:
    with tarfile.open(tarball) as tar:
        return tar.extractfile(member).read().decode()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- XSF reader


def test_read_xsf_small_file_and_ase_force_units(tmp_path):
    path = tmp_path / "s.xsf"
    path.write_text(SMALL_XSF)
    atoms, energy, forces = D.read_xsf(path)
    assert energy == -12.5
    assert atoms.get_chemical_symbols() == ["Li", "O"]
    assert atoms.pbc.all() and np.allclose(atoms.cell.lengths(), 4.0)
    assert np.array_equal(forces, [[0.1, -0.2, 0.3], [-0.1, 0.2, -0.3]])
    assert atoms.calc is None
    # why the forces are parsed from the text: ASE reads XSF forces as Hartree/Å
    import ase.io

    assert np.allclose(ase.io.read(path, format="xsf").get_forces(), forces * Hartree)
    # file objects work too (binary and text)
    with open(path, "rb") as fh:
        assert D.read_xsf(fh)[1] == -12.5
    assert np.array_equal(D.read_xsf(io.StringIO(SMALL_XSF))[2], forces)


def test_read_xsf_molecule_block(tmp_path):
    text = "# total energy = -3.0 eV\nATOMS\nH 0 0 0 0.5 0 0\nH 0.74 0 0 -0.5 0 0\n"
    atoms, energy, forces = D.read_xsf(io.StringIO(text))
    assert not atoms.pbc.any() and len(atoms) == 2 and energy == -3.0
    assert np.array_equal(forces[:, 0], [0.5, -0.5])


def test_read_xsf_errors(tmp_path):
    no_energy = tmp_path / "noenergy.xsf"
    no_energy.write_text(SMALL_XSF.replace("# total energy = -12.5 eV", "# some comment"))
    with pytest.raises(ValueError, match="no total energy"):
        D.read_xsf(no_energy)
    bad_element = tmp_path / "bad.xsf"
    bad_element.write_text(SMALL_XSF.replace("Li ", "Xx "))
    with pytest.raises(ValueError, match="Xx"):
        D.read_xsf(bad_element)


def _tarball(tmp_path: Path, members: dict[str, str]) -> Path:
    path = tmp_path / "set.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _file(tmp_path: Path, text: str | bytes, name: str = "s.xsf") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# --------------------------------------------------------------------------- energy units


@pytest.mark.parametrize("unit, factor", [("eV", 1.0), ("Ry", Ry), ("Ha", Hartree), ("hartree", Hartree),
                                          ("meV", 1e-3)])
def test_xsf_energy_units_are_converted(tmp_path, unit, factor):
    path = _file(tmp_path, SMALL_XSF.replace("-12.5 eV", f"-12.5 {unit}"))
    assert D.read_xsf(path)[1] == pytest.approx(-12.5 * factor, rel=1e-15)
    assert Ry == pytest.approx(13.605693, rel=1e-6) and Hartree == pytest.approx(27.211386, rel=1e-6)


def test_xsf_unknown_energy_unit_is_refused_with_file_and_line(tmp_path):
    path = _file(tmp_path, "\n" + SMALL_XSF.replace("-12.5 eV", "-12.5 furlongs"))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:2: unknown energy unit 'furlongs'"):
        D.read_xsf(path)


def test_xsf_energy_without_unit_is_read_as_ev_and_said(tmp_path):
    path = _file(tmp_path, SMALL_XSF.replace("-12.5 eV", "-12.5"))
    with pytest.warns(UserWarning, match=rf"{re.escape(str(path))}: the total energy has no unit; read as eV"):
        assert D.read_xsf(path)[1] == -12.5
    # a tarball says it once, with the count
    tar = _tarball(tmp_path, {"d/a.xsf": SMALL_XSF.replace(" eV", ""), "d/b.xsf": SMALL_XSF.replace(" eV", ""),
                              "d/c.xsf": SMALL_XSF})
    with pytest.warns(UserWarning, match=r"2 of 3 files \(first: .*set.tar.gz:d/a.xsf\): the total energy has no unit") as rec:
        D.read_xsf_tarball(tar, references=None, name="toy")
    assert len([w for w in rec if "no unit" in str(w.message)]) == 1


# --------------------------------------------------------------------------- malformed lines


@pytest.mark.parametrize("edit, line, message", [
    (("2.0 2.0 2.0", "2.0 2.0.1 2.0"), 11, r"'2.0.1' is not a number \(a coordinate\)"),
    (("2.0 2.0 2.0", "2.0 nan 2.0"), 11, r"'nan' is not a finite number \(a coordinate\)"),
    (("-0.1  0.2 -0.3", "-0.1  inf -0.3"), 11, r"'inf' is not a finite number \(a force\)"),
    (("-12.5 eV", "-1x2.5 eV"), 1, r"'-1x2.5' is not a number \(the total energy\)"),
    (("2 1\n", "3 1\n"), 9, r"PRIMCOORD announces 3 atoms but 2 atom lines follow"),
    (("2 1\n", "1 1\n"), 9, r"PRIMCOORD announces 1 atoms but 2 atom lines follow; correct the count or remove"),
    (("4.0 0.0 0.0\n  0.0 4.0", "4.0 0.0 0.0\n  0.0 x4.0"), 6, r"'x4.0' is not a number \(a cell vector\)"),
    (("O   2.0", "Qq  2.0"), 11, r"unknown element symbol 'Qq'"),
    (("O   2.0 2.0 2.0  -0.1  0.2 -0.3", "O   2.0 2.0 2.0  -0.1  0.2"), 11, r"an atom line has 4 fields"),
])
def test_xsf_errors_name_the_file_and_the_line(tmp_path, edit, line, message):
    path = _file(tmp_path, SMALL_XSF.replace(*edit))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:{line}: {message}"):
        D.read_xsf(path)


def _grid_xsf(announced: int, atoms: int, after: str = "") -> str:
    """A 10 Å cubic CRYSTAL with ``atoms`` Ti atoms on a 2.5 Å grid under ``PRIMCOORD <announced> 1``."""
    rows = [f"Ti {x * 2.5:.1f} {y * 2.5:.1f} {z * 2.5:.1f} 0.0 0.0 0.0"
            for x, y, z in np.ndindex(4, 4, 4)][:atoms]
    return ("# total energy = -24.0 eV\n\nCRYSTAL\nPRIMVEC\n 10.0 0.0 0.0\n 0.0 10.0 0.0\n 0.0 0.0 10.0\n"
            f"PRIMCOORD\n{announced} 1\n" + "\n".join(rows) + "\n" + after)


def test_primcoord_count_must_match_the_atom_lines_both_ways(tmp_path):
    """Before: ``PRIMCOORD 20`` over 24 atom lines read 20 atoms with the 24-atom energy, silently."""
    path = _file(tmp_path, _grid_xsf(20, 24))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:9: PRIMCOORD announces 20 atoms but 24 atom lines "
                                       "follow; correct the count or remove the extra atoms$"):
        D.read_xsf(path)
    path = _file(tmp_path, _grid_xsf(24, 20), "short.xsf")
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:9: PRIMCOORD announces 24 atoms but 20 atom lines "
                                       "follow; correct the count or add the missing atoms$"):
        D.read_xsf(path)
    assert len(D.read_xsf(io.StringIO(_grid_xsf(24, 24)))[0]) == 24
    # blocks after the atoms (a data grid, any BEGIN_… block) are not atom lines
    grid = "BEGIN_BLOCK_DATAGRID_3D\n density\n BEGIN_DATAGRID_3D_rho\n 2 2 2\n 0.0 0.0 0.0\nEND_BLOCK_DATAGRID_3D\n"
    assert len(D.read_xsf(io.StringIO(_grid_xsf(24, 24, grid)))[0]) == 24
    assert len(D.read_xsf(io.StringIO(_grid_xsf(24, 24, "BEGIN_BLOCK_BANDGRID_3D\n 1 2 3\n")))[0]) == 24


@pytest.mark.parametrize("cell, periodic", [
    (("0.0 0.0 4.0", "0.0 0.0 0.0"), "CRYSTAL"),  # a zero vector
    (("0.0 0.0 4.0", "4.0 4.0 0.0"), "CRYSTAL"),  # three vectors in one plane
    (("0.0 0.0 4.0", "0.0 0.0 0.0"), "SLAB"),  # the non-periodic vector is needed too
])
def test_xsf_cell_without_volume_is_refused_with_the_lines_of_the_cell(tmp_path, cell, periodic):
    """Before: ``numpy.linalg.LinAlgError: Singular matrix`` from the neighbour list, no file named."""
    path = _file(tmp_path, SMALL_XSF.replace(*cell).replace("CRYSTAL", periodic))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:5: the PRIMVEC cell vectors \(lines 5-7\) span no "
                                       rf"volume .*a {periodic} needs three linearly independent cell vectors"):
        D.read_xsf(path)


def test_xsf_non_utf8_bytes_name_the_file_and_the_line(tmp_path):
    raw = SMALL_XSF.replace("Li ", "L\xe9 ").encode("latin-1")
    path = _file(tmp_path, raw)
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:10: byte 0xe9 is not UTF-8 text"):
        D.read_xsf(path)


def test_tarball_member_errors_name_the_archive_the_member_and_the_line(tmp_path):
    """Before: one inf force made the whole tarball energy-only without a word."""
    tar = _tarball(tmp_path, {"d/a.xsf": SMALL_XSF, "d/b.xsf": SMALL_XSF.replace("-0.1  0.2", "-0.1  inf")})
    with pytest.raises(XSFError, match=rf"^{re.escape(str(tar))}:d/b.xsf:11: 'inf' is not a finite number"):
        D.read_xsf_tarball(tar, references=None, name="toy")


def _without_forces(text: str) -> str:
    return "\n".join(" ".join(line.split()[:4]) if line[:1].isalpha() and len(line.split()) == 7 else line
                     for line in text.splitlines()) + "\n"


def test_tarball_with_forces_for_some_members_only_is_refused(tmp_path):
    """Before: one member without force columns made the whole set energy-only (has_forces False,
    every structure's forces ignored in training) without a word."""
    plain = _without_forces(SMALL_XSF)
    assert "0.3" not in plain and D.read_xsf(io.StringIO(plain))[0].get_chemical_symbols() == ["Li", "O"]
    members = {f"d/{k:02d}.xsf": (plain if k in (1, 3, 4, 5, 6, 7, 8) else SMALL_XSF) for k in range(10)}
    tar = _tarball(tmp_path, members)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tar))}: 7 of 10 members have no force columns "
                                         r"\(d/01.xsf, d/03.xsf, d/04.xsf, d/05.xsf, d/06.xsf, …\) and 3 have them; "
                                         "give forces for every structure or for none"):
        D.read_xsf_tarball(tar, references=None, name="toy")
    # limit= reads the first members only: d/00 and d/01 are already mixed, d/00 alone is not
    with pytest.raises(ValueError, match=r"1 of 2 members have no force columns \(d/01.xsf\) and 1 have them"):
        D.read_xsf_tarball(tar, references=None, name="toy", limit=2)
    assert D.read_xsf_tarball(tar, references=None, name="toy", limit=1).has_forces
    # no member with forces: an energy-only set, as before
    tar = _tarball(tmp_path, {"d/a.xsf": plain, "d/b.xsf": plain})
    ds = D.read_xsf_tarball(tar, references=None, name="toy")
    assert not ds.has_forces and all(np.isnan(f).all() for f in ds.forces) and ds.energy.tolist() == [-12.5, -12.5]


def test_xsf_atoms_on_top_of_each_other_are_refused_with_both_lines(tmp_path):
    path = _file(tmp_path, SMALL_XSF.replace("O   2.0 2.0 2.0", "O   0.0 0.0 0.1"))
    with pytest.raises(XSFError, match=rf"^{re.escape(str(path))}:10: atoms 0 and 1 \(lines 10 and 11\) are "
                                       r"0.100 Å apart, closer than 0.5 Å"):
        D.read_xsf(path)
    # periodic images count: an atom 0.2 Å from the image of another across the cell face
    path = _file(tmp_path, SMALL_XSF.replace("O   2.0 2.0 2.0", "O   3.8 0.0 0.0"), "image.xsf")
    with pytest.raises(XSFError, match=r"atoms 0 and 1 \(lines 10 and 11\) are 0.200 Å apart"):
        D.read_xsf(path)


def test_xsf_structures_agree_with_ase(tmp_path):
    import ase.io

    text = SMALL_XSF.replace("O   2.0 2.0 2.0", "8   2.0 2.5 1.5")
    ours = D.read_xsf(io.StringIO(text))[0]
    ref = ase.io.read(io.StringIO(text), format="xsf")
    assert ours.get_chemical_symbols() == ref.get_chemical_symbols() == ["Li", "O"]
    assert np.array_equal(ours.positions, ref.positions) and np.array_equal(ours.cell[:], ref.cell[:])
    assert ours.pbc.tolist() == ref.pbc.tolist() == [True, True, True]


def test_read_xsf_tarball_references_and_order(tmp_path):
    second = SMALL_XSF.replace("-12.5", "-20.0")
    path = _tarball(tmp_path, {"d/b.xsf": second, "d/a.xsf": SMALL_XSF, "d/readme.txt": "x"})
    ds = D.read_xsf_tarball(path, references={"Li": -2.0, "O": -4.0}, name="toy")
    assert ds.meta["members"] == ["d/a.xsf", "d/b.xsf"]  # sorted, non-xsf skipped
    assert np.allclose(ds.energy, [-12.5 + 6.0, -20.0 + 6.0])
    assert np.allclose(ds.meta["total_energy"], [-12.5, -20.0])
    assert ds.has_forces and ds.references == {"Li": -2.0, "O": -4.0}
    raw = D.read_xsf_tarball(path, references=None, name="toy", limit=1)
    assert len(raw) == 1 and raw.energy[0] == -12.5 and raw.references == {}
    with pytest.raises(ValueError, match=r"element 'Li'.*references=") as err:
        D.read_xsf_tarball(path, references={"O": -4.0}, name="toy")
    assert "d/a.xsf" in str(err.value)


# --------------------------------------------------------------------------- TiO2, LMNTO


def test_tio2_real_set(tio2):
    assert len(tio2) == 1000
    assert tio2.n_atoms.min() == 6 and tio2.n_atoms.max() == 95
    assert tio2.species == (8, 22)
    assert tio2.meta["sha256"] == D.TIO2.sha256 and tio2.meta["sha256_pinned"]
    assert tio2.references == D.TIO2_REFERENCES
    per_atom = tio2.energy / tio2.n_atoms
    assert np.all((per_atom > -9.5) & (per_atom < -6.0)), (per_atom.min(), per_atom.max())
    assert all(f.shape == (len(a), 3) for a, f in zip(tio2.structures, tio2.forces))
    allf = np.concatenate(tio2.forces)
    assert np.isfinite(allf).all() and 0.1 < np.sqrt((allf**2).mean()) < 5.0
    assert tio2.meta["members"] == sorted(tio2.meta["members"])


@needs_tio2
def test_xsf_reader_agrees_with_ase_on_every_tio2_file():
    """The project's XSF parser gives ase.io.read's structures (numbers, positions, cell, pbc) for
    all 1,000 TiO2 files (and the forces ASE would have read in Ha/Å, divided back)."""
    import ase.io

    with tarfile.open(TIO2_FILE) as tar:
        members = [m for m in tar if m.isfile() and m.name.endswith(".xsf")]
        assert len(members) == 1000
        for m in members:
            raw = tar.extractfile(m).read()  # type: ignore[union-attr]
            ours, _, forces = D.read_xsf(io.BytesIO(raw))
            ref = ase.io.read(io.StringIO(raw.decode()), format="xsf")
            assert np.array_equal(ours.numbers, ref.numbers) and np.array_equal(ours.positions, ref.positions), m.name
            assert np.array_equal(ours.cell[:], ref.cell[:]) and ours.pbc.tolist() == ref.pbc.tolist(), m.name
            np.testing.assert_allclose(forces * Hartree, ref.get_forces(), rtol=1e-12, atol=1e-12)


def test_tio2_values_match_raw_text(tio2):
    k = 3
    member = tio2.meta["members"][k]
    lines = _member_text(TIO2_FILE, member).splitlines()
    total = float(re.search(r"total energy\s*=\s*(\S+)", lines[0]).group(1))
    start = lines.index("PRIMCOORD") + 2
    n = int(lines[start - 1].split()[0])
    cols = [ln.split() for ln in lines[start : start + n]]
    atoms = tio2.structures[k]
    assert atoms.get_chemical_symbols() == [c[0] for c in cols]
    assert np.allclose(atoms.positions, [[float(x) for x in c[1:4]] for c in cols], atol=1e-12)
    assert np.array_equal(tio2.forces[k], [[float(x) for x in c[4:7]] for c in cols])
    refs = sum(D.TIO2_REFERENCES[s] for s in atoms.get_chemical_symbols())
    assert tio2.energy[k] == pytest.approx(total - refs, abs=1e-9)


@needs_lmnto
def test_lmnto_real_set():
    ds = D.load_lmnto()
    assert len(ds) == 824 and set(ds.n_atoms) == {56}
    assert {a.get_chemical_formula() for a in ds.structures} == {"Li8Mo2Ni7O32Ti7"}
    assert ds.references == {} and ds.meta["sha256_pinned"]
    assert np.all((ds.energy > -700) & (ds.energy < -560))  # DFT totals, nothing subtracted
    assert all(f.shape == (56, 3) and np.isfinite(f).all() for f in ds.forces)
    member = ds.meta["members"][0]
    first = _member_text(LMNTO_FILE, member).splitlines()[0]
    assert ds.energy[0] == pytest.approx(float(first.split("=")[1].split()[0]), abs=1e-9)


@needs_tio2
def test_corrupted_copy_is_rejected(tmp_path):
    bad = tmp_path / D.TIO2.filename
    raw = bytearray(TIO2_FILE.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(D.DataIntegrityError, match="sha256.*download_tio2"):
        D.load_tio2(bad)


@needs_tio2
def test_search_order_cache_then_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("ALHELPERS_DATA_CACHE", str(tmp_path))
    assert D.find_dataset_file(D.TIO2) == TIO2_FILE  # falls back to ../shared/data
    (tmp_path / "potentials").mkdir()
    shutil.copy(TIO2_FILE, tmp_path / "potentials" / D.TIO2.filename)
    assert D.find_dataset_file(D.TIO2) == tmp_path / "potentials" / D.TIO2.filename
    assert len(D.load_tio2(limit=4)) == 4


def test_missing_file_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ALHELPERS_DATA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(remote, "REPO_ROOT", tmp_path / "nowhere" / "repo")
    with pytest.raises(FileNotFoundError, match=r"download_tio2\(\)"):
        D.load_tio2()
    with pytest.raises(FileNotFoundError, match=r"download_lmnto\(\)"):
        D.load_lmnto()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.load_tio2(tmp_path / "missing.tar.gz")


# --------------------------------------------------------------------------- downloads (fake transport)


class FakeResponse:
    def __init__(self, payload: bytes, status: int = 200):
        self.payload, self.status_code, self.closed = payload, status, False

    def raise_for_status(self):
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code} error")

    def iter_content(self, chunk_size=1):
        for i in range(0, len(self.payload), chunk_size):
            yield self.payload[i : i + chunk_size]

    def close(self):
        self.closed = True


class FakeTransport:
    """Stands in for ``requests``: records the calls, serves one payload."""

    def __init__(self, payload: bytes = b"", status: int = 200, error: Exception | None = None):
        self.payload, self.status, self.error, self.calls = payload, status, error, []

    def get(self, url, stream=False, timeout=None):
        self.calls.append({"url": url, "stream": stream, "timeout": timeout})
        if self.error is not None:
            raise self.error
        return FakeResponse(self.payload, self.status)


@needs_tio2
def test_download_tio2_with_fake_requests(tmp_path, monkeypatch):
    fake = FakeTransport(TIO2_FILE.read_bytes())
    monkeypatch.setattr(remote.requests, "get", fake.get)  # no network: requests.get is faked
    path = D.download_tio2(tmp_path)
    assert path == tmp_path / D.TIO2.filename and D.sha256_file(path) == D.TIO2.sha256
    call = fake.calls[0]
    assert call["url"] == (
        "https://raw.githubusercontent.com/atomisticnet/aenet-PyTorch/"
        "c1cf315c39382663e14654ccf5bade967acebe73/example/dir_xsf.tar.gz"
    )
    assert call["stream"] is True and call["timeout"] > 0
    assert json.loads((tmp_path / (D.TIO2.filename + ".json")).read_text())["sha256"] == D.TIO2.sha256
    assert len(D.load_tio2(path, limit=2)) == 2
    assert D.download_tio2(tmp_path) == path and len(fake.calls) == 1  # already there: no refetch


def test_download_tio2_rejects_wrong_bytes_and_errors(tmp_path):
    fake = FakeTransport(b"not the file")
    with pytest.raises(D.DataIntegrityError, match="nothing was written"):
        D.download_tio2(tmp_path, session=fake)
    assert list(tmp_path.iterdir()) == []  # no partial or wrong file left behind
    with pytest.raises(ConnectionError, match="download"):
        D.download_tio2(tmp_path, session=FakeTransport(error=requests.ConnectTimeout("slow")))
    with pytest.raises(ConnectionError):
        D.download_tio2(tmp_path, session=FakeTransport(b"", status=404))
    assert list(tmp_path.iterdir()) == []


def _fake_repo_zip(frames: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    top = f"aenet-python-{D.LMNTO.commit}"
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{top}/README.md", "aenet-python")
        zf.writestr(f"{top}/notebooks/xsf/nested/skip.xsf", SMALL_XSF)
        for name, text in frames.items():
            zf.writestr(f"{top}/notebooks/xsf/{name}", text)
    return buf.getvalue()


def test_download_lmnto_with_fake_requests(tmp_path):
    frames = {f"structure{i:03d}.xsf": SMALL_XSF.replace("-12.5", f"-1{i}.0") for i in (3, 1, 2)}
    fake = FakeTransport(_fake_repo_zip(frames))
    path = D.download_lmnto(tmp_path, session=fake)
    assert fake.calls[0]["url"] == (
        "https://codeload.github.com/atomisticnet/aenet-python/zip/"
        "eb2bca77f319feed279268a3607fe0be0e4c98c1"
    )
    with tarfile.open(path) as tar:
        assert sorted(m.name for m in tar if m.isfile()) == [f"xsf/structure00{i}.xsf" for i in (1, 2, 3)]
    record = json.loads((tmp_path / (D.LMNTO.filename + ".json")).read_text())
    assert record["n_structures"] == 3 and record["sha256"] == D.sha256_file(path)
    ds = D.load_lmnto(path)  # verified against the download record, not the pinned sha256
    assert len(ds) == 3 and not ds.meta["sha256_pinned"]
    assert np.allclose(ds.energy, [-11.0, -12.0, -13.0])
    first_bytes = path.read_bytes()
    path.unlink()
    assert D.download_lmnto(tmp_path, session=FakeTransport(_fake_repo_zip(frames))).read_bytes() == first_bytes
    path.write_bytes(first_bytes[:-10])  # truncated → rejected
    with pytest.raises(D.DataIntegrityError):
        D.load_lmnto(path)


def test_download_lmnto_without_frames(tmp_path):
    with pytest.raises(ValueError, match="notebooks/xsf"):
        D.download_lmnto(tmp_path, session=FakeTransport(_fake_repo_zip({})))
    with pytest.raises(D.DataIntegrityError, match="zip"):
        D.download_lmnto(tmp_path, session=FakeTransport(b"<html>rate limited</html>"))
    assert not (tmp_path / D.LMNTO.filename).exists()


# --------------------------------------------------------------------------- splits, dispatch


def test_split_indices():
    s = D.split_indices(1000, n_pool=700, n_val=50, n_test=250, seed=3)
    assert [len(s[k]) for k in ("pool", "val", "test", "rest")] == [700, 50, 250, 0]
    allidx = np.concatenate([s["pool"], s["val"], s["test"]])
    assert len(np.unique(allidx)) == 1000
    again = D.split_indices(1000, n_pool=700, n_val=50, n_test=250, seed=3)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    other = D.split_indices(1000, n_pool=700, n_val=50, n_test=250, seed=4)
    assert not np.array_equal(s["pool"], other["pool"])
    small = D.split_indices(10, n_pool=3, n_val=2, n_test=1, seed=0)
    assert len(small["rest"]) == 4
    with pytest.raises(ValueError, match="exceeds"):
        D.split_indices(10, n_pool=8, n_val=2, n_test=1, seed=0)


def test_load_dataset_dispatch():
    off = D.load_dataset("offline", limit=3)
    assert off.name == "offline" and len(off) == 3
    if TIO2_FILE.exists():
        assert len(D.load_dataset("TiO2", limit=2)) == 2
    with pytest.raises(ValueError, match="unknown data set"):
        D.load_dataset("md17")


# --------------------------------------------------------------------------- offline MD set


def test_offline_set_loads_with_sha_and_recipe():
    recipe = offline.verify_offline()
    ds = offline.load_offline()
    assert ds.meta["sha256"] == recipe["file"]["sha256"]
    assert len(ds) == recipe["md"]["n_frames"] >= 1000
    assert {a.get_chemical_formula() for a in ds.structures} == {"C9H8O4"}
    assert set(ds.n_atoms) == {21}
    assert ds.references.keys() == {"C", "H", "O"}
    assert recipe["method"]["name"] == "GFN2-xTB" and recipe["md"]["temperature_K"] == 500.0
    assert recipe["md"]["seed"] == offline.DEFAULTS["seed"]
    assert recipe["checks"]["all_frames_bonds_intact"]
    assert {"tblite", "ase", "numpy"} <= recipe["versions"].keys()
    assert np.isfinite(ds.energy).all() and np.ptp(ds.energy) > 0.5  # diverse conformations
    f = np.stack(ds.forces)
    assert np.isfinite(f).all() and np.abs(f.sum(axis=1)).max() < 1e-3  # no net force
    size = (offline.potentials_dir() / offline.DATA_FILE).stat().st_size
    assert size == recipe["file"]["bytes"] < 1_600_000


def test_offline_set_corruption_and_missing(tmp_path):
    src = offline.potentials_dir()
    shutil.copy(src / offline.RECIPE_FILE, tmp_path / offline.RECIPE_FILE)
    raw = bytearray((src / offline.DATA_FILE).read_bytes())
    raw[-100] ^= 0x01
    (tmp_path / offline.DATA_FILE).write_bytes(bytes(raw))
    with pytest.raises(D.DataIntegrityError, match="corrupt") as err:
        offline.load_offline(tmp_path)
    # one concept: an unreadable file (as alhelpers.files reports them), still a RuntimeError
    assert isinstance(err.value, UnreadableFileError) and isinstance(err.value, RuntimeError)
    assert err.value.path == tmp_path / offline.DATA_FILE
    with pytest.raises(FileNotFoundError, match="data.offline build"):
        offline.load_offline(tmp_path / "empty")


def test_aspirin_geometry_is_sane():
    atoms = offline.aspirin()
    assert atoms.get_chemical_formula() == "C9H8O4" and len(atoms) == 21
    d = atoms.get_all_distances() + 10 * np.eye(21)
    assert d.min() > 0.9
    assert len(offline.bond_graph(atoms)) == 21  # 20 tree bonds + 1 ring closure


@pytest.mark.slow
def test_tiny_md_build_forces_match_energy(tmp_path):
    from tblite.ase import TBLite

    recipe = offline.build(tmp_path, n_frames=4, stride=5, n_equilibrate=10)
    ds = offline.load_offline(tmp_path)
    assert len(ds) == 4 and recipe["file"]["sha256"] == hashlib.sha256(
        (tmp_path / offline.DATA_FILE).read_bytes()).hexdigest()
    assert np.isfinite(ds.energy).all() and all(np.isfinite(f).all() for f in ds.forces)
    atoms = ds.structures[-1].copy()
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    h, i = 1e-3, 4
    for c in range(3):
        e = []
        for sign in (1, -1):
            atoms.positions[i, c] += sign * h
            e.append(atoms.get_potential_energy())
            atoms.positions[i, c] -= sign * h
        assert -(e[0] - e[1]) / (2 * h) == pytest.approx(ds.forces[-1][i, c], abs=2e-3)


# --------------------------------------------------------------------------- QM9 (optional)


def test_qm9_without_package_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "qm9pack" else real(n, *a))
    with pytest.raises(ImportError, match="pip install qm9pack"):
        D.load_qm9(limit=1)


def _qm9_source():
    import importlib.util

    if importlib.util.find_spec("qm9pack") is not None:
        return None
    for wheel in sorted(Path("/tmp/pk").glob("qm9pack-*.whl")):
        return wheel
    pytest.skip("qm9pack is not installed (optional: pip install qm9pack)")


@pytest.mark.slow
def test_qm9_energies_only():
    ds = D.load_qm9(limit=200, path=_qm9_source())
    assert len(ds) == 200 and not ds.has_forces
    assert all(np.isnan(f).all() for f in ds.forces)
    assert set(ds.species) <= {1, 6, 7, 8, 9}
    assert ds.structures[0].get_chemical_formula() == "CH4"
    # methane: U0 −40.47893 Ha minus atomrefs C + 4 H = −0.631066 Ha
    assert ds.energy[0] == pytest.approx(-0.631066 * Hartree, abs=1e-4)
    per_atom = ds.energy / ds.n_atoms
    assert np.all((per_atom < -2.0) & (per_atom > -7.0))
    totals = D.load_qm9(limit=5, path=_qm9_source(), references=None)
    assert totals.references == {} and totals.energy[0] == pytest.approx(-40.47893 * Hartree)
