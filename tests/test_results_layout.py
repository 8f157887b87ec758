"""Result folders as people use them: reruns with other parameters, moved folders, corrupt files,
two runners, repeated seeds, bad parameters, your own table headless (issue: notebooks and result
folders as people actually use them)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from alhelpers.formation.config import FeaturizeConfig
from alhelpers.files import UnreadableFileError, atomic_write
from alhelpers.layout import Layout
from alhelpers.formation.config import ALConfig
from alhelpers.formation.loop import TIMING_COLUMNS, run_al
from alhelpers.nb import read_records
from alhelpers.run import build_parser, main
from alhelpers.runner.study import validate_study
from alhelpers.runner.tasks import results_lock
from alhelpers.stages import collect_runs, ensure_features

SMOKE = ["study", "--systems", "Ti-O", "--seeds", "0", "1", "--smoke", "--n-boot", "50", "--no-cross-db",
         "--jobs", "1"]


def _metrics(runs: pd.DataFrame) -> pd.DataFrame:
    return runs.drop(columns=[*TIMING_COLUMNS]).reset_index(drop=True)


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted((folder / "notebooks").glob("0[1-3]*.ipynb"))}


def test_moved_folder_corrupt_files_and_a_rerun_with_other_parameters(tmp_path, capsys):
    first = tmp_path / "first"
    assert main([*SMOKE, "--out", str(first)]) == 0
    smoke_runs = pd.read_parquet(first / "runs.parquet")
    assert smoke_runs["n_labelled"].max() == 15 and len(smoke_runs) == 16

    # a copied (then moved) folder reads its own data: every recorded path is relative
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    before = _mtimes(moved)
    capsys.readouterr()
    assert main([*SMOKE, "--out", str(moved)]) == 0
    assert "rerun —" not in capsys.readouterr().out
    assert _mtimes(moved) == before  # nothing recomputed
    pd.testing.assert_frame_equal(_metrics(pd.read_parquet(moved / "runs.parquet")), _metrics(smoke_runs))
    rec = read_records(moved / "notebooks" / "03_active_learning_Ti-O_magpie_seed0.ipynb")
    assert rec["runs_path"] == "runs/Ti-O_magpie_seed0.parquet"
    assert str(tmp_path) not in json.dumps(rec)

    # a truncated executed notebook and a truncated stage parquet: named, recomputed, no loop
    nb03 = moved / "notebooks" / "03_active_learning_Ti-O_magpie_seed1.ipynb"
    nb03.write_text(nb03.read_text()[:500])
    feats = moved / "data" / "features" / "snapshot" / "magpie" / "Ti-O.parquet"
    feats.write_bytes(feats.read_bytes()[:300])
    run_cfg = moved / "runs" / "Ti-O_magpie_seed0.config.json"  # which configuration made the run
    run_cfg.write_bytes(run_cfg.read_bytes()[:200])
    capsys.readouterr()
    assert main([*SMOKE, "--out", str(moved)]) == 0
    out = capsys.readouterr().out
    assert f"{nb03} is unreadable (not valid JSON" in out
    assert "02_featurize_Ti-O_magpie: rerun — its output data/features/snapshot/magpie/Ti-O.parquet changed" in out
    assert json.loads(run_cfg.read_text())["config"]["seed"] == 0  # remade, not a failed statistics stage
    pd.testing.assert_frame_equal(_metrics(pd.read_parquet(moved / "runs.parquet")), _metrics(smoke_runs))
    assert main([*SMOKE, "--out", str(moved)]) == 0  # and the next run finds everything done
    assert "rerun —" not in capsys.readouterr().out

    # smoke, then the full protocol into the same folder: refused, never the smoke results reused
    full = ["study", "--systems", "Ti-O", "--seeds", "0", "--n-boot", "50", "--no-cross-db", "--jobs", "1"]
    assert main([*full, "--out", str(moved)]) == 2
    err = capsys.readouterr().err
    assert "holds the results of another configuration" in err and "n_init 10 → 30" in err and "--replace" in err
    assert main([*full, "--replace", "--out", str(moved)]) == 0
    runs = pd.read_parquet(moved / "runs.parquet")
    assert runs["n_labelled"].max() == 105 and set(runs["round"]) == set(range(6))
    report = (moved / "report.md").read_text()
    assert "| smoke | False |" in report and "| n_init | 30 |" in report and json.loads((moved / "study.json").read_text())["protocol"]["n_init"] == 30
    assert len(list((moved / "replaced").glob("*/runs.parquet"))) == 1  # the smoke results were kept aside


def test_changed_parameters_of_one_task_rerun_it_and_say_why(tmp_path):
    from alhelpers.runner.tasks import Task, execute_task, task_status

    layout = Layout(tmp_path)
    task = Task("01_fetch.ipynb", layout.notebooks / "01.ipynb", {"SYSTEM": "Ti-O", "OUT_DIR": str(tmp_path)})
    assert task_status(task) == (False, "not run yet")
    execute_task(task)
    assert task_status(task) == (True, "done")
    other = Task(task.notebook, task.output, {**task.parameters, "SYSTEM": "Fe"})
    done, why = task_status(other)
    assert not done and why == "its parameters changed (SYSTEM 'Ti-O' → 'Fe')"
    quiet = Task(task.notebook, task.output, {**task.parameters, "PROGRESS": False})
    assert task_status(quiet)[0]  # how visibly it runs is not what it computes
    layout.system_table("snapshot", "Ti-O").unlink()
    assert task_status(task) == (False, "its output data/systems/snapshot/Ti-O.parquet is missing")


def test_truncated_checkpoint_is_named_and_its_round_recomputed(tmp_path, tio2_entries):
    from alhelpers.formation.features import featurize
    from alhelpers.stages import smoke

    fs = featurize(tio2_entries, "magpie")
    cfg = smoke(ALConfig(system="Ti-O", seed=3))
    ref = run_al(fs.X, fs.y, cfg, checkpoint_dir=tmp_path)
    (ck,) = tmp_path.rglob("hybrid/round01.json")
    ck.write_text(ck.read_text()[:40])
    with pytest.warns(UserWarning, match=rf"{ck} is unreadable \(not valid JSON.*round is recomputed"):
        again = run_al(fs.X, fs.y, cfg, checkpoint_dir=tmp_path)
    assert again.attrs["resumed_rounds"] == 1
    pd.testing.assert_frame_equal(_metrics(again), _metrics(ref))


def test_unreadable_stage_files_are_named_or_recomputed(tmp_path):
    layout = Layout(tmp_path)
    cfg = FeaturizeConfig("Ti-O", "snapshot", "magpie")
    said: list[str] = []
    fs = ensure_features(layout, cfg, say=said.append)  # a fresh folder: made by 01 and 02's stages
    assert "not in this results folder yet: making it now" in said[0] and len(fs.table) == 148
    path = layout.features("snapshot", "magpie", "Ti-O")
    path.write_bytes(path.read_bytes()[:100])
    said.clear()
    again = ensure_features(layout, cfg, say=said.append)
    assert f"{path} is unreadable (not a valid parquet file" in said[0] and "recomputing" in said[0]
    pd.testing.assert_frame_equal(again.table, fs.table)

    run = layout.run("Ti-O", "magpie", 0)
    run.parent.mkdir(parents=True)
    run.write_bytes(b"PAR1 truncated")
    (run.with_suffix(".config.json")).write_text(json.dumps({"config": ALConfig(system="Ti-O").to_dict()}))
    with pytest.raises(UnreadableFileError, match=rf"{run} is unreadable .*Rerun notebook 03 with SYSTEM = 'Ti-O', SEED = 0"):
        collect_runs(layout)


def test_a_second_runner_on_the_same_folder_is_refused(tmp_path, capsys):
    with results_lock(Layout(tmp_path)):
        assert main([*SMOKE, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is in use by another runner (pid" in err
    assert not (tmp_path / "notebooks").exists()


def test_repeated_seeds_are_merged_and_writes_use_per_process_names(tmp_path, capsys):
    args = build_parser().parse_args(["study", "--seeds", "0", "0", "1", "--systems", "C", "C"])
    validate_study(args)
    assert args.seeds == [0, 1] and args.systems == ["C"]
    assert "--seeds repeats values: using [0, 1]" in capsys.readouterr().out
    names = []
    atomic_write(tmp_path / "t.csv", lambda p: names.append(p.name) or p.write_text("a"))
    atomic_write(tmp_path / "t.csv", lambda p: names.append(p.name) or p.write_text("b"))
    assert len(set(names)) == 2 and all(n.startswith(".t.csv.") for n in names)
    assert (tmp_path / "t.csv").read_text() == "b" and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_bad_runner_flags_fail_before_any_notebook(tmp_path, capsys):
    assert main(["study", "--batch", "0", "--out", str(tmp_path / "r")]) == 2
    assert "BATCH must be >= 1, e.g. BATCH = 15; got 0" in capsys.readouterr().err
    assert main(["study", "--rounds", "-1", "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r" / "notebooks").exists()
    assert main(["study", "--source", "file", "--out", str(tmp_path / "r")]) == 2
    assert "--source file needs --table PATH" in capsys.readouterr().err


def test_config_objects_check_parameter_types():
    with pytest.raises(ValueError, match=r"SEED must be a whole number, e.g. SEED = 0; got '0' \(str\)"):
        ALConfig(seed="0")
    with pytest.raises(ValueError, match=r'STRATEGIES must be a list, not a single string, e\.g\. STRATEGIES = \["random"'):
        ALConfig(strategies="random")
    with pytest.raises(ValueError, match=r"N_INIT must be >= 1"):
        ALConfig(n_init=0)
    with pytest.raises(ValueError, match=r"ROUNDS must be a whole number"):
        ALConfig(rounds=2.5)
    assert ALConfig(seed=np.int64(2), strategies=["random"]).strategies == ("random",)


@pytest.mark.parametrize("params, message", [
    ({"SEED": "0"}, "SEED must be a whole number, e.g. SEED = 0; got '0' (str)"),
    ({"STRATEGIES": "random"}, "STRATEGIES must be a list, not a single string"),
    ({"MAX_WALL_S": float("nan")}, "MAX_WALL_S must be a finite number of seconds >= 0 (0: no limit)"),
    ({"MAX_RAM_MB": -1}, "MAX_RAM_MB must be a finite number of MB >= 0 (0: no limit)"),
    ({"SYSTEM": "Ti--O"}, "system 'Ti--O' has an empty element between 'Ti' and 'O'"),
])
def test_notebook_parameters_of_the_wrong_type_fail_in_the_config_cell(tmp_path, params, message):
    """papermill's ``-r SEED 0`` passes a string; a string for a list used to fail as 'unknown strategy r'."""
    from alhelpers.data.paths import REPO_ROOT
    from alhelpers.runner.tasks import KERNEL_START_S

    NB = REPO_ROOT / "notebooks"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NB / "03_active_learning.ipynb"), str(tmp_path / "o.ipynb"),
                            parameters={"SYSTEM": "Ti-O", "SMOKE": True, "PROGRESS": False,
                                        "OUT_DIR": str(tmp_path), **params},
                            kernel_name="python3", progress_bar=False, start_timeout=KERNEL_START_S)
    assert message in str(err.value)
    assert not (tmp_path / "data").exists()  # failed before any work


def test_floor_uses_the_rows_before_deduplication(tmp_path, snapshot):
    """Notebook 06's MP–OQMD floor, against the same number computed by hand on the snapshot."""
    from pymatgen.core import Composition

    from alhelpers.stages import cross_stage, smoke

    # by hand: Si rows with a finite target, 2–50 atoms, |E_f| <= 5 — no de-duplication
    si = snapshot[snapshot["elements"].str.split().map(lambda e: "Si" in e)]
    si = si[np.isfinite(si["formation_energy_per_atom"]) & si["nsites"].between(2, 50)
            & (si["formation_energy_per_atom"].abs() <= 5)]
    red = si["formula"].map(lambda f: Composition(f).reduced_formula)
    best = si.assign(red=red).groupby(["red", "source"])["formation_energy_per_atom"].min().unstack()
    both = best.dropna(subset=["mp", "oqmd"])
    hand_n, hand_mae = len(both), float((both["mp"] - both["oqmd"]).abs().mean())
    assert hand_n == 246 and round(hand_mae, 3) == 0.047

    res = cross_stage(smoke(ALConfig(system="Si")), Layout(tmp_path), seeds=[0])
    assert res["floor"]["n_shared"] == hand_n
    assert res["floor"]["mae_shared"] == pytest.approx(hand_mae, rel=1e-12)
    said: list[str] = []  # run again: everything is read back, and it says so
    again = cross_stage(smoke(ALConfig(system="Si")), Layout(tmp_path), seeds=[0], say=said.append)
    assert said == ["Si: resumed — 4 of 4 rounds (directions × seeds × rounds) read back from the checkpoints in "
                    "checkpoints/cross/ (same configuration and data); nothing computed."]
    pd.testing.assert_frame_equal(again["cross"], res["cross"])


def test_own_table_headless_keeps_its_sources_for_the_cross_database_stage(tmp_path, snapshot):
    """``--source file`` on a table built from the snapshot's own rows: the whole study runs."""
    rows = snapshot[snapshot["elements"].map(lambda e: {"Ti", "O"} <= set(e.split()))]
    table = pd.DataFrame({"composition": rows["formula"], "Ef": rows["formation_energy_per_atom"],
                          "source": rows["source"].str.upper()})  # "MP"/"OQMD", as an export might say
    path = tmp_path / "mine.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "res"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["study", "--source", "file", "--table", str(path), "--target", "Ef",
                     "--formula-column", "composition", "--systems", "Ti-O", "--seeds", "0", "1",
                     "--smoke", "--n-boot", "50", "--jobs", "1", "--out", str(out)])
    assert code == 0
    t1 = pd.read_csv(out / "table1.csv")
    assert t1.loc[0, "n_mp"] == 65 and t1.loc[0, "n_oqmd"] == 83  # as the snapshot's Ti–O
    cross = pd.read_parquet(out / "cross" / "Ti-O_magpie.parquet")
    assert set(cross["direction"]) == {"mp→oqmd", "oqmd→mp"}
    assert json.loads((out / "study.json").read_text())["protocol"]["table"] == str(path)


def test_empty_own_table_is_refused_before_anything_is_written(tmp_path, capsys):
    path = tmp_path / "empty.csv"
    pd.DataFrame({"formula": ["TiO2", "Ti2O3"], "Ef": ["n/a", ""]}).to_csv(path, index=False)
    out = tmp_path / "res"
    assert main(["study", "--source", "file", "--table", str(path), "--target", "Ef", "--systems", "Ti-O",
                 "--smoke", "--jobs", "1", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "01_fetch_Ti-O: FAILED (ValueError:" in text and "finite target" in text
    assert not (out / "data" / "systems").exists()
