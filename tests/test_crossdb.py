"""Cross-database validation: the disagreement floor by hand, and transfer runs on real Ti–O."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alhelpers.formation.crossdb import cross_database_runs, cross_summary, enough_data, source_disagreement
from alhelpers.formation.features import featurize
from alhelpers.keys import Key
from alhelpers.formation.config import ALConfig
from alhelpers.formation.models import EnsembleConfig


def test_disagreement_on_shared_compositions_by_hand():
    entries = pd.DataFrame({
        Key.formula: ["TiO2", "Ti2O4", "TiO2", "Ti2O3", "TiO", "SiO2"],
        Key.source: ["mp", "mp", "oqmd", "oqmd", "mp", "oqmd"],
        Key.target: [-3.5, -3.4, -3.3, -3.0, -2.0, -3.1],
    })
    table, s = source_disagreement(entries)
    # only TiO2 is in both (Ti2O4 reduces to TiO2): MP ground state -3.5 vs OQMD -3.3
    assert table["reduced_formula"].tolist() == ["TiO2"]
    assert s["n_shared"] == 1 and s["mae_shared"] == pytest.approx(0.2)
    assert s["mean_diff"] == pytest.approx(-0.2)
    none, s0 = source_disagreement(entries[entries[Key.source] == "mp"])
    assert s0["n_shared"] == 0 and np.isnan(s0["mae_shared"]) and none.empty


def test_transfer_runs_on_real_ti_o(tio2_entries):
    fs = featurize(tio2_entries, "magpie")
    cfg = ALConfig(system="Ti-O", n_init=10, batch=5, rounds=2, strategies=("random", "hybrid"),
                   model=EnsembleConfig(n_members=2, epochs=20))
    counts = enough_data(fs.table[Key.source], cfg)
    assert counts == {"mp": 65, "oqmd": 83, "enough": 1}
    cross = cross_database_runs(fs.X, fs.y, fs.table[Key.source], cfg, seeds=[0, 1])
    assert set(cross["direction"]) == {"mp→oqmd", "oqmd→mp"}
    # the test set is the whole other database, the pool the whole training database
    mp2oqmd = cross[cross["direction"] == "mp→oqmd"]
    assert (mp2oqmd["n_test"] == 83).all() and (mp2oqmd["n_pool"] == 65).all()
    assert np.isfinite(cross["mae"]).all() and cross["mae"].between(0.01, 2.0).all()
    summary = cross_summary(cross)
    assert len(summary) == 2 * 2 and (summary["n_seeds"] == 2).all() and (summary["n_labelled"] == 15).all()
    with pytest.raises(ValueError, match="no rows"):
        cross_database_runs(fs.X, fs.y, ["mp"] * len(fs.y), cfg, seeds=[0])
