"""The study runner on Dask (a 2-worker LocalCluster) gives the sequential runner's runs table."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("distributed")

from alhelpers.formation.loop import TIMING_COLUMNS  # noqa: E402
from alhelpers.run import main  # noqa: E402
from alhelpers.runner.tasks import Task, dask_client, run_tasks, task_done  # noqa: E402

SMOKE = ["study", "--systems", "Ti-O", "--seeds", "0", "1", "--smoke", "--n-boot", "50",
         "--no-cross-db"]


def test_dask_runner_gives_the_sequential_runs_table(tmp_path, monkeypatch, capsys):
    import alhelpers.report
    import alhelpers.runner.study as run

    # statistics, figures and report run locally after the grid whatever the executor (covered
    # by test_notebooks); left out here to keep the test short
    monkeypatch.setattr(run, "report_tasks", lambda out, args: [])
    monkeypatch.setattr(alhelpers.report, "write_report", lambda out, config, wall_s: out / "report.md")

    seq, dsk = tmp_path / "seq", tmp_path / "dask"
    assert main([*SMOKE, "--jobs", "1", "--out", str(seq)]) == 0
    assert main([*SMOKE, "--executor", "dask", "--workers", "2", "--out", str(dsk)]) == 0
    assert "executor: dask (LocalCluster with 2 worker(s))" in capsys.readouterr().out
    a = pd.read_parquet(seq / "runs.parquet").drop(columns=list(TIMING_COLUMNS))
    b = pd.read_parquet(dsk / "runs.parquet").drop(columns=list(TIMING_COLUMNS))
    assert len(a) == 16  # 4 strategies x 2 rounds x 2 seeds
    pd.testing.assert_frame_equal(a, b)


def test_a_failing_task_is_reported_and_the_others_finish(tmp_path, capsys):
    nb = tmp_path / "notebooks"
    tasks = [
        Task("01_fetch.ipynb", nb / f"01_fetch_{s}.ipynb", {"SYSTEM": s, "OUT_DIR": str(tmp_path)})
        for s in ("Xx", "Ti-O")
    ]
    with dask_client(workers=2) as client:
        res = run_tasks(tasks, client=client)
    assert [f.label for f in res.failures] == ["01_fetch_Xx"]
    assert "unknown system 'Xx'" in res.failures[0].error
    assert [t.label for t in res.done] == ["01_fetch_Ti-O"]
    assert [r["table1"]["system"] for r in res.records] == ["Ti-O"]
    assert task_done(tasks[1]) and not task_done(tasks[0])
    assert len(list(nb.glob("01_fetch_Xx.*.running.ipynb"))) == 1  # kept for a look at the error
    assert "01_fetch_Xx: FAILED (ValueError: unknown system 'Xx'" in capsys.readouterr().out

    # the local executor reports the same way; the finished task is skipped
    res = run_tasks(tasks, jobs=2)
    assert [f.label for f in res.failures] == ["01_fetch_Xx"] and len(res.records) == 1
    assert "1 finished task(s) skipped" in capsys.readouterr().out


def test_study_exits_1_and_keeps_finished_runs_when_a_task_fails(tmp_path, monkeypatch, capsys):
    import alhelpers.runner.study as run

    real = run.al_tasks

    def with_a_bad_seed(out, args):  # seed 1's notebook gets an invalid parameter
        return [Task(t.notebook, t.output, {**t.parameters, "BATCH": 0})
                if t.parameters["SEED"] == 1 else t for t in real(out, args)]

    monkeypatch.setattr(run, "al_tasks", with_a_bad_seed)
    out = tmp_path / "res"
    assert main([*SMOKE, "--jobs", "2", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "03_active_learning_Ti-O_magpie_seed1: FAILED" in text
    assert "1 of 2 run(s) did not finish" in text and "report skipped" in text
    from alhelpers.layout import Layout
    from alhelpers.stages import collect_runs

    runs = collect_runs(Layout(out))  # the finished run is kept
    assert set(runs["seed"]) == {0} and len(runs) == 8
    assert not (out / "report.md").exists()


def test_side_by_side_kernels_share_the_cores(monkeypatch):
    """Two kernels of two torch threads each on two cores ran an epoch 5× slower than one; the
    local runner gives each of its ``jobs`` kernels cores // jobs threads, and keeps a user's setting."""
    import os

    from alhelpers.threads import kernel_threads

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    with kernel_threads(2) as n:
        assert n == 1 and os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in os.environ  # restored
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    with kernel_threads(3) as n:
        assert n == 5 and os.environ["OPENBLAS_NUM_THREADS"] == "5"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    with kernel_threads(2):
        assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_potentials_on_dask_give_the_runs_table_of_one_job(tmp_path, capsys):
    """Track B's (batch, seed) grid on a 2-worker LocalCluster: the same rows as one job at a time."""
    from alhelpers.keys import TIMING_COLUMNS

    grid = ["potentials", "--system", "offline", "--smoke", "--seeds", "0", "1", "--strategies", "random",
            "lcmd-feat-ll"]
    seq, dsk = tmp_path / "seq", tmp_path / "dask"
    assert main([*grid, "--jobs", "1", "--out", str(seq)]) == 0
    assert main([*grid, "--executor", "dask", "--workers", "2", "--out", str(dsk)]) == 0
    assert "executor: dask (LocalCluster with 2 worker(s))" in capsys.readouterr().out
    a, b = (pd.read_parquet(d / "potentials" / "offline_runs.parquet") for d in (seq, dsk))
    a, b = (df.drop(columns=[c for c in TIMING_COLUMNS if c in df]) for df in (a, b))
    assert len(a) == 2 * 2 * 3 and set(a["seed"]) == {0, 1}  # 2 strategies x 3 rounds x 2 seeds
    pd.testing.assert_frame_equal(a, b)
    for name in ("final", "vs_random"):
        fa, fb = (pd.read_csv(d / "potentials" / f"offline_{name}.csv") for d in (seq, dsk))
        fa, fb = (df.drop(columns=[c for c in df if c.startswith("mean_") and c.endswith("_s")]) for df in (fa, fb))
        pd.testing.assert_frame_equal(fa, fb)
