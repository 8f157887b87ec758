"""CHGNet, the pretrained universal potential, through the model-agnostic path (needs the optional
chgnet; CI installs it). Small periodic Ti–O cells built here: rutile TiO2, rock-salt TiO, hcp Ti."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("chgnet", reason="chgnet is not installed: pip install 'alhelpers[chgnet]' to run the CHGNet tests")

from alhelpers.anymodel.chgnet import (  # noqa: E402
    pretrained_chgnet,
    reference_energies,
    refit_reference,
)
from alhelpers.anymodel.gradients import gradient_features, module_names  # noqa: E402
from alhelpers.anymodel.select import select_structures  # noqa: E402
from alhelpers.anymodel.train import predict_adapter  # noqa: E402


def _cells(n: int, seed: int = 0):
    from ase.build import bulk
    from ase.spacegroup import crystal

    rutile = crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3, 0.3, 0.0)], spacegroup=136, cellpar=[4.6, 4.6, 2.95, 90, 90, 90])
    rocksalt = bulk("TiO", "rocksalt", a=4.2)
    ti = bulk("Ti", "hcp", a=2.95, c=4.68)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = (rutile, rocksalt, ti)[k % 3].copy()
        a.rattle(stdev=0.05, seed=int(rng.integers(2**31)))
        out.append(a)
    return out


@pytest.fixture(scope="module")
def chgnet():
    return pretrained_chgnet()


def test_chgnet_ll_is_autograds_gradient_with_respect_to_the_readout(chgnet, autograd_gradient):
    assert chgnet.readouts == ("mlp.layers.7",)
    s = _cells(4)
    ll = gradient_features(chgnet, s, "ll")
    assert ll.shape == (4, 65)  # 64 weights and the bias of the last linear map
    np.testing.assert_allclose(ll, autograd_gradient(chgnet, s, chgnet.readouts), rtol=2e-4, atol=1e-5)


def test_chgnet_full_gradient_and_rp_kernel(chgnet, autograd_gradient, rp_kernel_sampled):
    s = _cells(3)
    names = module_names(chgnet, "rp")
    assert any(n.startswith("angle_layers") for n in names) and not any(n.startswith("composition_model") for n in names)
    full = gradient_features(chgnet, s, "full")
    np.testing.assert_allclose(full, autograd_gradient(chgnet, s, names), rtol=1e-3, atol=1e-4)
    err, spread = rp_kernel_sampled(chgnet, s, full @ full.T, 32)  # unbiased for the exact kernel
    assert err < 2 * spread / np.sqrt(32) and err < 0.1, (err, spread)


def test_the_reference_refit_recovers_known_element_shifts(chgnet):
    """Labels = CHGNet's own energies shifted by +0.8 eV per Ti and −0.45 eV per O: the refit
    finds exactly those shifts (three compositions: TiO2, TiO, Ti), and then predicts the labels."""
    import copy

    s = _cells(6, seed=3)
    model = copy.deepcopy(chgnet)
    before = reference_energies(model)
    pred = predict_adapter(model, s, forces=False)[0]
    counts = np.array([[np.sum(a.numbers == 22), np.sum(a.numbers == 8)] for a in s])
    labels = pred + counts @ np.array([0.8, -0.45])
    shift = refit_reference(model, s, labels)
    assert shift == pytest.approx({22: 0.8, 8: -0.45}, abs=2e-5)
    after = reference_energies(model)
    assert after[22] - before[22] == pytest.approx(0.8, abs=2e-5) and after[3] == before[3]
    np.testing.assert_allclose(predict_adapter(model, s, forces=False)[0], labels, atol=5e-4)


def test_chgnet_selects_a_batch_before_any_fine_tuning(chgnet):
    pool, train = _cells(9, seed=5), _cells(3, seed=6)
    for method in ("maxdet-gp-ll", "lcmd-feat-rp"):
        sel = select_structures(chgnet, train, pool, method=method, batch=3, rng=0)
        assert len(set(sel.indices.tolist())) == 3 and sel.scores.shape == (9,)


def test_the_track_b_study_fine_tunes_chgnet_with_bmdal(tmp_path, tio2):
    """``run_potentials`` with ``model="chgnet"`` on real TiO2 cells: every round starts from the
    pretrained weights with the reference refitted; the round-0 model is the same for every
    strategy; a rerun reads every round back from the checkpoints."""

    from alhelpers.anymodel.train import TrainConfig
    from alhelpers.atomistic.al import run_potentials
    from alhelpers.atomistic.config import PotentialsConfig

    data = tio2
    small = data.subset(np.flatnonzero(data.n_atoms <= 12)[:30])
    cfg = PotentialsConfig.smoke("tio2", model="chgnet", n_pool=16, n_val=4, n_test=6, n_init=3, batch=3, max_size=6,
                                 strategies=("random", "maxdet-gp-ll"),
                                 train=TrainConfig(dtype="float32", lr=1e-4, max_epochs=2, patience=2))
    runs = run_potentials(small, cfg, checkpoints=tmp_path)
    assert runs.groupby("strategy")["n_labelled"].apply(list).to_dict() == {"random": [3, 6], "maxdet-gp-ll": [3, 6]}
    first = runs[runs["round"] == 0]
    assert first["force_mae"].nunique() == 1 and (runs["model"] == "chgnet").all()
    # round 0 is the pretrained CHGNet, its reference refitted to the start set, fine-tuned from the
    # seed of member 0, round 0: the same model built by hand scores the same on the test split
    from alhelpers.al.seeding import seed_int
    from alhelpers.anymodel.train import fit_adapter
    from alhelpers.atomistic.data import split_indices

    split = split_indices(len(small), n_pool=16, n_val=4, n_test=6, seed=0)
    start, val, test = (small.subset(i) for i in (split["pool"][:3], split["val"], split["test"]))
    model = pretrained_chgnet()
    refit_reference(model, start.structures, start.energy)
    model, _ = fit_adapter(model, start, val, cfg.train, seed=seed_int(0, 0, 0))
    F = predict_adapter(model, test.structures)[1]
    force_mae = np.mean(np.abs(np.concatenate(F) - np.concatenate(test.forces)))
    assert first["force_mae"].iloc[0] == pytest.approx(force_mae, rel=1e-6)
    again = run_potentials(small, cfg, checkpoints=tmp_path)
    assert again.attrs["resumed_rounds"] == 2 and again["force_mae"].tolist() == runs["force_mae"].tolist()


def test_the_start_set_is_chosen_on_the_pretrained_features_before_any_label(tmp_path, tio2):
    """``init_method="maxdet-feat-ll"``: the start set is MAXDET on the pretrained CHGNet's FEAT(LL)
    of the pool, with nothing labelled (the same selection made by hand); it needs a pretrained
    model and a rule that needs no labels."""

    from alhelpers.al.seeding import stream
    from alhelpers.anymodel.select import adapter_select
    from alhelpers.anymodel.train import TrainConfig
    from alhelpers.atomistic.al import run_potentials
    from alhelpers.atomistic.config import PotentialsConfig
    from alhelpers.atomistic.data import split_indices

    with pytest.raises(ValueError, match="needs a model that exists before any label"):
        PotentialsConfig(system="tio2", init_method="maxdet-feat-ll")
    with pytest.raises(ValueError, match="INIT_METHOD = .maxdet-gp-ll.: .maxdet-gp-ll. cannot choose the start set: with nothing labelled yet"):
        PotentialsConfig(system="tio2", model="chgnet", init_method="maxdet-gp-ll")
    data = tio2
    small = data.subset(np.flatnonzero(data.n_atoms <= 12)[:30])
    cfg = PotentialsConfig.smoke("tio2", model="chgnet", n_pool=16, n_val=4, n_test=6, n_init=3, batch=3, max_size=3,
                                 strategies=("random",), init_method="maxdet-feat-ll",
                                 train=TrainConfig(dtype="float32", lr=1e-4, max_epochs=1, patience=1))
    run_potentials(small, cfg, checkpoints=tmp_path)
    pool = split_indices(len(small), n_pool=16, n_val=4, n_test=6, seed=0)["pool"]
    by_hand = pool[adapter_select("maxdet-feat-ll", pretrained_chgnet(), small.subset(pool).structures, [], 3,
                                  stream(0, "init", "maxdet-feat-ll"), rp_dim=cfg.rp_dim)]
    import json

    (round0,) = tmp_path.rglob("random/round00.json")  # the checkpoint holds the labels round 0 asked for
    assert json.loads(round0.read_text())["extra"]["index"] == by_hand.tolist()
    assert sorted(by_hand.tolist()) != sorted(pool[:3].tolist())  # not the random start set


def test_freezing_fine_tunes_only_the_readout_mlp():
    """``TrainConfig(freeze=True)``: the readout MLP moves, every other weight keeps its pretrained
    value bit for bit, and the model's parameters are trainable again afterwards (for features)."""
    from alhelpers.anymodel.train import TrainConfig, fit_adapter
    from alhelpers.structures import StructureSet

    chgnet = pretrained_chgnet()  # its own copy: the module's fixture stays pretrained
    cells = _cells(6, seed=3)
    E, F = predict_adapter(chgnet, cells)
    train = StructureSet("cells", cells, E + np.linspace(-0.3, 0.3, 6), [f + 0.05 for f in F])
    before = {n: p.detach().clone() for n, p in chgnet.model.named_parameters()}
    fit_adapter(chgnet, train, None, TrainConfig(dtype="float32", lr=1e-3, max_epochs=2, freeze=True), seed=0)
    moved = {n for n, p in chgnet.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all(n.startswith("mlp.") for n in moved)
    assert {n for n in before if n.startswith("mlp.")} == moved
    assert [n for n, p in chgnet.model.named_parameters() if not p.requires_grad] == \
        [n for n, p in pretrained_chgnet().model.named_parameters() if not p.requires_grad]


RESUME_SCRIPT = """
import sys
from dataclasses import replace
import numpy as np
from alhelpers.anymodel.train import TrainConfig
from alhelpers.atomistic.al import run_potentials
from alhelpers.atomistic.config import PotentialsConfig
from alhelpers.atomistic.data import load_tio2

data = load_tio2()
small = data.subset(np.flatnonzero(data.n_atoms <= 12)[:40])
cfg = PotentialsConfig.smoke("tio2", model="chgnet", n_pool=24, n_val=4, n_test=6, n_init=3, batch=3, max_size=12,
                             strategies=("maxdet-gp-ll",), warm_start=True,
                             train=TrainConfig(dtype="float32", lr=1e-4, max_epochs=2, patience=2),
                             warm_train=TrainConfig(dtype="float32", lr=1e-4, max_epochs=2, patience=2, freeze=True))
runs = run_potentials(small, cfg, checkpoints=sys.argv[1] or None)
runs.to_parquet(sys.argv[2])
print("resumed", runs.attrs["resumed_rounds"])
"""


def test_warm_fine_tuning_resumes_bit_for_bit_after_a_kill(tmp_path, tio2):
    """CHGNet fine-tuned round after round from the previous round's model (warm continuation,
    the later rounds with its head only): the process is SIGKILLed once round 1's checkpoint is
    written; the rerun reads rounds 0–1 back, continues from the checkpointed model and gives the
    rows of an uninterrupted run, bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(folder: str, out: str) -> str:
        done = subprocess.run([sys.executable, str(script), folder, out], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run("", str(tmp_path / "full.parquet"))
    ck = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, str(script), str(ck), str(tmp_path / "killed.parquet")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.monotonic()
    while not list(ck.rglob("round01.json")) and proc.poll() is None and time.monotonic() - t0 < 600:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.parquet").exists()
    assert "resumed 2" in run(str(ck), str(tmp_path / "resumed.parquet"))
    full, resumed = pd.read_parquet(tmp_path / "full.parquet"), pd.read_parquet(tmp_path / "resumed.parquet")
    cols = ["strategy", "round", "n_labelled", "energy_mae", "energy_rmse", "force_mae", "force_rmse", "unc_pearson",
            "mae_pred", "epochs"]
    assert full["n_labelled"].tolist() == [3, 6, 9, 12]
    pd.testing.assert_frame_equal(full[cols], resumed[cols], check_exact=True)


def test_a_campaign_starts_with_no_label_on_the_pretrained_features(tmp_path, tio2):
    """``init`` without labelled structures for CHGNet; the first ``next`` is MAXDET on the
    pretrained FEAT(LL) of the pool with nothing labelled (the same batch by hand), GP kernels are
    refused then; after the oracle's labels the next round fine-tunes and selects as usual."""

    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from alhelpers.al.seeding import stream
    from alhelpers.anymodel.select import initial_select
    from alhelpers.campaign.__main__ import main
    from alhelpers.campaign.folder import CampaignError
    from alhelpers.campaign.structures import (
        init_structures,
        next_structures,
        status_structures,
    )

    data = tio2
    small = data.subset(np.flatnonzero(data.n_atoms <= 12)[:20])
    frames = []
    for a, e, f in zip(small.structures, small.energy, small.forces):
        b = a.copy()
        b.calc = SinglePointCalculator(b, energy=float(e), forces=np.asarray(f))
        frames.append(b)
    pool = tmp_path / "pool.extxyz"
    write(pool, frames)
    with pytest.raises(CampaignError, match="--model gm is trained from scratch and needs labelled structures"):
        init_structures(tmp_path / "gm", pool, None, model="gm")
    camp = tmp_path / "camp"
    assert main(["init", str(camp), "--structures", str(pool), "--model", "chgnet", "--epochs", "1"]) == 0
    with pytest.raises(CampaignError, match="'maxdet-gp-ll' cannot choose the first batch: with nothing labelled"):
        next_structures(camp, batch=3, strategy="maxdet-gp-ll")
    first = next_structures(camp, batch=3, strategy="maxdet-feat-ll", seed=0, oracle="pool")
    by_hand = initial_select("maxdet-feat-ll", pretrained_chgnet(), small.structures, 3,
                             stream(0, "maxdet-feat-ll", 0))
    assert first["pool_index"].tolist() == [int(i) for i in by_hand]
    assert first["sigma_per_atom"].isna().all()
    second = next_structures(camp, batch=3, strategy="maxdet-gp-ll", seed=0)
    assert len(second) == 3 and not set(second["pool_index"]) & set(first["pool_index"])
    assert second["sigma_per_atom"].gt(0).all()
    status = status_structures(camp)
    assert status["trained_on"].tolist() == [0, 3] and status["labels_back"].tolist() == [3, 0]


def test_notebook_09_fine_tunes_chgnet_beside_mace(tmp_path, tio2):
    """Notebook 09's section 6 on TiO2 (smoke sizes): the zero-shot CHGNet scores what the same
    model built by hand scores, and the fine-tuning rounds of both strategies are written."""
    from pathlib import Path

    import pandas as pd
    import papermill as pm

    from alhelpers.atomistic.data import split_indices
    from alhelpers.atomistic.stages import potentials_config
    from alhelpers.nb import read_records

    pytest.importorskip("mace", reason="notebook 09 needs mace-torch: pip install 'alhelpers[mace]'")
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "09.ipynb"
    pm.execute_notebook(str(repo / "notebooks" / "09_bring_your_own_potential.ipynb"), str(out),
                        parameters={"SYSTEM": "tio2", "SMOKE": True, "BATCH": 4, "STRATEGIES": ["random"],
                                    "PROGRESS": False, "OUT_DIR": str(tmp_path / "res")},
                        progress_bar=False, cwd=str(repo / "notebooks"))
    rec = read_records(out)
    assert rec["fine_tuned"] is True and set(rec["chgnet_final_force_mae"]) == {"random", "maxdet-gp-ll"}
    data = tio2
    cfg = potentials_config("tio2", len(data), smoke=True, batch=4, model="mace")
    split = split_indices(len(data), n_pool=cfg.n_pool, n_val=cfg.n_val, n_test=cfg.n_test, seed=0)
    start, test = data.subset(split["pool"][: cfg.n_init]), data.subset(split["test"])
    zero = pretrained_chgnet()
    refit_reference(zero, start.structures, start.energy)
    F = predict_adapter(zero, test.structures)[1]
    by_hand = float(np.mean(np.abs(np.concatenate(F) - np.concatenate(test.forces))))
    assert rec["chgnet_zero_shot_force_mae"] == pytest.approx(by_hand, rel=1e-5)
    runs = pd.read_parquet(tmp_path / "res" / "potentials" / "tio2-chgnet_batch4_seed0.parquet")
    assert runs.groupby("strategy")["n_labelled"].apply(list).to_dict() == {"random": [4, 8, 12],
                                                                          "maxdet-gp-ll": [4, 8, 12]}
    final = runs[runs["round"] == 2].set_index("strategy")["force_mae"].to_dict()
    assert rec["chgnet_final_force_mae"] == final
