"""Descriptors: Magpie against matminer itself, paper17 against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alhelpers.formation.features import (
    DESCRIPTORS,
    FeatureSet,
    featurize,
    load_features,
    paper17_features,
    save_features,
)
from alhelpers.keys import Key


def test_magpie_equals_matminer_preset(tio2_entries):
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    fs = featurize(tio2_entries.head(5), "magpie")
    assert len(fs.feature_names) == 132 and fs.missing_columns == [] and fs.dropped_rows == 0
    ref = ElementProperty.from_preset("magpie").featurize(Composition(tio2_entries[Key.formula].iloc[2]))
    np.testing.assert_allclose(fs.X[2], np.asarray(ref, dtype=float))
    assert fs.table[Key.entry_id].tolist() == tio2_entries[Key.entry_id].head(5).tolist()
    np.testing.assert_array_equal(fs.y, tio2_entries[Key.target].head(5).to_numpy())


def test_paper17_composition_statistics_by_hand():
    entries = pd.DataFrame({Key.formula: ["TiO2"], Key.nsites: [6], Key.volume: [62.4],
                            Key.density: [4.25], Key.e_above_hull: [0.0], Key.is_stable: [True]})
    f = paper17_features(entries).iloc[0]
    assert len(paper17_features(entries).columns) == 17
    # fractions Ti 1/3, O 2/3; Z 22 and 8
    assert f["mean_Z"] == pytest.approx((22 + 2 * 8) / 3)
    assert f["std_Z"] == pytest.approx(np.sqrt((22 - 38 / 3) ** 2 / 3 + 2 * (8 - 38 / 3) ** 2 / 3))
    assert f["mean_mass"] == pytest.approx((47.867 + 2 * 15.9994) / 3, rel=1e-4)
    assert (f["min_X"], f["max_X"]) == (pytest.approx(1.54), pytest.approx(3.44))
    assert f["mean_X"] == pytest.approx((1.54 + 2 * 3.44) / 3)
    assert f["volume_per_atom"] == pytest.approx(62.4 / 6)
    assert f["n_elements"] == 2 and f["is_stable"] == 1.0
    # energy per atom and band gap are not in this table: NaN, not zero
    assert np.isnan(f[Key.energy_per_atom]) and np.isnan(f[Key.band_gap])


def test_paper17_reports_missing_properties_instead_of_zero_filling(tio2_entries):
    fs = featurize(tio2_entries, "paper17")
    # the snapshot has no energy_per_atom/band_gap at all, and composition-only rows lack
    # structure-derived properties: columns reported missing, rows dropped and counted
    assert fs.missing_columns == [Key.energy_per_atom, Key.band_gap]
    n_struct = int(tio2_entries[Key.structure].notna().sum())
    assert len(fs.table) == n_struct and fs.dropped_rows == len(tio2_entries) - n_struct
    assert np.isfinite(fs.X).all() and (fs.X != 0).any(axis=0).all()
    assert "missing for this source" in fs.summary()


def test_unknown_descriptor_and_bad_entries():
    with pytest.raises(ValueError, match="unknown descriptor set 'soap'"):
        featurize(pd.DataFrame({Key.formula: ["Si"]}), "soap")
    with pytest.raises(ValueError, match="lacks column"):
        featurize(pd.DataFrame({Key.formula: ["Si"]}), "magpie")
    assert DESCRIPTORS == ("magpie", "paper17")


def test_save_and_load_round_trip(tmp_path, tio2_entries):
    fs = featurize(tio2_entries.head(7), "paper17")
    save_features(fs, tmp_path / "f.parquet")
    back = load_features(tmp_path / "f.parquet")
    assert isinstance(back, FeatureSet) and back.feature_names == fs.feature_names
    assert back.missing_columns == fs.missing_columns and back.dropped_rows == fs.dropped_rows
    np.testing.assert_array_equal(back.X, fs.X)
    with pytest.raises(FileNotFoundError, match="02_featurize"):
        load_features(tmp_path / "nope.parquet")


def test_featurisation_progress_bar_only_when_asked(tio2_entries, capsys):
    featurize(tio2_entries.head(3), "magpie")
    assert "magpie" not in capsys.readouterr().err
    featurize(tio2_entries.head(3), "magpie", progress=True)
    assert "magpie: 100%" in capsys.readouterr().err
