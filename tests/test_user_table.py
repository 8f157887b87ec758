"""Your own table: source column, formula column, fractional formulas, empty results, encodings."""

from __future__ import annotations

import inspect
import warnings
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
    report_frame,
    save_system,
    select_system,
    summarize_system,
)
from alhelpers.keys import Key


def _csv(tmp_path: Path, name: str = "mine.csv", **columns) -> Path:
    path = tmp_path / name
    pd.DataFrame(columns).to_csv(path, index=False)
    return path


def _quiet(fn, *args, **kwargs):
    """Call ``fn`` with UserWarnings silenced (for tests about something else)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- source column


def test_source_column_is_kept_and_normalised(tmp_path):
    path = _csv(tmp_path, formula=["TiO2", "Ti2O3", "TiO", "Ti3O5", "TiO2", "Ti4O7"],
                source=["MP", "Materials Project", "OQMD", "", None, " oqmd "],
                formation_energy_per_atom=[-3.3, -3.1, -2.7, -3.0, -3.2, -3.05])
    raw = read_user_table(path)
    assert raw[Key.source].tolist() == ["mp", "mp", "oqmd", "file", "file", "oqmd"]
    entries, _ = fetch_system("file", "Ti-O", path=path)
    assert entries[Key.source].tolist() == ["mp", "mp", "oqmd", "file", "file", "oqmd"]
    t = summarize_system(entries).iloc[0]
    assert (t["n_mp"], t["n_oqmd"], t["n_file"]) == (2, 2, 2)


def test_table_without_source_column_and_default_source(tmp_path):
    path = _csv(tmp_path, formula=["TiO2", "Ti2O3"], formation_energy_per_atom=[-3.3, -3.1])
    assert (read_user_table(path)[Key.source] == "file").all()
    # source= fills rows that name no source (here: all of them), normalised like the column
    assert (read_user_table(path, source="OQMD")[Key.source] == "oqmd").all()


def test_unknown_source_values_are_kept_with_a_warning(tmp_path, warning_text):
    path = _csv(tmp_path, formula=["TiO2", "Ti2O3", "TiO"], source=["AFLOW", "mp", "AFLOW"],
                formation_energy_per_atom=[-3.3, -3.1, -2.7])
    with pytest.warns(UserWarning, match="AFLOW") as rec:
        raw = read_user_table(path)
    text = warning_text(rec, "AFLOW")
    assert "2 row(s)" in text and "mine.csv" in text and "cross-database" in text
    assert raw[Key.source].tolist() == ["AFLOW", "mp", "AFLOW"]
    t = summarize_system(raw.assign(**{Key.system: "all"})).iloc[0]
    assert t["n_AFLOW"] == 2 and t["n_mp"] == 1


# --------------------------------------------------------------------------- formula column, encoding


def test_fetch_raw_and_fetch_system_take_formula_column_and_encoding(tmp_path):
    for fn in (fetch_raw, fetch_system):
        params = inspect.signature(fn).parameters
        assert params["formula_column"].default == "formula"
        assert params["encoding"].default == "utf-8"
    assert inspect.signature(read_user_table).parameters["encoding"].default == "utf-8"
    path = tmp_path / "mine.csv"
    path.write_bytes("composition,Ef,note\nTiO2,-3.3,rutile\nTi2O3,-3.1,corindon é\nSiO2,-3.0,x\n"
                     .encode("latin-1"))
    entries, steps = fetch_system("file", "Ti-O", path=path, target="Ef",
                                  formula_column="composition", encoding="latin-1")
    assert entries[Key.formula].tolist() == ["TiO2", "Ti2O3"]
    assert entries[Key.target].tolist() == [-3.3, -3.1]
    raw = fetch_raw("file", "all", path=path, target="Ef", formula_column="composition",
                    encoding="latin-1")
    assert len(raw) == 3


def test_non_utf8_table_names_the_file_and_the_encoding_option(tmp_path):
    content = "formula,formation_energy_per_atom,note\nTiO2,-3.3,rutile\nTi2O3,-3.1,corindon é\n"
    raw_bytes = content.encode("latin-1")
    path = tmp_path / "mine.csv"
    path.write_bytes(raw_bytes)
    with pytest.raises(ValueError) as err:
        read_user_table(path)
    msg = str(err.value)
    position = raw_bytes.index(b"\xe9")
    assert f"mine.csv is not valid utf-8 (byte 0xe9 at position {position}" in msg
    assert "line 3" in msg
    assert "encoding='latin-1'" in msg and "TABLE_ENCODING" in msg and "--encoding" in msg
    assert read_user_table(path, encoding="latin-1")[Key.formula].tolist() == ["TiO2", "Ti2O3"]
    with pytest.raises(ValueError, match="unknown encoding 'klingon'"):
        read_user_table(path, encoding="klingon")


def test_missing_column_message_names_every_spelling_of_the_setting(tmp_path):
    path = _csv(tmp_path, composition=["TiO2"], formation_energy_per_atom=[-3.3])
    with pytest.raises(ValueError, match=r"no formula column 'formula'") as err:
        read_user_table(path)
    msg = str(err.value)
    assert "mine.csv" in msg and "['composition', 'formation_energy_per_atom']" in msg
    # notebook parameter, runner flag and function keywords, with the column the table has
    assert "FORMULA_COLUMN = 'composition'" in msg and "--formula-column composition" in msg
    assert "formula_column='composition'" in msg and "formula='composition'" in msg
    assert "TARGET_COLUMN" not in msg  # the target column is there
    path = _csv(tmp_path, "energies.csv", formula=["TiO2"], Ef=[-3.3])
    with pytest.raises(ValueError, match=r"no target column 'formation_energy_per_atom'") as err:
        read_user_table(path)
    msg = str(err.value)
    assert "TARGET_COLUMN = 'Ef'" in msg and "--target Ef" in msg and "target='Ef'" in msg
    assert "FORMULA_COLUMN" not in msg
    path = _csv(tmp_path, "neither.csv", a=["TiO2"], b=[-3.3])
    with pytest.raises(ValueError, match=r"no formula column 'formula' and no target column") as err:
        read_user_table(path)
    msg = str(err.value)
    assert "FORMULA_COLUMN" in msg and "--formula-column" in msg and "formula_column=" in msg
    assert "TARGET_COLUMN" in msg and "--target" in msg and "target=" in msg


# --------------------------------------------------------------------------- delimiters


def test_semicolon_table_is_read_with_its_delimiter_and_a_warning(tmp_path, warning_text):
    path = tmp_path / "mine.csv"
    path.write_text("formula;formation_energy_per_atom;band_gap\nTiO2;-3.3;3.0\nTi2O3;-3.1;0.1\n")
    with pytest.warns(UserWarning, match="delimiter") as rec:
        raw = read_user_table(path)
    text = warning_text(rec, "delimiter")
    assert "mine.csv" in text and "';'" in text and "not ','" in text
    assert raw[Key.formula].tolist() == ["TiO2", "Ti2O3"]
    assert raw[Key.target].tolist() == [-3.3, -3.1]
    assert raw[Key.band_gap].tolist() == [3.0, 0.1]


def test_decimal_commas_in_a_semicolon_table_are_read_as_numbers(tmp_path, warning_text):
    path = tmp_path / "excel.csv"
    path.write_text("formula;formation_energy_per_atom;band_gap;nsites\n"
                    "TiO2;-3,3;3,05;6\nTi2O3;-3,125;0,1;10\nTiO;-2,7;;2\n")
    with pytest.warns(UserWarning, match="delimiter") as rec:
        raw = read_user_table(path)
    text = warning_text(rec, "delimiter")
    assert "decimal" in text and "'formation_energy_per_atom'" in text and "'band_gap'" in text
    assert "'nsites'" not in text and "'formula'" not in text
    assert raw[Key.target].tolist() == [-3.3, -3.125, -2.7]
    assert raw[Key.band_gap].tolist()[:2] == [3.05, 0.1] and np.isnan(raw[Key.band_gap].iloc[2])
    assert raw[Key.nsites].tolist() == [6, 10, 2]


def test_mixed_decimal_marks_are_named_not_guessed(tmp_path, warning_text):
    path = tmp_path / "mixed.csv"
    path.write_text("formula;formation_energy_per_atom\nTiO2;-3,3\nTi2O3;-3.1\n")
    with pytest.warns(UserWarning) as rec:
        raw = read_user_table(path)
    assert "';'" in warning_text(rec, "delimiter")
    text = warning_text(rec, "not numbers")
    assert "line 2: '-3,3'" in text and "1 value(s)" in text
    assert raw[Key.target].isna().tolist() == [True, False] and raw[Key.target].iloc[1] == -3.1


def test_tab_separated_table_is_read_with_a_warning(tmp_path, warning_text):
    path = tmp_path / "mine.txt"
    path.write_text("formula\tformation_energy_per_atom\nTiO2\t-3.3\nTi2O3\t-3.1\n")
    with pytest.warns(UserWarning, match="delimiter") as rec:
        raw = read_user_table(path)
    assert "a tab" in warning_text(rec, "delimiter")
    assert raw[Key.target].tolist() == [-3.3, -3.1]


def test_comma_table_with_semicolons_in_a_column_name_stays_comma_separated(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("formula,formation_energy_per_atom,note;remark\nTiO2,-3.3,a;b\nTi2O3,-3.1,c\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw = read_user_table(path)
    assert raw[Key.target].tolist() == [-3.3, -3.1]


# --------------------------------------------------------------------------- fractional formulas


def test_integer_formula_of_fractional_compositions():
    from alhelpers.data.systems import integer_formula

    assert integer_formula("Fe0.5Ni0.5") == ("FeNi", 2)
    assert integer_formula("Li0.33CoO2") == ("LiCo3O6", 10)  # 0.33 read as 1/3
    assert integer_formula("La0.67Sr0.33MnO3") == ("La2SrMn3O9", 15)
    assert integer_formula("Fe0.95O") == ("Fe19O20", 39)
    assert integer_formula("Fe2.5O5") == ("FeO2", 3)  # the smallest integer formula
    assert integer_formula("TiO1.9999") == ("TiO2", 3)
    # a minority element is never rounded away
    assert integer_formula("Li0.05CoO2") == ("LiCo20O40", 61)
    # 0.51 is not 1/2 (× 2 = 1.02 is 0.02 from a whole number); × 49 brings both within 0.01
    assert integer_formula("Ba0.51Sr0.49TiO3") == ("Ba25Sr24Ti49O147", 245)
    # integer formulas are left exactly as written
    assert integer_formula("Ti2O4") == ("Ti2O4", 6)
    assert integer_formula("Fe2.0O3") == ("Fe2.0O3", 5)


def test_fractional_formulas_are_scaled_and_reported(tmp_path, warning_text):
    path = _csv(tmp_path, formula=["Fe0.5Ni0.5", "Li0.33CoO2", "La0.67Sr0.33MnO3", "TiO2", "FeNi3"],
                formation_energy_per_atom=[-0.05, -1.5, -2.5, -3.3, -0.08])
    raw = read_user_table(path)
    assert raw[Key.formula].tolist()[0] == "Fe0.5Ni0.5"  # fetch_raw: as written, before cleaning
    assert raw[Key.nsites].tolist() == [2, 10, 15, 3, 4]  # atoms of the integer formula
    with pytest.warns(UserWarning, match="non-integer amounts") as rec:
        entries, steps = fetch_system("file", "all", path=path)
    text = warning_text(rec, "non-integer amounts")
    assert text.startswith("mine.csv, system 'all': 3 formula(s)") and "Fe0.5Ni0.5 → FeNi" in text
    assert entries[Key.formula].tolist() == ["FeNi", "LiCo3O6", "La2SrMn3O9", "TiO2", "FeNi3"]
    assert entries[Key.nsites].tolist() == [2, 10, 15, 3, 4]
    step = next(s for s in steps if s.changed)
    assert (step.removed, step.remaining, step.changed) == (0, 5, 3)
    assert "Li0.33CoO2 → LiCo3O6 (10 atoms)" in step.examples
    frame = report_frame(steps)
    assert list(frame.columns) == ["name", "removed", "remaining", "changed", "examples"]
    assert "Fe0.5Ni0.5 → FeNi" in frame.loc[frame["changed"] == 3, "examples"].iloc[0]


def test_fraction_too_large_for_a_cell_is_removed_visibly(tmp_path):
    path = _csv(tmp_path, formula=["Ba0.51Sr0.49TiO3", "BaTiO3", "SrTiO3"],
                formation_energy_per_atom=[-3.4, -3.5, -3.6])
    entries, steps = _quiet(fetch_system, "file", "Ti-O", path=path)
    assert entries[Key.formula].tolist() == ["BaTiO3", "SrTiO3"]
    sites = next(s for s in steps if s.name == "2-50 atoms per cell")
    assert sites.removed == 1
    assert sites.examples == ("Ba25Sr24Ti49O147 (245 atoms)",)


def test_formula_without_integer_form_is_removed_visibly(monkeypatch, warning_text):
    from alhelpers.data import formulas

    monkeypatch.setattr(formulas, "MAX_MULTIPLIER", 2)
    formulas.integer_formula.cache_clear()
    try:
        df = pd.DataFrame({Key.formula: ["Li0.33CoO2", "Fe0.5Ni0.5", "TiO2"], Key.nsites: [3, 1, 3],
                           Key.target: [-1.5, -0.05, -3.3], Key.dataset: "mine"})
        with pytest.warns(UserWarning, match="no integer formula") as rec:
            kept, steps = clean_entries(df)
        assert "within 2 formula units" in warning_text(rec, "no integer formula")
    finally:
        formulas.integer_formula.cache_clear()
    assert kept[Key.formula].tolist() == ["FeNi", "TiO2"]
    sites = next(s for s in steps if s.name == "2-50 atoms per cell")
    assert sites.examples == ("Li0.33CoO2 (atom count unknown)",)


def test_integer_formulas_leaves_integer_rows_alone():
    from alhelpers.data.systems import integer_formulas

    df = pd.DataFrame({Key.formula: ["Ti2O4", "TiO2"], Key.nsites: [12, 3],
                       Key.target: [-3.0, -3.1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, step = integer_formulas(df)
    assert step == FilterStep("fractional formulas → integer formulas", 0, 2, 0)
    assert out[Key.formula].tolist() == ["Ti2O4", "TiO2"] and out[Key.nsites].tolist() == [12, 3]


# --------------------------------------------------------------------------- every drop is visible


def test_every_removing_filter_gives_examples():
    df = pd.DataFrame({
        Key.formula: ["TiO2", "Ti2O4", "TiO2", "Ti3O5", "TiO", "Ti", "TiO2", "O2"],
        Key.nsites: [3, 6, 3, 8, 2, 1, 60, 2],
        Key.target: [-3.0, -3.0005, -3.002, np.nan, -9.0, 0.0, -3.1, np.inf],
        Key.structure: [None] * 8,
    })
    kept, steps = clean_entries(df)
    by = {s.name: s.examples for s in steps}
    assert by["finite target"] == ("Ti3O5 (target nan)", "O2 (target inf)")
    assert by["2-50 atoms per cell"] == ("Ti (1 atoms)", "TiO2 (60 atoms)")
    assert by["|E_f| <= 5 eV/atom"] == ("TiO (-9 eV/atom)",)
    assert by["de-duplicate (< 1 meV/atom)"] == ("TiO2 (-3 eV/atom)",)
    assert all(s.examples == () for s in steps if s.removed == 0)


def test_non_numeric_targets_are_named_with_examples(tmp_path, warning_text):
    path = _csv(tmp_path, formula=["TiO2", "Ti2O3", "TiO"], Ef=["-3,3", "n/a", "-2.7"])
    with pytest.warns(UserWarning, match="not numbers") as rec:
        raw = read_user_table(path, target="Ef")
    text = warning_text(rec, "not numbers")
    assert "'Ef'" in text and "'-3,3'" in text and "line 2" in text and "finite target" in text
    assert raw[Key.target].isna().tolist() == [True, True, False]


def test_bad_formulas_raise_with_column_and_lines(tmp_path):
    path = _csv(tmp_path, comp=["TiO2", "Xq2", None, "TiO"], formation_energy_per_atom=[1.0] * 4)
    with pytest.raises(ValueError, match="cannot read") as err:
        read_user_table(path, formula="comp")
    msg = str(err.value)
    assert "mine.csv" in msg and "'comp'" in msg and "2 value(s)" in msg
    assert "line 3: 'Xq2'" in msg and "line 4: (empty)" in msg


def test_capitalisation_and_hydrogen_isotopes_are_refused_with_the_formula_meant(tmp_path):
    path = _csv(tmp_path, formula=["TiO2", "TIO2", "NACL", "D2O", "FE2O3"],
                formation_energy_per_atom=[-3.3, -3.3, -2.1, -1.0, -1.7])
    with pytest.raises(ValueError, match="cannot read") as err:
        read_user_table(path)
    msg = str(err.value)
    assert "4 value(s)" in msg
    assert "line 3: 'TIO2' (T is tritium, an isotope of hydrogen, to pymatgen; did you mean 'TiO2'?)" in msg
    assert "line 4: 'NACL' (A, L are not elements; did you mean 'NaCl'?)" in msg
    assert "line 5: 'D2O' (D is deuterium, an isotope of hydrogen, to pymatgen; write H for hydrogen)" in msg


def test_formula_errors_suggest_the_formula_meant():
    from alhelpers.data.systems import elements_of, integer_formula

    for bad, meant in [("TIO2", "TiO2"), ("FE2O3", "Fe2O3"), ("tio2", "TiO2"), ("Fe2o3", "Fe2O3"),
                       ("T2O", None)]:
        with pytest.raises(ValueError) as err:
            integer_formula(bad)
        assert (f"did you mean {meant!r}" in str(err.value)) if meant else "did you mean" not in str(err.value)
    with pytest.raises(ValueError, match="did you mean 'Co' or 'CO'"):
        elements_of("co")
    with pytest.raises(ValueError, match="T is tritium"):
        elements_of("TIO2")


def test_capital_formulas_of_real_elements_are_kept(tmp_path):
    from alhelpers.data.systems import integer_formula

    formulas = ["CO", "NO", "HF", "CS2", "PO4", "SiC", "NaCl", "YB2", "CaCO3", "H2O", "Tc2O7", "Ti3Al"]
    for f in formulas:
        assert integer_formula(f)[0] == f
    path = _csv(tmp_path, formula=formulas, formation_energy_per_atom=[-1.0] * len(formulas))
    assert read_user_table(path)[Key.formula].tolist() == formulas


def test_clean_entries_refuses_isotope_formulas_naming_the_rows():
    df = pd.DataFrame({Key.formula: ["TiO2", "TIO2", "DO"], Key.nsites: [3, 3, 2],
                       Key.target: [-3.3, -3.3, -1.0], Key.dataset: "mine"})
    with pytest.raises(ValueError) as err:
        clean_entries(df)
    msg = str(err.value)
    assert msg.startswith("the table (mine): 2 formula(s) are not chemical formulas pymatgen reads as written")
    assert "'TIO2' (T is tritium" in msg and "did you mean 'TiO2'?" in msg and "'DO' (D is deuterium" in msg


# --------------------------------------------------------------------------- conflicting duplicates


def test_conflicting_duplicates_are_reported_with_examples_and_kept(warning_text):
    df = pd.DataFrame({
        Key.formula: ["TiO2", "Ti2O4", "TiO2", "NiO", "Ni2O2", "SiC", "SiC", "Fe2O3"],
        Key.nsites: [3, 6, 3, 2, 4, 2, 2, 5],
        Key.target: [4.9, -4.9, -3.3, -1.2, 1.2, -0.2, 2.4, -1.7],
        Key.dataset: "mine",
    })
    with pytest.warns(UserWarning, match="conflict") as rec:
        kept, steps = clean_entries(df)
    text = warning_text(rec, "conflict")
    assert text.startswith("the table (mine): 2 reduced composition(s) (5 rows) have targets that conflict")
    assert "TiO2: -4.9, -3.3, +4.9 eV/atom" in text and "NiO: -1.2, +1.2 eV/atom" in text
    assert "SiC" not in text  # 2.6 eV/atom apart: within what real polymorphs of the snapshot span
    assert "units" in text and "sign" in text and "column" in text
    step = next(s for s in steps if s.name.startswith("conflicting duplicates"))
    assert (step.removed, step.remaining, step.changed) == (0, 8, 0)
    assert step.examples == ("TiO2: -4.9, -3.3, +4.9 eV/atom", "NiO: -1.2, +1.2 eV/atom")
    assert len(kept) == 8  # reported, not removed: which row is right is the user's call
    assert steps[-1].name == "de-duplicate (< 1 meV/atom)"


def test_ordinary_duplicates_are_not_reported():
    df = pd.DataFrame({Key.formula: ["TiO2", "TiO2", "SiO2", "SiO2"], Key.nsites: [3, 6, 3, 9],
                       Key.target: [-3.3, -3.0, -3.0, -0.56]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, steps = clean_entries(df)
    step = next(s for s in steps if s.name.startswith("conflicting duplicates"))
    assert step == FilterStep(step.name, 0, 4) and step.examples == ()


# --------------------------------------------------------------------------- empty results


def test_empty_table_is_refused(tmp_path):
    path = _csv(tmp_path, formula=[], formation_energy_per_atom=[])
    with pytest.raises(ValueError, match=r"mine.csv has no rows"):
        read_user_table(path)
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    with pytest.raises(ValueError, match=r"blank.csv is empty"):
        read_user_table(blank)


def test_filters_removing_every_row_raise_before_anything_is_written(tmp_path):
    path = _csv(tmp_path, formula=["TiO2", "Ti2O3"], Ef=["n/a", None])
    with pytest.raises(ValueError) as err:
        _quiet(fetch_system, "file", "Ti-O", path=path, target="Ef")
    msg = str(err.value)
    assert "mine.csv" in msg and "'Ti-O'" in msg
    assert "'finite target' removed the last 2" in msg and "target=" in msg
    single = _csv(tmp_path, "atoms.csv", formula=["Ti", "O"], formation_energy_per_atom=[0.0, 0.0])
    with pytest.raises(ValueError, match=r"(?s)'2-50 atoms per cell' removed the last 2.*min_sites"):
        fetch_system("file", "all", path=single)
    with pytest.raises(ValueError, match="no rows"):
        clean_entries(pd.DataFrame({Key.formula: [], Key.nsites: [], Key.target: []}))


def test_save_system_refuses_an_empty_table(tmp_path):
    empty = pd.DataFrame({Key.formula: pd.Series([], dtype=str)})
    with pytest.raises(ValueError, match="no rows"):
        save_system(empty, [], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_select_system_without_rows_names_the_system_and_the_elements(tmp_path):
    path = _csv(tmp_path, formula=["TiO2", "SiO2"], formation_energy_per_atom=[-3.3, -3.0])
    table = read_user_table(path)
    with pytest.raises(ValueError) as err:
        select_system(table, "Fe")
    msg = str(err.value)
    assert "'Fe'" in msg and "mine" in msg and "O, Si, Ti" in msg and "system='all'" in msg
    with pytest.raises(ValueError, match="'Li-Co-O'"):
        fetch_system("file", "Li-Co-O", path=path)
