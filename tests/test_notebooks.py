"""The numbered notebooks executed headless through papermill with small parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from alhelpers.files import read_csv
from alhelpers.nb import read_records
from alhelpers.runner.tasks import KERNEL_START_S
from notebook_checks import check_readable

NB = Path(__file__).resolve().parents[1] / "notebooks"


def run(name: str, out: Path, **params) -> dict:
    pm.execute_notebook(str(NB / name), str(out), parameters=params, kernel_name="python3",
                        progress_bar=False, cwd=str(NB), start_timeout=KERNEL_START_S)
    return read_records(out)


def test_fetch_and_featurize_ti_o(tmp_path):
    out = tmp_path / "res"
    rec = run("01_fetch.ipynb", tmp_path / "01.ipynb", SYSTEM="Ti-O", OUT_DIR=str(out))
    assert rec["n_rows"] == 148 and rec["removed"]["de-duplicate (< 1 meV/atom)"] == 5
    assert rec["table1"]["n_pool"] == 118 and rec["table1"]["n_test"] == 30
    assert rec["out_path"] == "data/systems/snapshot/Ti-O.parquet"  # relative to the results folder
    table = pd.read_parquet(out / rec["out_path"])
    assert len(table) == 148 and (table["system"] == "Ti-O").all()
    cfg = json.loads((out / rec["out_path"]).with_suffix(".config.json").read_text())
    assert cfg["config"]["system"] == "Ti-O" and "torch" in cfg["versions"]

    rec2 = run("02_featurize.ipynb", tmp_path / "02.ipynb", SYSTEM="Ti-O", DESCRIPTOR="paper17",
               OUT_DIR=str(out))
    assert rec2["n_features"] == 15 and rec2["missing_columns"] == ["energy_per_atom", "band_gap"]
    assert rec2["n_rows"] + rec2["dropped_rows"] == 148
    assert len(pd.read_parquet(out / rec2["out_path"])) == rec2["n_rows"]


def test_al_notebook_widgets_headless_and_budget_stop_then_resume(tmp_path):
    out = tmp_path / "out"
    run("01_fetch.ipynb", tmp_path / "01.ipynb", SYSTEM="Ti-O", OUT_DIR=str(out))
    run("02_featurize.ipynb", tmp_path / "02.ipynb", SYSTEM="Ti-O", OUT_DIR=str(out))
    params = dict(SYSTEM="Ti-O", SEED=2, SMOKE=True, PROGRESS=False, OUT_DIR=str(out))
    stopped = run("03_active_learning.ipynb", tmp_path / "03a.ipynb", MAX_WALL_S=1e-9, **params)
    assert "wall-time budget" in stopped["stopped"] and "continues from round 0 of 2" in stopped["stopped"]
    assert not (tmp_path / "out" / "runs").exists()
    done = run("03_active_learning.ipynb", tmp_path / "03b.ipynb", **params)
    assert done["n_rows"] == 8 and set(done["final_n_labelled"].values()) == {15}
    again = run("03_active_learning.ipynb", tmp_path / "03c.ipynb", **params)  # all read back, and said so
    assert again["resumed_rounds"] == 2 and again["final_n_labelled"] == done["final_n_labelled"]
    assert ("Ti-O seed 2: resumed — 2 of 2 rounds read back from the checkpoints in checkpoints/ (same configuration "
            "and data); nothing computed") in (tmp_path / "03c.ipynb").read_text()
    # the widget controls are part of the executed notebook, and changed nothing headless
    text = (tmp_path / "03b.ipynb").read_text()
    assert "application/vnd.jupyter.widget-view+json" in text and "Apply" in text
    assert json.loads(text)["cells"]


def test_fetch_own_table_through_the_notebook(tmp_path):
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"formula": ["Fe2O3", "FeO", "Fe3O4", "NiO"],
                  "Ef": [-1.7, float("nan"), -1.6, -1.2]}).to_csv(csv, index=False)
    rec = run("01_fetch.ipynb", tmp_path / "01.ipynb", SYSTEM="Fe", SOURCE="file",
              TABLE_PATH=str(csv), TARGET_COLUMN="Ef", OUT_DIR=str(tmp_path / "d"))
    assert rec["n_rows"] == 2 and rec["removed"]["finite target"] == 1


def test_bad_parameter_fails_in_the_config_cell(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="unknown system 'Xx'"):
        run("01_fetch.ipynb", tmp_path / "bad.ipynb", SYSTEM="Xx", OUT_DIR=str(tmp_path))


def test_study_runner_smoke_all_stages_report_and_resume(tmp_path):
    from alhelpers.run import main

    out = tmp_path / "res"
    args = ["study", "--systems", "Ti-O", "--seeds", "0", "1", "--smoke", "--n-boot", "200",
            "--out", str(out)]
    assert main(args) == 0
    t1 = read_csv(out / "table1.csv")
    assert t1.loc[0, "system"] == "Ti-O" and t1.loc[0, "n_total"] == 148
    done = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    assert done == ["01_fetch_Ti-O.ipynb", "02_featurize_Ti-O_magpie.ipynb",
                    "03_active_learning_Ti-O_magpie_seed0.ipynb",
                    "03_active_learning_Ti-O_magpie_seed1.ipynb", "04_statistics.ipynb",
                    "05_figures.ipynb", "06_cross_database_Ti-O_magpie.ipynb"]
    runs = pd.read_parquet(out / "runs.parquet")
    # smoke: 4 strategies x 2 rounds x 2 seeds, labels 10 -> 15
    assert len(runs) == 16 and set(runs["strategy"]) == {"random", "uncertainty", "diversity", "hybrid"}
    assert sorted(runs["n_labelled"].unique()) == [10, 15] and runs["mae"].between(0, 2).all()
    rec = read_records(out / "notebooks" / "03_active_learning_Ti-O_magpie_seed1.ipynb")
    assert set(rec["final_mae"]) == set(runs["strategy"]) and rec["n_rows"] == 8
    for nb in (out / "notebooks").glob("*.ipynb"):  # the runner keeps progress bars out
        assert "%|" not in nb.read_text(), nb.name

    # statistics, figures, cross-database and report
    final = read_csv(out / "final_table.csv")
    assert len(final) == 4 and final.set_index("strategy").loc["random", "verdict"] == "baseline"
    assert final["n_pairs"].eq(2).all() and final["mae_mean"].between(0, 2).all()
    savings = read_csv(out / "savings.csv")  # 4 strategies × 3 targets along random's budget
    assert len(savings) == 12 and sorted(savings["budget_frac"].unique()) == [0.5, 0.75, 1.0]
    assert savings.loc[savings["strategy"] == "random", "saving_pct"].eq(0.0).all()
    assert len(read_csv(out / "auc.csv")) == 4
    leak = read_csv(out / "leakage.csv")
    assert set(leak["descriptor"]) == {"magpie", "paper17"} and not leak["leaks"].any()
    for name in ("learning_curves", "final_mae", "uncertainty", "reliability", "cross_database"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    cross = pd.read_parquet(out / "cross" / "Ti-O_magpie.parquet")
    assert set(cross["direction"]) == {"mp→oqmd", "oqmd→mp"} and cross["mae"].between(0.01, 2).all()
    floor = json.loads((out / "cross" / "Ti-O_disagreement.json").read_text())
    assert floor["n_shared"] > 10 and 0 < floor["mae_shared"] < 1
    for executed in sorted((out / "notebooks").glob("*.ipynb")):  # records once, every saved figure shown
        check_readable(executed)
    report = (out / "report.md").read_text()
    assert report.split("\n")[2] == "## Conclusion"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png"))) >= 5
    for section in ("Table 1", "Final round", "Label savings", "Calibration of σ", "Predicted vs actual test MAE",
                    "Cross-database", "Leakage audit", "figures/learning_curves.png", "figures/reliability.png",
                    "Package versions", "### Model", "wall time", "machine: cores", "code: commit",
                    "snapshot/flla_2015", "statsmodels", "The strategies"):
        assert section in report, section
    cal = read_csv(out / "calibration.csv")  # per strategy and round, mean over the 2 seeds
    assert len(cal) == 4 * 2 and cal["n_seeds"].eq(2).all()
    want = runs.groupby(["strategy", "n_labelled"])[["mae", "mae_pred", "z2_mean_cal"]].mean()
    got = cal.set_index(["strategy", "n_labelled"])[["mae", "mae_pred", "z2_mean_cal"]]
    pd.testing.assert_frame_equal(got.sort_index(), want.sort_index(), check_exact=False, rtol=1e-9)

    mtime = (out / "notebooks" / "01_fetch_Ti-O.ipynb").stat().st_mtime
    assert main(args) == 0  # finished work is skipped
    assert (out / "notebooks" / "01_fetch_Ti-O.ipynb").stat().st_mtime == mtime
    pd.testing.assert_frame_equal(pd.read_parquet(out / "runs.parquet"), runs)
    assert main(["study", "--systems", "Xx", "--out", str(out)]) == 2
    assert main(["study", "--strategies", "entropy", "--out", str(out)]) == 2


def test_potentials_notebook_and_runner_smoke(tmp_path):
    """Track B: notebooks 07 and 08 through papermill (offline aspirin set) and the runner's grid."""
    from alhelpers.al.runs import final_round
    from alhelpers.atomistic.summary import versus_random
    from alhelpers.run import main

    rec = run("07_bmdal_potentials.ipynb", tmp_path / "07.ipynb", SYSTEM="offline", SMOKE=True,
              STRATEGIES=["random", "lcmd-feat-ll"], SEED=1, BATCH=4, PROGRESS=False, OUT_DIR=str(tmp_path / "nb"))
    runs = pd.read_parquet(tmp_path / "nb" / rec["runs_path"])
    assert rec["n_rows"] == len(runs) == 2 * 3  # smoke: 4 → 8 → 12 structures
    assert runs.groupby("strategy")["n_labelled"].apply(list).to_dict() == {"random": [4, 8, 12], "lcmd-feat-ll": [4, 8, 12]}
    assert set(rec["final_force_mae"]) == {"random", "lcmd-feat-ll"}
    assert all(0 < v < 5 for v in rec["final_force_mae"].values())
    assert "image/png" in (tmp_path / "07.ipynb").read_text()  # the learning curves were drawn
    saved = json.loads((tmp_path / "nb" / rec["runs_path"]).with_suffix(".config.json").read_text())["config"]
    assert (saved["seed"], saved["batch"], saved["strategies"]) == (1, 4, ["random", "lcmd-feat-ll"])

    out = tmp_path / "res"
    args = ["potentials", "--system", "offline", "--strategies", "random", "maxdiag-qbc-f", "--seeds", "0", "1",
            "--batch", "4", "6", "--smoke", "--out", str(out)]
    assert main(args) == 0
    runs = pd.read_parquet(out / "potentials" / "offline_runs.parquet")
    assert set(runs["seed"]) == {0, 1} and set(runs["strategy"]) == {"random", "maxdiag-qbc-f"}
    for col in ("energy_mae", "energy_rmse", "energy_maxe", "force_mae", "force_rmse", "force_maxe",
                "unc_pearson", "fit_s", "feature_s", "query_s", "label_s"):
        assert col in runs.columns
    final = read_csv(out / "potentials" / "offline_final.csv")
    assert len(final) == 2 * 2 and final["seeds"].eq(2).all()
    last = final_round(runs)
    mean = last.groupby(["batch", "strategy"])["force_mae"].mean()
    assert final.set_index(["batch", "strategy"])["force_mae"].to_dict() == mean.to_dict()
    vs = read_csv(out / "potentials" / "offline_vs_random.csv")
    assert set(vs["metric"]) == {"force_mae", "energy_mae"} and len(vs) == 2 * 2 * 2
    assert "descriptor" not in vs.columns and "batch" in vs.columns  # Track B's own setting columns
    from alhelpers.provenance import code_id

    assert set(vs.pop("code_id")) == set(final["code_id"]) == set(runs["code_id"]) == {code_id()}
    pd.testing.assert_frame_equal(vs, versus_random(runs), check_exact=False, rtol=1e-12)
    assert set(vs.loc[vs["strategy"] == "maxdiag-qbc-f", "verdict"]) <= {"better", "worse", "similar"}
    assert (vs.loc[vs["strategy"] == "maxdiag-qbc-f", "n_pairs"] == 2).all()
    for name in ("potentials_curves_offline", "potentials_error_vs_batch_offline"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    for executed in sorted((out / "notebooks").glob("*.ipynb")):  # 07s and 08: each figure 08 saves is shown
        check_readable(executed)
    assert len(check_readable(out / "notebooks" / "08_potentials_statistics_offline.ipynb")["outputs"]) >= 5
    assert main(["potentials", "--strategies", "lcmd-qbc-f", "--out", str(out)]) == 2


def test_local_runner_closes_the_event_loop_of_each_pool_thread(tmp_path, monkeypatch):
    """papermill's client (jupyter_core) makes an asyncio loop per thread and leaves it open; the
    runner's pool closes it after each task, so no loop is garbage-collected open."""
    import asyncio

    from jupyter_core.utils import run_sync

    import alhelpers.runner.tasks as run

    loops: list[asyncio.AbstractEventLoop] = []

    async def running_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def fake_execute(task: run.Task, **_) -> dict:  # what papermill does to the loop, no kernel
        loops.append(run_sync(running_loop)())
        task.output.write_text(json.dumps({"cells": []}))
        return {}

    monkeypatch.setattr(run, "execute", fake_execute)
    res = run.run_tasks([run.Task("x.ipynb", tmp_path / f"t{i}.ipynb") for i in range(4)], jobs=2)
    assert res.ok and len(res.done) == 4
    assert len(loops) == 4 and all(loop.is_closed() for loop in loops)
