"""Track B active-learning loop on the committed offline set (aspirin, GFN2-xTB): methods, metrics,
selection, seeding, checkpoints and resume, on-the-fly labelling, and the runner."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from alhelpers.anymodel.select import parse_potential_method
from alhelpers.anymodel.train import TrainConfig
from alhelpers.atomistic.al import POTENTIAL_COLUMNS, potential_metrics, run_potentials
from alhelpers.atomistic.config import DEFAULT_STRATEGIES, METHODS, PotentialsConfig
from alhelpers.atomistic.data.offline import load_offline
from alhelpers.atomistic.features import ae_forces, ll_features
from alhelpers.atomistic.oracle import PoolOracle
from alhelpers.atomistic.selection import select_batch
from alhelpers.atomistic.train import fit_potential
from alhelpers.select.methods import bmdal_select

TINY = dict(n_pool=24, n_val=4, n_test=8, n_init=4, batch=4, max_size=8, ensemble=2, rp_dim=32,
            hidden=(16, 16), train=TrainConfig(max_epochs=6, patience=3, dtype="float32"))


@pytest.fixture(scope="module")
def offline():
    return load_offline(limit=60)


def _cfg(**kw) -> PotentialsConfig:
    return PotentialsConfig(system="offline", **{**TINY, **kw})


def test_method_names() -> None:
    assert set(DEFAULT_STRATEGIES) <= set(METHODS)
    for m in METHODS:
        parse_potential_method(m)
    r = parse_potential_method("random")
    assert (r.rule, r.kernel, r.diagonal, r.base, r.gp) == ("maxdiag", "rnd", "rnd", None, False)
    m = parse_potential_method("lcmd-feat-rp")
    assert (m.rule, m.kernel, m.diagonal, m.base, m.gp) == ("lcmd", "feat-rp", None, "rp", False)
    g = parse_potential_method("maxdet-gp-ll")
    assert (g.rule, g.base, g.gp) == ("maxdet", "ll", True)
    for bad, words in (("lcmd-qbc-f", "diagonal kernel"), ("maxdet-feat-xx", "unknown method"),
                       ("lcmd-gp-ll", "plain features"), ("best", "unknown method")):
        with pytest.raises(ValueError, match=words):
            parse_potential_method(bad)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="MAX_SIZE"):
        PotentialsConfig(n_init=20, max_size=10)
    with pytest.raises(ValueError, match="n_init"):
        PotentialsConfig(n_pool=5, n_init=10)
    assert PotentialsConfig(n_init=10, batch=10, max_size=100).rounds == 10
    assert PotentialsConfig(n_init=10, batch=15, max_size=100).rounds == 7  # last batch is cut to 100
    c = PotentialsConfig.for_system("tio2", 1000)
    assert (c.n_pool, c.n_val, c.n_test) == (700, 50, 250)
    c = PotentialsConfig.for_system("lmnto", 824)
    assert c.n_pool + c.n_val + c.n_test == 824
    with pytest.raises(ValueError, match="STRATEGIES"):
        PotentialsConfig(strategies=("random", "random"))
    with pytest.raises(ValueError, match="unknown method"):
        PotentialsConfig(strategies=("best",))
    with pytest.raises(ValueError, match="SEED must be a whole number"):
        PotentialsConfig(seed="0")


def test_metrics_by_hand(offline) -> None:
    sub = offline.subset([0, 1])
    n = sub.n_atoms
    E = sub.energy + np.array([0.21, -0.42])  # per atom: 0.01, -0.02 (21 atoms)
    F = [f.copy() for f in sub.forces]
    F[0][0, 0] += 0.3
    F[1][2, 1] -= 0.6
    m = potential_metrics(sub, E, F)
    assert n.tolist() == [21, 21]
    assert m["energy_mae"] == pytest.approx(0.015)
    assert m["energy_rmse"] == pytest.approx(np.sqrt((0.01 ** 2 + 0.02 ** 2) / 2))
    assert m["energy_maxe"] == pytest.approx(0.02)
    assert m["force_mae"] == pytest.approx(0.9 / (2 * 21 * 3))
    assert m["force_maxe"] == pytest.approx(0.6)


def test_selection_uses_the_rules_on_the_potentials_features(offline) -> None:
    train, cand = offline.subset(range(6)), offline.subset(range(6, 30))
    model, _ = fit_potential(train, None, TrainConfig(max_epochs=3, dtype="float64"), hidden=(16, 16), seed=0)
    rng = np.random.default_rng(5)
    picks = select_batch("maxdist-feat-ll", models=[model], candidates=cand, labelled=train, batch=5, rng=rng)
    # the same rule on the features computed directly, with the same tie-breaking permutation
    perm = np.random.default_rng(5).permutation(len(cand))
    phi_c = ll_features(model, cand.subset(perm))
    phi_l = ll_features(model, train)
    ref = perm[bmdal_select("maxdist", phi_c, phi_l, 5, gp=False, device="cpu")]
    np.testing.assert_array_equal(picks, ref)
    # AE(F): the structures with the largest actual force errors (an oracle)
    timings: dict = {}
    ae = select_batch("maxdiag-ae-f", models=[model], candidates=cand, labelled=train, batch=3,
                      rng=np.random.default_rng(0), timings=timings)
    err = ae_forces(model, cand)
    assert set(ae.tolist()) == set(np.argsort(-err)[:3].tolist())
    assert timings["feature_s"] > 0 and "query_s" in timings
    # AE needs labels
    blind = cand.subset(range(len(cand)))
    blind.energy = np.full(len(blind), np.nan)
    with pytest.raises(ValueError, match="labels"):
        select_batch("maxdiag-ae-e", models=[model], candidates=blind, labelled=train, batch=2,
                     rng=np.random.default_rng(0))


def test_run_rows_seeding_and_shared_start(offline, tmp_path) -> None:
    methods = ("random", "lcmd-feat-ll", "maxdiag-qbc-f", "maxdet-gp-rp")
    runs = run_potentials(offline, _cfg(strategies=methods, seed=3), checkpoints=tmp_path)
    assert list(runs.columns) == list(POTENTIAL_COLUMNS)
    assert len(runs) == 4 * 2
    assert runs.groupby("strategy")["n_labelled"].apply(list).to_dict() == {m: [4, 8] for m in methods}
    assert runs[["energy_mae", "force_mae", "force_rmse"]].notna().all().all()
    assert (runs["force_rmse"] >= runs["force_mae"]).all() and (runs["force_maxe"] >= runs["force_rmse"]).all()
    # every method starts from the same structures and the same round-0 potential
    r0 = runs[runs["round"] == 0]
    assert r0["force_mae"].nunique() == 1 and r0["energy_mae"].nunique() == 1
    assert (runs.loc[runs["strategy"] == "maxdiag-qbc-f", "feature_s"] > 0).all()  # the extra member
    # seeded: the same call gives the same numbers (times aside), another seed does not
    again = run_potentials(offline, _cfg(strategies=methods, seed=3))
    cols = ["strategy", "round", "n_labelled", "energy_mae", "force_mae", "unc_pearson"]
    pd.testing.assert_frame_equal(runs[cols], again[cols])
    other = run_potentials(offline, _cfg(strategies=("random",), seed=4))
    assert other["force_mae"].iloc[0] != runs["force_mae"].iloc[0]


def test_round_zero_trains_and_evaluates_once_for_every_strategy(offline, monkeypatch) -> None:
    """Round 0 is the same for every strategy: each committee member is trained once (member 0 is
    every strategy's potential), the test/validation predictions and each uncertainty computed
    once; the rows are those of each strategy run alone."""
    from alhelpers.atomistic import al

    calls = {"fit": 0, "predict": 0, "uncertainty": 0}
    for name in calls:
        original = getattr(al._OwnBackend, name)

        def counted(self, *args, _name=name, _original=original, **kw):
            calls[_name] += 1
            return _original(self, *args, **kw)

        monkeypatch.setattr(al._OwnBackend, name, counted)
    methods = ("random", "maxdiag-qbc-f", "maxdiag-gp-ll", "maxdet-gp-ll")
    cfg = _cfg(strategies=methods, seed=5, max_size=4)  # round 0 only
    runs = run_potentials(offline, cfg)
    # 2 members; test + validation of the one potential; GP(LL) shared by random and the GP methods, QBC(F)
    assert calls == {"fit": 2, "predict": 2, "uncertainty": 2}
    cols = [c for c in POTENTIAL_COLUMNS if not c.endswith("_s")]
    for m in methods:
        alone = run_potentials(offline, replace(cfg, strategies=(m,)))
        pd.testing.assert_frame_equal(runs.loc[runs["strategy"] == m, cols].reset_index(drop=True),
                                      alone[cols], check_exact=True)


def test_checkpoints_resume_exactly(offline, tmp_path) -> None:
    cfg = _cfg(max_size=12, strategies=("lcmd-feat-rp",), seed=1)
    full = run_potentials(offline, cfg, checkpoints=tmp_path)
    ck = sorted(tmp_path.rglob("round*.json"))
    assert [p.name for p in ck] == ["round00.json", "round01.json", "round02.json"]
    rounds = [json.loads(p.read_text()) for p in ck]
    # each round keeps only what it added: the start set and its batch, then a batch, then nothing
    assert [len(r["extra"].get("index", [])) for r in rounds] == [8, 4, 0]
    assert [len(r["queried"]) for r in rounds] == [4, 4, 0]
    assert rounds[1]["extra"]["index"] == rounds[1]["queried"]
    part = run_potentials(offline, cfg, checkpoints=tmp_path / "part", stop_after_round=1)  # interrupted
    assert part["round"].tolist() == [0, 1]
    resumed = run_potentials(offline, cfg, checkpoints=tmp_path / "part")
    assert resumed.attrs["resumed_rounds"] == 2
    cols = ["round", "n_labelled", "energy_mae", "force_mae"]
    pd.testing.assert_frame_equal(full[cols], resumed[cols])
    # another configuration never resumes these checkpoints
    other = run_potentials(offline, _cfg(max_size=12, batch=8, strategies=("lcmd-feat-rp",), seed=1),
                           checkpoints=tmp_path)
    assert other["n_labelled"].tolist() == [4, 12]


def test_resume_is_exact_with_warm_starts(offline, tmp_path) -> None:
    """Warm starts continue from the last round's models, so those are checkpointed (the last three
    rounds' snapshots; none once the run has finished); a resumed run reads them and matches an
    uninterrupted one exactly, also when a snapshot or a round file was truncated."""
    cfg = _cfg(max_size=16, strategies=("maxdiag-qbc-f", "lcmd-feat-ll"), seed=2, warm_start=True)
    cols = ["strategy", "round", "n_labelled", "energy_mae", "force_mae", "unc_pearson", "epochs"]
    full = run_potentials(offline, cfg)
    assert full["n_labelled"].tolist() == [4, 8, 12, 16] * 2
    cold = run_potentials(offline, replace(cfg, warm_start=False))
    assert not np.allclose(cold["force_mae"].iloc[1:4], full["force_mae"].iloc[1:4])  # warm starts matter

    def interrupted(folder):  # a run stopped after round 2
        part = run_potentials(offline, cfg, checkpoints=folder, stop_after_round=2)
        assert part["round"].max() == 2
        return next(folder.rglob("lcmd-feat-ll")).parent

    run = interrupted(tmp_path / "a")
    assert sorted(p.name for p in (run / "lcmd-feat-ll").glob("*.pt")) == ["round00.pt", "round01.pt", "round02.pt"]
    resumed = run_potentials(offline, cfg, checkpoints=tmp_path / "a")
    assert resumed.attrs["resumed_rounds"] == 3
    pd.testing.assert_frame_equal(full[cols], resumed[cols])
    assert not list(run.rglob("*.pt"))  # finished: no snapshots kept, and none needed
    assert run_potentials(offline, cfg, checkpoints=tmp_path / "a").attrs["resumed_rounds"] == 4

    run = interrupted(tmp_path / "b")  # a truncated snapshot: named, its round recomputed
    snap = run / "lcmd-feat-ll" / "round02.pt"
    snap.write_bytes(snap.read_bytes()[:200])
    with pytest.warns(UserWarning, match=rf"{snap} is unreadable \(not a snapshot torch.load can read.*"
                                         r"round is recomputed"):
        again = run_potentials(offline, cfg, checkpoints=tmp_path / "b")
    assert again.attrs["resumed_rounds"] == 2
    pd.testing.assert_frame_equal(full[cols], again[cols])

    run = interrupted(tmp_path / "c")  # a truncated round file: named, recomputed (no bare JSONDecodeError)
    ck = run / "maxdiag-qbc-f" / "round02.json"
    ck.write_text(ck.read_text()[:50])
    with pytest.warns(UserWarning, match=rf"{ck} is unreadable \(not valid JSON.*round is recomputed"):
        last = run_potentials(offline, cfg, checkpoints=tmp_path / "c")
    assert last.attrs["resumed_rounds"] == 2
    pd.testing.assert_frame_equal(full[cols], last[cols])


def test_on_the_fly_labels_only_what_is_selected(offline) -> None:
    pytest.importorskip("tblite")
    from alhelpers.atomistic.oracle import tblite_oracle

    oracle = tblite_oracle()
    blind = offline.subset(range(len(offline)))
    blind.energy = np.full(len(blind), np.nan)
    blind.forces = [np.full_like(f, np.nan) for f in blind.forces]
    cfg = _cfg(strategies=("maxdist-feat-ll",))
    runs = run_potentials(blind, cfg, oracle=oracle)
    assert runs["n_labelled"].tolist() == [4, 8]
    assert oracle.n_calls == cfg.n_val + cfg.n_test + cfg.max_size  # never the rest of the pool
    pooled = run_potentials(offline, cfg, oracle=PoolOracle(offline))
    # GFN2-xTB recomputed here equals the stored GFN2-xTB labels, so the errors agree closely
    np.testing.assert_allclose(runs["force_mae"], pooled["force_mae"], rtol=1e-3)


def test_statistics_refuse_runs_of_different_settings(offline, tmp_path) -> None:
    """Notebook 08's collection: runs of one batch size made with other settings are not compared."""
    from alhelpers.atomistic.summary import collect_potential_runs
    from alhelpers.files import write_parquet
    from alhelpers.layout import Layout

    layout = Layout(tmp_path)
    for seed, max_size in ((0, 8), (1, 8), (2, 12)):
        cfg = _cfg(strategies=("random",), seed=seed, max_size=max_size)
        path = layout.potentials_run("offline", cfg.batch, seed)
        write_parquet(path, run_potentials(offline, cfg))
        cfg.save(path.with_suffix(".config.json"))
    both = collect_potential_runs(layout, "offline", seeds=[0, 1])
    assert sorted(both["seed"].unique()) == [0, 1] and both["n_labelled"].max() == 8
    with pytest.raises(ValueError, match="different settings"):
        collect_potential_runs(layout, "offline")
    with pytest.raises(FileNotFoundError, match="SEED = 5"):
        collect_potential_runs(layout, "offline", seeds=[5])


@pytest.mark.parametrize("strategy", ["maxdet-gp-ll", "maxdiag-qbc-f"])
def test_calibration_columns_rebuilt_by_hand(offline, strategy) -> None:
    # Round 0 rebuilt from the parts: the method's uncertainty on the validation split fits the σ
    # factor, the test columns are its calibration metrics, and mae_pred is the atom-weighted
    # recalibrated σ of the unlabelled pool (the uncertainty of test, validation and pool
    # structures comes from one pass, so it must equal the uncertainty of each set alone).
    from alhelpers.al.seeding import seed_int
    from alhelpers.atomistic.al import UNCERTAINTY_STREAM
    from alhelpers.atomistic.data import split_indices
    from alhelpers.atomistic.features import force_rmse_per_structure
    from alhelpers.atomistic.selection import uncertainty
    from alhelpers.atomistic.train import predict
    from alhelpers.calibration import calibration_metrics, predicted_mae, recalibrate

    cfg = _cfg(strategies=(strategy,), max_size=4, seed=2)
    row = run_potentials(offline, cfg).iloc[0]
    split = split_indices(len(offline), n_pool=cfg.n_pool, n_val=cfg.n_val, n_test=cfg.n_test, seed=cfg.seed)
    train = offline.subset(split["pool"][: cfg.n_init])
    n_members = cfg.ensemble if "qbc" in strategy else 1
    models = [fit_potential(train, offline.subset(split["val"]), cfg.train, species=offline.species, hidden=cfg.hidden,
                            seed=seed_int(cfg.seed, m, 0))[0] for m in range(n_members)]
    method = parse_potential_method(strategy)
    seed = seed_int(cfg.seed, UNCERTAINTY_STREAM, 0)

    def unc_err(part):
        sub = offline.subset(part)
        unc = uncertainty(method, models, sub, train, rp_dim=cfg.rp_dim, seed=seed, cache=None)
        _, F = predict(models[0], sub)
        return unc, force_rmse_per_structure(F, sub)

    u_val, e_val = unc_err(split["val"])
    u_test, e_test = unc_err(split["test"])
    r = recalibrate(e_val, u_val)
    assert row["sigma_scale"] == pytest.approx(r.scale, rel=1e-5)
    assert row["sigma_floor"] == pytest.approx(r.floor, rel=1e-5, abs=1e-12)
    for name, value in calibration_metrics(e_test, u_test, recal=r).items():
        assert row[name] == pytest.approx(value, rel=1e-4), name
    rest = split["pool"][cfg.n_init:]
    u_pool = uncertainty(method, models, offline.subset(rest), train, rp_dim=cfg.rp_dim, seed=seed, cache=None)
    assert row["mae_pred"] == pytest.approx(predicted_mae(u_pool, recal=r, weights=offline.n_atoms[rest]), rel=1e-5)


def test_stopping_rule_stops_labelling_at_the_target(offline) -> None:
    free = run_potentials(offline, _cfg(strategies=("random", "maxdiag-qbc-f"), max_size=12, seed=2))
    r0 = free[free["round"] == 0].set_index("strategy")["mae_pred"]
    assert np.isfinite(r0).all()  # force MAE in eV/Å predicted from the pool
    target = float(r0.max())
    with pytest.warns(UserWarning, match="stopped: predicted test MAE .* eV/Å"):
        runs = run_potentials(offline, _cfg(strategies=("random", "maxdiag-qbc-f"), max_size=12, seed=2,
                                             target_mae=target))
    assert runs["round"].tolist() == [0, 0] and runs["note"].str.startswith("stopped").all()
    cols = ["strategy", "n_labelled", "force_mae", "mae_pred"]
    pd.testing.assert_frame_equal(runs[cols], free[free["round"] == 0][cols].reset_index(drop=True))
