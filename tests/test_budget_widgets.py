"""Budgets stop a run cleanly between rounds and it resumes to the same table; widget controls."""

from __future__ import annotations

import pandas as pd
import pytest

from alhelpers.formation.features import featurize
from alhelpers.formation.config import ALConfig
from alhelpers.al.rounds import Budget, BudgetExceeded
from alhelpers.formation.loop import TIMING_COLUMNS, run_al
from alhelpers.formation.models import EnsembleConfig


@pytest.fixture(scope="module")
def tio2_xy(tio2_entries):
    fs = featurize(tio2_entries, "magpie")
    return fs.X, fs.y


CFG = ALConfig(system="Ti-O", seed=3, n_init=10, batch=5, rounds=3,
               strategies=("random", "uncertainty"), model=EnsembleConfig(n_members=2, epochs=20))


def test_wall_budget_stops_between_rounds_and_resume_gives_the_same_table(tio2_xy, tmp_path):
    X, y = tio2_xy
    full = run_al(X, y, CFG)
    # a clock that advances 10 s per look: round 0 starts at 10 s < 15 s, round 1 would be at 20 s
    ticks = iter(range(0, 1000, 10))
    budget = Budget(max_wall_s=15.0, clock=lambda: float(next(ticks)))
    with pytest.raises(BudgetExceeded, match=r"continues from round 1 of 3"):
        run_al(X, y, CFG, checkpoint_dir=tmp_path, budget=budget)
    resumed = run_al(X, y, CFG, checkpoint_dir=tmp_path)
    assert resumed.attrs["resumed_rounds"] == 1
    pd.testing.assert_frame_equal(resumed.drop(columns=list(TIMING_COLUMNS)),
                                  full.drop(columns=list(TIMING_COLUMNS)))


def test_memory_budget_and_budget_without_checkpoints(tio2_xy, tmp_path):
    X, y = tio2_xy
    with pytest.raises(BudgetExceeded, match="memory budget of 1 MB"):
        run_al(X, y, CFG, checkpoint_dir=tmp_path, budget=Budget(max_ram_mb=1))
    with pytest.raises(ValueError, match="needs checkpoints"):
        run_al(X, y, CFG, budget=Budget(max_wall_s=10))
    assert not Budget().limited


def test_parameter_controls_set_the_notebook_variables(capsys):
    from alhelpers.widgets import parameter_controls

    ns = {"SYSTEM": "C", "STRATEGIES": ["random"], "SEED": 0, "SMOKE": False}
    seen = []
    box = parameter_controls(ns, ["SYSTEM", "STRATEGIES", "SEED", "SMOKE"],
                             choices={"SYSTEM": ["C", "Si", "Ti-O"], "STRATEGIES": ["random", "hybrid"]},
                             on_apply=seen.append)
    system, strategies, seed, smoke = box.children[:4]
    system.value, strategies.value, seed.value, smoke.value = "Ti-O", ("random", "hybrid"), 4, True
    box.apply()
    assert ns == {"SYSTEM": "Ti-O", "STRATEGIES": ["random", "hybrid"], "SEED": 4, "SMOKE": True}
    assert seen == [ns]
    # how to pick several, and how to run the rest, in Colab's words and in Jupyter's
    assert any("Ctrl" in getattr(c, "value", "") and "Shift" in c.value for c in box.children[4:])
    said = capsys.readouterr().out  # outside a kernel the Output widget's text goes to stdout
    assert "Colab: Runtime ▸ Run after" in said and "JupyterLab: Run ▸ Run Selected Cell and All Below" in said
    with pytest.raises(KeyError, match="parameters cell"):
        parameter_controls(ns, ["ROUNDS"])


def test_study_runner_stops_on_budget_and_the_same_command_resumes(tmp_path, capsys):
    from alhelpers.run import main

    out = tmp_path / "res"
    base = ["study", "--systems", "Ti-O", "--seeds", "0", "--smoke", "--no-cross-db", "--n-boot", "50",
            "--jobs", "1", "--out", str(out)]
    assert main([*base, "--max-wall-s", "1e-9"]) == 1
    text = capsys.readouterr().out
    assert "stopped by its budget" in text and "continues from round 0" in text
    assert not (out / "report.md").exists()
    assert main(base) == 0  # the same command without the budget finishes the work
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 8 and (out / "report.md").exists()
