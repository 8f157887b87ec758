"""The active-learning loop: protocol, determinism, pairing by seed, checkpoints and resume."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import max_error, mean_absolute_error, mean_squared_error, r2_score

from alhelpers.formation.features import featurize
from alhelpers.al.checkpoints import RoundCheckpoints
from alhelpers.formation.config import ALConfig
from alhelpers.formation.loop import (
    RUN_COLUMNS,
    TIMING_COLUMNS,
    checkpoint_root,
    regression_metrics,
    run_al,
    split_and_init,
)
from alhelpers.formation.models import EnsembleConfig

TINY = EnsembleConfig(n_members=2, epochs=30)


@pytest.fixture(scope="module")
def tio2_xy(tio2_entries):
    fs = featurize(tio2_entries, "magpie")
    return fs.X, fs.y


def _cfg(**kw) -> ALConfig:
    base = dict(system="Ti-O", seed=1, n_init=10, batch=5, rounds=3, model=TINY)
    return ALConfig(**{**base, **kw})


def _strip(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=list(TIMING_COLUMNS))


def test_protocol_on_real_ti_o(tio2_xy):
    X, y = tio2_xy
    cfg = _cfg()
    runs = run_al(X, y, cfg)
    assert list(runs.columns) == list(RUN_COLUMNS)
    assert len(runs) == 4 * 3
    for _, g in runs.groupby("strategy"):
        assert g["n_labelled"].tolist() == [10, 15, 20] and g["round"].tolist() == [0, 1, 2]
    assert (runs["n_test"] == 30).all() and (runs["n_pool"] == 118).all()
    assert np.isfinite(runs[["mae", "rmse", "max_error", "r2", "mean_sigma"]].to_numpy()).all()
    assert (runs["mae"] < 1.0).all()  # E_f std of Ti–O is 0.57 eV/atom; even 10 labels do better than 1
    # paired by seed: every strategy starts from the same split, initial set and model seed
    first = runs[runs["round"] == 0]
    assert first["mae"].nunique() == 1 and first["r2"].nunique() == 1


def test_same_seed_same_rows_and_other_seed_differs(tio2_xy):
    X, y = tio2_xy
    a = run_al(X, y, _cfg(strategies=("uncertainty", "diversity")))
    b = run_al(X, y, _cfg(strategies=("uncertainty", "diversity")))
    pd.testing.assert_frame_equal(_strip(a), _strip(b))
    c = run_al(X, y, _cfg(strategies=("uncertainty", "diversity"), seed=2))
    assert not np.allclose(a["mae"], c["mae"])


def test_split_and_initial_set_depend_on_seed_only():
    pool, test, init, note = split_and_init(148, _cfg(strategies=("random",)))
    pool2, test2, init2, _ = split_and_init(148, _cfg(strategies=("hybrid",), rounds=5))
    assert np.array_equal(init, init2) and np.array_equal(test, test2) and note == ""
    assert set(init) <= set(pool) and not set(pool) & set(test)


@pytest.mark.parametrize("calibration", ["cv", "batches"])  # "batches" reads its σ pairs back too
def test_resume_after_interruption_gives_the_same_table(tio2_xy, tmp_path, calibration):
    X, y = tio2_xy
    cfg = _cfg(rounds=4, calibration=calibration)
    full = run_al(X, y, cfg)
    part = run_al(X, y, cfg, checkpoint_dir=tmp_path, stop_after_round=1)
    assert len(part) == 4 * 2 and part.attrs["resumed_rounds"] == 0
    # an interruption in the middle of round 2: only one strategy got its checkpoint written
    run_al(X, y, cfg, checkpoint_dir=tmp_path, stop_after_round=2)
    run_dir = checkpoint_root(tmp_path, cfg, X, y)
    for s in ("random", "uncertainty", "diversity"):
        RoundCheckpoints(run_dir).path(s, 2).unlink()
    resumed = run_al(X, y, cfg, checkpoint_dir=tmp_path)
    assert resumed.attrs["resumed_rounds"] == 2  # round 2 is redone for all strategies together
    pd.testing.assert_frame_equal(_strip(resumed), _strip(full))
    again = run_al(X, y, cfg, checkpoint_dir=tmp_path)  # all done: nothing recomputed
    assert again.attrs["resumed_rounds"] == 4
    pd.testing.assert_frame_equal(again, resumed)
    # another parameter or other data: a fresh run, never the stale checkpoints
    assert run_al(X, y, _cfg(rounds=4, batch=6, calibration=calibration),
                  checkpoint_dir=tmp_path).attrs["resumed_rounds"] == 0
    assert run_al(X[:, :-1], y, cfg, checkpoint_dir=tmp_path).attrs["resumed_rounds"] == 0


def test_pool_smaller_than_budget_stops_at_the_pool_size(tio2_xy):
    X, y = tio2_xy
    Xs, ys = X[:20], y[:20]  # pool 16, test 4
    cfg = _cfg(n_init=10, batch=5, rounds=5, strategies=("random",))
    with pytest.warns(UserWarning, match="pool exhausted"):
        rows = run_al(Xs, ys, cfg)
    assert rows["n_labelled"].tolist() == [10, 15, 16]
    assert rows["note"].iloc[1].startswith("pool exhausted: only 1 unlabelled")
    assert rows["note"].iloc[2].startswith("pool exhausted: all 16 pool points are labelled")
    small = run_al(Xs, ys, _cfg(n_init=40, rounds=1, strategies=("random",)))
    assert small["n_labelled"].tolist() == [16] and "< n_init=40" in small["note"].iloc[0]


def test_metrics_agree_with_sklearn():
    rng = np.random.default_rng(0)
    y, pred = rng.normal(size=50), rng.normal(size=50)
    var = rng.uniform(0.01, 1.0, size=50)
    m = regression_metrics(y, pred, var)
    assert m["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)))
    assert m["max_error"] == pytest.approx(max_error(y, pred))
    assert m["r2"] == pytest.approx(r2_score(y, pred))
    assert m["mean_sigma"] == pytest.approx(np.sqrt(var).mean())
    from scipy.stats import spearmanr

    assert m["spearman_sigma_abs_err"] == pytest.approx(spearmanr(np.sqrt(var), abs(pred - y))[0])
    flat = regression_metrics(y, pred, np.full(50, 0.1))
    assert np.isnan(flat["pearson_sigma_abs_err"])  # constant σ: correlation undefined, not 0


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown|valid"):
        ALConfig(strategies=("random", "entropy"))
    with pytest.raises(ValueError, match="BATCH must be >= 1, e.g. BATCH = 15"):  # names the notebook parameter
        ALConfig(batch=0)
    with pytest.raises(ValueError, match="duplicates"):
        ALConfig(strategies=("random", "random"))
    with pytest.raises(ValueError, match=r"CALIBRATION must be one of \['cv-final', 'cv', 'batches'\], got 'CV'"):
        ALConfig(calibration="CV")
    assert ALConfig().budget == 105


def test_hybrid_alpha_from_the_config_reaches_the_strategy(tio2_xy):
    X, y = tio2_xy
    # alpha = 1: hybrid ranks by min-max-normalised variance only, i.e. exactly like uncertainty
    runs = run_al(X, y, _cfg(strategies=("uncertainty", "hybrid"), hybrid_alpha=1.0))
    u = _strip(runs[runs["strategy"] == "uncertainty"]).drop(columns="strategy").reset_index(drop=True)
    h = _strip(runs[runs["strategy"] == "hybrid"]).drop(columns="strategy").reset_index(drop=True)
    pd.testing.assert_frame_equal(u, h)
    default = run_al(X, y, _cfg(strategies=("hybrid",)))
    assert not np.allclose(default["mae"].iloc[1:], h["mae"].iloc[1:])


def _initial_cv_pairs(X, y, cfg: ALConfig, init: np.ndarray, seed: int) -> tuple[list, list]:
    """Round 0's recalibration pairs, by hand: each cross-validation fold of the initial set's
    held-out signed errors and σ."""
    from alhelpers.al.seeding import stream
    from alhelpers.calibration import cv_folds
    from alhelpers.formation.models import EnsembleRegressor

    err, sig = [], []
    for train, held in cv_folds(len(init), cfg.cv_folds, stream(cfg.seed, "cv", 0)):
        m = EnsembleRegressor(TINY, seed=seed).fit(X[init[train]], y[init[train]])
        mean, var = m.predict(X[init[held]])
        err.append(mean - y[init[held]])
        sig.append(np.sqrt(var))
    return err, sig


def test_calibration_columns_recalibrate_from_cross_validation_only(tio2_xy):
    # Round 0 of one strategy, rebuilt by hand: the σ factor comes from ensembles trained on
    # the cross-validation folds of the labelled rows (never the test set); the test columns are
    # the calibration metrics of the test errors with that factor; mae_pred is the pool's
    # recalibrated σ·√(2/π).
    from alhelpers.al.seeding import stream
    from alhelpers.calibration import ROUND_COLUMNS, calibration_metrics, predicted_mae, recalibrate
    from alhelpers.formation.models import EnsembleRegressor

    X, y = tio2_xy
    cfg = _cfg(strategies=("random",), rounds=1)
    row = run_al(X, y, cfg).iloc[0]
    pool, test, init, _ = split_and_init(len(y), cfg)
    seed = int(stream(cfg.seed, "model", 0).integers(2**31))
    err, sig = _initial_cv_pairs(X, y, cfg, init, seed)
    r = recalibrate(np.concatenate(err), np.concatenate(sig))
    assert row["sigma_scale"] == pytest.approx(r.scale, rel=1e-6)
    assert row["sigma_floor"] == pytest.approx(r.floor, rel=1e-6, abs=1e-12)
    model = EnsembleRegressor(TINY, seed=seed).fit(X[init], y[init])
    mean, var = model.predict(X[test])
    want = calibration_metrics(mean - y[test], np.sqrt(var), recal=r)
    for name, value in want.items():
        assert row[name] == pytest.approx(value, rel=1e-5), name
    rest = np.setdiff1d(pool, init)
    assert row["mae_pred"] == pytest.approx(predicted_mae(np.sqrt(model.predict(X[rest])[1]), recal=r), rel=1e-6)
    assert set(ROUND_COLUMNS) <= set(RUN_COLUMNS)


def test_batches_recalibrate_on_the_predictions_that_chose_each_batch(tio2_xy, tmp_path):
    # Round 1 of one strategy, rebuilt by hand: CALIBRATION = "batches" fits σ' on the initial
    # set's cross-validation errors and on the errors round 0's model made on the batch it then
    # queried (predicted before those labels were used); no extra ensemble is trained after round 0.
    import json

    from alhelpers.al.seeding import stream
    from alhelpers.calibration import recalibrate
    from alhelpers.formation.models import EnsembleRegressor

    X, y = tio2_xy
    cfg = _cfg(strategies=("random",), rounds=2, calibration="batches")
    runs = run_al(X, y, cfg, checkpoint_dir=tmp_path)
    pool, test, init, _ = split_and_init(len(y), cfg)
    seed = int(stream(cfg.seed, "model", 0).integers(2**31))
    err, sig = _initial_cv_pairs(X, y, cfg, init, seed)
    (ck,) = tmp_path.rglob("random/round00.json")
    batch = np.asarray(json.loads(ck.read_text())["queried"])
    assert len(batch) == cfg.batch
    model0 = EnsembleRegressor(TINY, seed=seed).fit(X[init], y[init])
    mean, var = model0.predict(X[batch])
    r = recalibrate(np.concatenate([*err, mean - y[batch]]), np.concatenate([*sig, np.sqrt(var)]))
    assert runs.iloc[1]["sigma_scale"] == pytest.approx(r.scale, rel=1e-6)
    assert runs.iloc[1]["sigma_floor"] == pytest.approx(r.floor, rel=1e-6, abs=1e-12)
    cv = run_al(X, y, replace(cfg, calibration="cv"))  # the default cross-validation: other σ', the same models
    np.testing.assert_array_equal(cv["mae"], runs["mae"])
    assert cv.iloc[0]["sigma_scale"] == runs.iloc[0]["sigma_scale"] and cv.iloc[1]["sigma_scale"] != runs.iloc[1]["sigma_scale"]


def test_cv_final_is_cv_in_the_final_round_and_batches_before_it(tio2_xy, tmp_path):
    # The default CALIBRATION = "cv-final" cross-validates only the round the strategies are compared
    # at: its final-round σ' is "cv"'s number for number (the same cross-validation ensembles, trained in
    # the same stacked computation), the rounds before it are "batches"' — and no model or MAE moves.
    from alhelpers.calibration import ROUND_COLUMNS

    X, y = tio2_xy
    assert ALConfig().calibration == "cv-final"
    cfg = _cfg(calibration="cv-final")
    final = run_al(X, y, cfg, checkpoint_dir=tmp_path)
    cv = run_al(X, y, replace(cfg, calibration="cv"))
    batches = run_al(X, y, replace(cfg, calibration="batches"))
    cols = [str(c) for c in ROUND_COLUMNS]
    last = final["round"] == cfg.rounds - 1
    assert last.sum() == 4 and np.isfinite(final.loc[last, "sigma_scale"]).all()
    pd.testing.assert_frame_equal(_strip(final), _strip(cv).assign(**{c: final[c] for c in cols}))
    pd.testing.assert_frame_equal(final.loc[last, cols], cv.loc[last, cols])
    pd.testing.assert_frame_equal(final.loc[~last, cols], batches.loc[~last, cols])
    assert not np.allclose(final.loc[~last, "sigma_scale"], cv.loc[~last, "sigma_scale"])
    # resumed from its checkpoints (the batches' pairs read back), the same table
    pd.testing.assert_frame_equal(_strip(run_al(X, y, cfg, checkpoint_dir=tmp_path)), _strip(final))
    # with a stopping rule any round may be the last: every round cross-validates, as "cv" does
    ruled = run_al(X, y, replace(cfg, target_mae=1e-6))
    pd.testing.assert_frame_equal(ruled[cols], run_al(X, y, replace(cfg, calibration="cv", target_mae=1e-6))[cols])


def test_each_round_trains_one_model_per_distinct_labelled_set(tio2_xy, monkeypatch):
    # Round 0: every strategy has the initial set (10), so one ensemble is trained for all four, with the
    # initial set's 3 cross-validation folds; the rounds in between train each strategy's own model
    # only; the final round adds the 3 folds of each strategy's set ("cv-final", the default).
    import alhelpers.formation.loop as loop

    sizes = []
    real = loop.fit_ensembles

    def counting(Xs, ys, *a, **kw):
        sizes.append(sorted(len(x) for x in Xs))
        return real(Xs, ys, *a, **kw)

    monkeypatch.setattr(loop, "fit_ensembles", counting)
    X, y = tio2_xy
    runs = run_al(X, y, _cfg())
    assert sizes == [[6, 7, 7, 10], [15] * 4, [13] * 8 + [14] * 4 + [20] * 4]
    first = runs[runs["round"] == 0]
    assert first[["mae", "mean_sigma", "sigma_scale"]].nunique().tolist() == [1, 1, 1]


def test_calibration_is_nan_not_an_error_with_too_few_labels(tio2_xy):
    # 3 labels in 3 folds would train on 2 rows each: fine; 2 labels cannot be cross-validated
    X, y = tio2_xy
    assert np.isfinite(run_al(X, y, _cfg(strategies=("random",), n_init=3, rounds=1))["sigma_scale"]).all()
    runs = run_al(X, y, _cfg(strategies=("random",), n_init=2, rounds=1))
    assert np.isnan(runs["sigma_scale"]).all() and np.isnan(runs["z2_mean_cal"]).all()
    assert np.isfinite(runs["z2_mean"]).all()


def test_stopping_rule_ends_labelling_at_the_target_and_resumes(tio2_xy, tmp_path):
    # Each strategy stops after the first round (before the last) whose predicted MAE is at or below
    # the target; until then its rows are those of the run without a target that cross-validates
    # every round (as the default "cv-final" does when a target is set: any round may be the last).
    X, y = tio2_xy
    strategies = ("random", "uncertainty")
    free = run_al(X, y, _cfg(strategies=strategies, calibration="cv"))
    cols = ["strategy", "round", "n_labelled", "mae", "mae_pred", "sigma_scale"]
    # the shared round 0 at the target: both stop there; below every prediction: none stops
    for k, target in enumerate([float(free["mae_pred"].iloc[0]), 0.99 * float(free["mae_pred"].min())]):
        cfg = _cfg(strategies=strategies, target_mae=target)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs = run_al(X, y, cfg, checkpoint_dir=tmp_path / str(k))
        assert sum("stopped: predicted test MAE" in str(w.message) for w in caught) == (2 if k == 0 else 0)
        for strategy, g in free.groupby("strategy"):
            hit = g.index[(g["mae_pred"] <= target) & (g["round"] < cfg.rounds - 1)]
            want = g.loc[: hit[0]] if len(hit) else g
            got = runs[runs["strategy"] == strategy]
            pd.testing.assert_frame_equal(got[cols].reset_index(drop=True), want[cols].reset_index(drop=True))
            if len(hit):
                assert got["note"].iloc[-1].startswith("stopped: predicted test MAE")
        assert runs["round"].max() == (0 if k == 0 else cfg.rounds - 1)
        again = run_al(X, y, cfg, checkpoint_dir=tmp_path / str(k))  # a stopped strategy stays stopped
        pd.testing.assert_frame_equal(_strip(runs), _strip(again))
