"""scripts/compare_runs.py: the before/after check of a refactoring, old column names included."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


def _main():
    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_old_track_b_names_compare_equal_and_a_changed_metric_does_not(tmp_path, capsys) -> None:
    main = _main()
    new = pd.DataFrame({"system": ["tio2"] * 2, "strategy": ["random", "lcmd-feat-ll"], "batch": [10, 10],
                        "seed": [0, 0], "round": [0, 0], "n_labelled": [10, 10], "force_mae": [0.25, 0.125],
                        "fit_s": [1.0, 2.0], "query_s": [0.0, 0.5], "note": ["", ""]})
    old = new.rename(columns={"system": "dataset", "strategy": "method", "n_labelled": "n_train",
                              "fit_s": "train_s", "query_s": "selection_s"}).iloc[::-1]
    old["train_s"] = [9.0, 9.0]  # timings never count
    new.to_parquet(tmp_path / "new.parquet")
    old.to_parquet(tmp_path / "old.parquet")
    assert main([str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet")]) == 0
    assert "identical: 2 rows, 2 metric columns (force_mae, n_labelled)" in capsys.readouterr().out
    old.loc[old["method"] == "random", "force_mae"] = 0.25 + 1e-15
    old.to_parquet(tmp_path / "old.parquet")
    assert main([str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet")]) == 1
    assert "DIFFERENT" in capsys.readouterr().out
