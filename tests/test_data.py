"""Snapshot integrity, system selection, filters, de-duplication, split, bring-your-own tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alhelpers.data import (
    FilterStep,
    clean_entries,
    fetch_raw,
    fetch_system,
    read_user_table,
    select_system,
    split_pool_test,
    summarize_system,
    system_elements,
)
from alhelpers.data.snapshot import (
    INPUTS,
    SnapshotIntegrityError,
    load_snapshot,
    parse_flla,
    parse_thermodata,
    read_manifest,
    verify_snapshot,
)
from alhelpers.data.systems import deduplicate, filter_finite_target, filter_sites, filter_unphysical
from alhelpers.keys import Key

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- snapshot


def test_manifest_matches_files_and_known_row_counts(snapshot):
    manifest = verify_snapshot()
    rows = {k: v["rows"] for k, v in manifest["outputs"].items()}
    # STUDY §1: 3,938 flla rows, 15,436 legacy OQMD lines, 1,546 MP lines in qmpy
    assert rows == {"flla_2015": 3938, "qmpy_legacy": 15436, "qmpy_mat_proj": 1546}
    assert len(snapshot) == sum(rows.values())
    assert set(snapshot[Key.source]) == {"mp", "oqmd"}
    assert snapshot[Key.entry_id].is_unique
    for spec in INPUTS.values():
        assert manifest["inputs"][spec.package]["sha256"] == spec.sha256
        assert manifest["inputs"][spec.package]["licence"]
    assert all(o["attribution"] for o in manifest["outputs"].values())


def test_snapshot_rows_are_real_and_typed(snapshot):
    flla = snapshot[snapshot[Key.dataset] == "flla_2015"]
    assert flla[Key.structure].notna().all()
    assert snapshot[Key.target].dtype == np.float64
    # mp-10 is elemental arsenic in the flla file: 2 sites, E_f = 0.1074 eV/atom
    row = flla.set_index(Key.entry_id).loc["mp-10"]
    assert row[Key.formula] == "As" and row[Key.nsites] == 2
    assert row[Key.target] == pytest.approx(0.1074050600000005)
    from pymatgen.core import Structure

    s = Structure.from_dict(json.loads(row[Key.structure]))
    assert len(s) == 2 and s.volume == pytest.approx(row[Key.volume])
    # composition-only rows carry no structure and no made-up properties
    legacy = snapshot[snapshot[Key.dataset] == "qmpy_legacy"]
    assert legacy[Key.structure].isna().all() and legacy[Key.density].isna().all()
    assert legacy.iloc[0][Key.formula] == "TlPb2Cl5"  # first line: Cl5Pb2Tl -1.459858
    assert legacy.iloc[0][Key.target] == pytest.approx(-1.459858)
    assert legacy.iloc[0][Key.nsites] == 8


def _copy_cache(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    shutil.copytree(REPO / "data_cache" / "snapshot", root / "snapshot")
    shutil.copy(REPO / "data_cache" / "MANIFEST.json", root / "MANIFEST.json")
    return root


def test_corrupt_snapshot_file_is_refused_with_a_fix(tmp_path):
    root = _copy_cache(tmp_path)
    target = root / "snapshot" / "qmpy_mat_proj.parquet"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(SnapshotIntegrityError, match="corrupt or was changed") as err:
        load_snapshot(root=root)
    assert "snapshot build" in str(err.value) and "qmpy_mat_proj" in str(err.value)


def test_missing_snapshot_file_and_manifest(tmp_path):
    root = _copy_cache(tmp_path)
    (root / "snapshot" / "flla_2015.parquet").unlink()
    with pytest.raises(SnapshotIntegrityError, match="missing"):
        verify_snapshot(root)
    with pytest.raises(SnapshotIntegrityError, match="no snapshot manifest"):
        read_manifest(tmp_path / "nowhere")


@pytest.mark.parametrize("content", ['{"format": 1, "outputs": {"flla_2015": {"fi', "", "[]",
                                     '{"format": 1}', '{"outputs": {"flla_2015": {"rows": 3}}}'])
def test_broken_manifest_names_the_file_and_the_fix_for_every_reader(tmp_path, monkeypatch, content):
    from alhelpers.files import UnreadableFileError
    from alhelpers.provenance import data_hashes

    root = _copy_cache(tmp_path)
    (root / "MANIFEST.json").write_text(content)
    monkeypatch.setenv("ALHELPERS_DATA_CACHE", str(root))
    readers = [read_manifest, verify_snapshot, load_snapshot, lambda: fetch_system("snapshot", "C"),
               lambda: data_hashes(tmp_path)]
    for read in readers:
        with pytest.raises(UnreadableFileError) as err:
            read()
        msg = str(err.value)
        assert err.value.path == root / "MANIFEST.json" and str(root / "MANIFEST.json") in msg
        assert "git checkout -- data_cache/MANIFEST.json" in msg
        assert f"python -m alhelpers.data.snapshot build --out {root}" in msg


def test_cache_root_follows_environment(tmp_path, monkeypatch):
    root = _copy_cache(tmp_path)
    monkeypatch.setenv("ALHELPERS_DATA_CACHE", str(root))
    from alhelpers.data.paths import cache_root

    assert cache_root() == root.resolve()
    assert len(load_snapshot(["qmpy_mat_proj"])) == 1546


def test_parse_thermodata_reads_composition_lines():
    raw = b"composition energy\nCl5Pb2Tl -1.459858\nTiO2 -3.2\n\n"
    df = parse_thermodata(raw, source="oqmd", dataset="qmpy_legacy")
    assert df[Key.formula].tolist() == ["TlPb2Cl5", "TiO2"]
    assert df[Key.nsites].tolist() == [8, 3]
    assert df[Key.entry_id].tolist() == ["qmpy_legacy:2", "qmpy_legacy:3"]
    assert df[Key.target].tolist() == [-1.459858, -3.2]


def test_parse_flla_round_trips_a_real_row(snapshot):
    row = snapshot.set_index(Key.entry_id).loc["mp-10"]
    sdict = json.loads(row[Key.structure])
    csv = (
        "# ref: Faber et al. 2015\n"
        "material_id,formula,e_above_hull,nsites,structure,formation_energy_per_atom,formation_energy\n"
        f"mp-10,\"{{'As': 1.0}}\",{float(row[Key.e_above_hull])!r},2,\"{sdict!r}\",{float(row[Key.target])!r},0.2148\n"
    )
    df = parse_flla(csv.encode())
    assert df.loc[0, Key.formula] == "As" and df.loc[0, Key.nsites] == 2
    assert df.loc[0, Key.target] == row[Key.target]
    assert df.loc[0, Key.density] == pytest.approx(row[Key.density])
    assert bool(df.loc[0, Key.is_stable]) is False  # e_above_hull 0.107 > 0


@pytest.mark.slow
@pytest.mark.network
def test_rebuild_reproduces_the_committed_snapshot_byte_for_byte(tmp_path):
    import pyarrow

    from alhelpers.data.snapshot import build_snapshot

    committed = read_manifest()
    if committed["built_with"]["pyarrow"] != pyarrow.__version__:
        pytest.skip("byte-for-byte needs the pyarrow version recorded in MANIFEST.json")
    manifest = build_snapshot(tmp_path)
    assert manifest == committed
    for out in manifest["outputs"].values():
        assert (tmp_path / out["file"]).read_bytes() == (REPO / "data_cache" / out["file"]).read_bytes()


# --------------------------------------------------------------------------- systems


def test_system_elements_and_unknown_system():
    assert system_elements("Ti-O") == ("Ti", "O")
    assert system_elements("Li-Co-O") == ("Li", "Co", "O")
    assert system_elements("O-Ti") == ("Ti", "O")
    with pytest.raises(ValueError, match="unknown system 'Xx'"):
        system_elements("Xx")


def test_canonical_system_gives_one_name_per_element_set():
    from alhelpers.data.systems import canonical_system

    same = {"Ti-O": ["Ti-O", "O-Ti", "Ti–O", "O–Ti", "Ti-Ti-O", " Ti-O ", "Ti - O"],
            "Li-Co-O": ["Li-Co-O", "O-Co-Li", "Co-Li-O", "Li–Co–O"],
            "C": ["C", "C-C"], "Si": ["Si"], "Fe": ["Fe"], "all": ["all"],
            # by Pauling electronegativity: Ti 1.54 < Al 1.61; Mn 1.55 < Cr 1.66; Fe 1.83 < Ni 1.91
            "Ti-Al-O": ["O-Ti-Al", "Al-Ti-O"], "Mn-Cr": ["Cr-Mn"], "Fe-Ni": ["Ni-Fe"],
            # equal electronegativity (Cu and Si: 1.90; C and Se: 2.55): by symbol
            "Cu-Si": ["Si-Cu"], "C-Se": ["Se-C"],
            # no Pauling value (He, Ne, Ar): after every element that has one, by symbol
            "O-He": ["He-O"], "Ar-Ne": ["Ne-Ar"]}
    for canonical, spellings in same.items():
        for name in spellings:
            assert canonical_system(name) == canonical, name


@pytest.mark.parametrize("name, message", [
    ("Ti-O-", "'Ti-O-' has an empty element after 'O' (a hyphen at the end); write 'Ti-O'"),
    ("Ti--O", "'Ti--O' has an empty element between 'Ti' and 'O' (two hyphens in a row); write 'Ti-O'"),
    ("-O-Ti", "'-O-Ti' has an empty element before 'O' (a hyphen at the start); write 'Ti-O'"),
    ("", "an empty system name"),
    ("-", "'-' names no element"),
    ("Xx-O", "'Xx' is not an element"),
    ("ti-o", "'ti' and 'o' are not element symbols (symbols are case-sensitive); write 'Ti-O'"),
    ("T-O", "'T' is tritium"),
    ("TiO2", "'TiO2' is not an element; a system is a hyphen-separated list of element symbols such as 'Ti-O'"),
])
def test_canonical_system_refuses_bad_names_with_the_fix(name, message):
    from alhelpers.data.systems import canonical_system

    with pytest.raises(ValueError) as err:
        canonical_system(name)
    msg = str(err.value)
    assert message in msg
    assert "notebook parameter SYSTEM" in msg and "--systems" in msg


def test_system_label_is_the_one_display_name():
    from alhelpers.data.systems import system_label

    assert [system_label(s) for s in ["Ti-O", "O-Ti", "C", "Li-Co-O", "all"]] == \
        ["Ti–O", "Ti–O", "C", "Li–Co–O", "all"]
    # Track B's systems are data sets, shown as named (plots serve both tracks)
    assert [system_label(s) for s in ["tio2", "offline", "lmnto"]] == ["tio2", "offline", "lmnto"]


def test_configs_store_the_canonical_system(tmp_path):
    from alhelpers.data.paths import system_table_path
    from alhelpers.formation.config import ALConfig, FeaturizeConfig, FetchConfig

    assert FetchConfig(system="O-Ti").system == "Ti-O"
    assert FetchConfig(system="O–Ti").to_dict()["system"] == "Ti-O"
    assert FeaturizeConfig(system="O-Ti").system == "Ti-O"
    assert ALConfig(system="O-Ti", strategies=("random",)).system == "Ti-O"
    assert FetchConfig(system="all", source="file", table_path="x.csv").system == "all"
    assert system_table_path("snapshot", FetchConfig(system="O-Ti").system, tmp_path).name == "Ti-O.parquet"
    # configs with the same system are equal, so they name the same files and checkpoints
    assert ALConfig(system="Ti-Ti-O") == ALConfig(system="Ti-O")
    for make in (FetchConfig, FeaturizeConfig, ALConfig):
        with pytest.raises(ValueError, match=r"write 'Ti-O'.*SYSTEM"):
            make(system="Ti--O")


def test_select_and_fetch_use_the_canonical_system(tio2_entries):
    df = pd.DataFrame({Key.formula: ["TiO2", "SiO2"], Key.target: [-3.3, -3.0]})
    assert select_system(df, "O-Ti")[Key.system].tolist() == ["Ti-O"]
    entries, _ = fetch_system("snapshot", "O–Ti")
    assert (entries[Key.system] == "Ti-O").all()
    pd.testing.assert_frame_equal(entries, tio2_entries)


def test_select_system_uses_elements_not_substrings():
    df = pd.DataFrame({Key.formula: ["Co", "CoO", "SiC", "TiO2", "Ti", "Fe2O3", "C"],
                       Key.target: np.zeros(7)})
    assert select_system(df, "C")[Key.formula].tolist() == ["SiC", "C"]
    assert select_system(df, "Ti-O")[Key.formula].tolist() == ["TiO2"]
    assert select_system(df, "Si")[Key.formula].tolist() == ["SiC"]
    assert (select_system(df, "Fe")[Key.system] == "Fe").all()


def test_snapshot_systems_contain_their_elements(snapshot):
    from pymatgen.core import Composition

    for system, need in [("C", {"C"}), ("Ti-O", {"Ti", "O"})]:
        sel = select_system(snapshot.head(4000), system)
        assert len(sel) > 0
        for f in sel[Key.formula]:
            assert need <= {e.symbol for e in Composition(f).elements}


def test_filters_count_what_they_remove():
    df = pd.DataFrame({
        Key.formula: ["TiO2", "Ti2O4", "TiO2", "Ti3O5", "TiO", "Ti", "TiO2", "O2"],
        Key.nsites: [3, 6, 3, 8, 2, 1, 60, 2],
        Key.target: [-3.0, -3.0005, -3.002, np.nan, -9.0, 0.0, -3.1, np.inf],
        Key.structure: [None] * 8,
    })
    kept, steps = clean_entries(df)
    by = {s.name: s.removed for s in steps}
    assert by["finite target"] == 2  # NaN and inf
    assert by["2-50 atoms per cell"] == 2  # 1 atom and 60 atoms
    assert by["|E_f| <= 5 eV/atom"] == 1  # -9 eV/atom
    # TiO2 at -3.0 is 0.5 meV above Ti2O4 (same reduced formula): the lower one is kept;
    # TiO2 at -3.002 is 1.5 meV away from both and stays
    assert by["de-duplicate (< 1 meV/atom)"] == 1
    assert kept[Key.target].tolist() == [-3.0005, -3.002]
    assert steps[-1] == FilterStep("de-duplicate (< 1 meV/atom)", 1, 2)
    assert sum(s.removed for s in steps) == len(df) - len(kept)


def test_deduplicate_keeps_distinct_polymorphs_and_prefers_structures():
    df = pd.DataFrame({
        Key.formula: ["SiC", "SiC", "Si2C2", "SiC", "Si"],
        Key.target: [-0.2, -0.2, -0.3, -0.2009, -0.2],
        Key.structure: [None, '{"x": 1}', None, None, None],
    })
    kept, step = deduplicate(df)
    # reduced SiC: -0.3 (a distinct polymorph) and -0.2009 stay; both -0.2 rows lie 0.9 meV
    # above -0.2009 and go. Si is another composition and stays.
    assert step.removed == 2
    assert sorted(kept[Key.target].tolist()) == [-0.3, -0.2009, -0.2]
    # among exactly equal targets the row with a structure is kept
    tie = pd.DataFrame({Key.formula: ["SiC", "SiC"], Key.target: [-0.2, -0.2],
                        Key.structure: [None, '{"x": 1}']})
    assert deduplicate(tie)[0][Key.structure].tolist() == ['{"x": 1}']


def test_individual_filters_on_edges():
    df = pd.DataFrame({Key.nsites: [1, 2, 50, 51], Key.target: [5.0, -5.0, 5.0001, "x"]})
    assert filter_sites(df)[1].removed == 2
    assert filter_finite_target(df)[1].removed == 1
    num = df.assign(**{Key.target: [5.0, -5.0, 5.0001, 0.0]})
    assert filter_unphysical(num)[0][Key.target].tolist() == [5.0, -5.0, 0.0]


def test_split_is_seeded_disjoint_and_complete():
    a_pool, a_test = split_pool_test(148, rng=np.random.default_rng(3))
    b_pool, b_test = split_pool_test(148, rng=np.random.default_rng(3))
    c_pool, _ = split_pool_test(148, rng=np.random.default_rng(4))
    assert np.array_equal(a_pool, b_pool) and np.array_equal(a_test, b_test)
    assert not np.array_equal(a_pool, c_pool)
    assert len(a_test) == 30 and len(a_pool) == 118
    assert set(a_pool).isdisjoint(a_test) and set(a_pool) | set(a_test) == set(range(148))
    with pytest.raises(ValueError, match="test_fraction"):
        split_pool_test(10, test_fraction=1.0, rng=np.random.default_rng(0))


def test_no_snapshot_formula_is_refused(snapshot):
    from alhelpers.data.systems import integer_formula

    refused = []
    for f in snapshot[Key.formula].unique():
        try:
            integer_formula(f)
        except ValueError:
            refused.append(f)
    assert refused == []


def test_snapshot_has_no_conflicting_duplicates(snapshot):
    """The threshold lies above every spread of a reduced composition in MP and OQMD (3.21 eV/atom)."""
    from alhelpers.data.systems import conflicting_duplicates

    rows = snapshot[snapshot[Key.target].abs() <= 5]
    assert conflicting_duplicates(rows).empty
    # ... but just: CdCO3 spans 3.21 eV/atom (Materials Project 2015's mp-… at +1.43)
    assert not conflicting_duplicates(rows, spread=3.2).empty


def test_the_study_systems_keep_their_rows():
    counts = {}
    for system in ("C", "Si", "Fe", "Ti-O"):
        entries, steps = fetch_system("snapshot", system)
        counts[system] = len(entries)
        step = next(s for s in steps if s.name.startswith("conflicting duplicates"))
        assert step.examples == () and step.removed == 0
    assert counts == {"C": 811, "Si": 1464, "Fe": 804, "Ti-O": 148}


def test_table1_of_the_snapshot(tio2_entries):
    t = summarize_system(tio2_entries).iloc[0]
    assert (t["n_total"], t["n_mp"], t["n_oqmd"], t["n_pool"], t["n_test"]) == (148, 65, 83, 118, 30)
    assert t["ef_mean"] == pytest.approx(-2.9236, abs=1e-3)
    assert -5 <= tio2_entries[Key.target].min() and tio2_entries[Key.target].max() <= 5


# --------------------------------------------------------------------------- sources


def test_unknown_source_and_file_without_path():
    with pytest.raises(ValueError, match="unknown source"):
        fetch_raw("aflow", "C")
    with pytest.raises(ValueError, match="path="):
        fetch_raw("file", "C")


def test_mp_without_key_falls_back_to_snapshot_with_a_clear_warning(monkeypatch, warning_text):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    with pytest.warns(UserWarning, match="MP_API_KEY") as rec:
        df = fetch_raw("mp", "Ti-O")
    assert "Colab" in warning_text(rec, "MP_API_KEY")
    assert len(df) > 0 and set(df[Key.source]) == {"mp"}


def test_user_table_with_nan_targets_and_custom_column(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"formula": ["TiO2", "Ti2O3", "TiO", "SiO2"],
                  "Ef": [-3.3, None, -2.7, -3.0]}).to_csv(path, index=False)
    raw = read_user_table(path, target="Ef")
    assert raw[Key.nsites].tolist() == [3, 5, 2, 3] and (raw[Key.source] == "file").all()
    entries, steps = fetch_system("file", "Ti-O", path=path, target="Ef")
    assert len(entries) == 2  # SiO2 is not Ti–O; the NaN target is dropped and counted
    assert {s.name: s.removed for s in steps}["finite target"] == 1
    everything, _ = fetch_system("file", "all", path=path, target="Ef")
    assert len(everything) == 3


def test_user_table_without_target_column_names_the_columns(tmp_path):
    path = tmp_path / "mine.csv"
    pd.DataFrame({"formula": ["TiO2"], "energy": [-3.3]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"no target column 'formation_energy_per_atom'.*'energy'"):
        read_user_table(path)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"formula": ["Xq2"], "formation_energy_per_atom": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="cannot read"):
        read_user_table(bad)
