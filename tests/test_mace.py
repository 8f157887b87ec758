"""MACE through the model-agnostic path (needs the optional mace-torch; CI installs it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("mace", reason="mace-torch is not installed: pip install 'alhelpers[mace]' to run the MACE tests")

from alhelpers.anymodel.gradients import gradient_features, module_names  # noqa: E402
from alhelpers.anymodel.mace import MaceAdapter, small_mace  # noqa: E402
from alhelpers.anymodel.select import as_adapter, select_structures  # noqa: E402
from alhelpers.atomistic.data import load_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data():
    return load_dataset("offline").subset(range(0, 1200, 40))  # 30 aspirin frames (H, C, O; 21 atoms)


@pytest.fixture(scope="module")
def tiny(data):
    return small_mace(data.structures[:8], data.energy[:8], data.forces[:8], species=data.species, seed=2,
                      channels=4, radial_mlp=(8,), r_max=4.0, dtype=torch.float64)


def test_mace_ll_is_autograds_gradient_with_respect_to_the_readouts(data, tiny, autograd_gradient):
    assert tiny.readouts == ("readouts.0.linear", "readouts.1.linear_2")
    s = data.structures[8:14]
    ll = gradient_features(tiny, s, "ll")
    assert ll.shape == (6, 8)  # 4 channels into each of the two readouts
    np.testing.assert_allclose(ll, autograd_gradient(tiny, s, tiny.readouts), rtol=1e-10, atol=1e-12)


def test_mace_full_gradient_and_rp_kernel(data, tiny, autograd_gradient, rp_kernel_sampled):
    s = data.structures[8:12]
    names = module_names(tiny, "rp")
    assert any("conv_tp_weights" in n for n in names) and any("symmetric_contractions" in n for n in names)
    full = gradient_features(tiny, s, "full")
    np.testing.assert_allclose(full, autograd_gradient(tiny, s, names), rtol=1e-9, atol=1e-10)
    err, spread = rp_kernel_sampled(tiny, s, full @ full.T, 48)  # unbiased for the exact kernel
    assert err < 2 * spread / np.sqrt(48) and err < 0.1, (err, spread)


def test_mace_model_file_through_the_command(tmp_path, data, tiny):
    from ase.io import read, write

    from alhelpers.select.__main__ import main

    write(tmp_path / "train.extxyz", data.structures[:6], format="extxyz")
    write(tmp_path / "pool.extxyz", data.structures[6:26], format="extxyz")
    torch.save(tiny.model, tmp_path / "mace.model")
    args = [str(tmp_path / "mace.model"), str(tmp_path / "train.extxyz"), str(tmp_path / "pool.extxyz"),
            "--method", "maxdet-gp-ll", "--batch", "4", "--out", str(tmp_path / "sel.extxyz"), "--csv",
            str(tmp_path / "sel.csv")]
    assert main(args) == 0
    want = select_structures(tiny.model, tmp_path / "train.extxyz", tmp_path / "pool.extxyz", method="maxdet-gp-ll",
                             batch=4)
    assert [a.info["pool_index"] for a in read(tmp_path / "sel.extxyz", index=":")] == want.indices.tolist()
    assert pd.read_csv(tmp_path / "sel.csv").query("selected")["pool_index"].sort_values().tolist() == \
        sorted(want.indices.tolist())
    assert isinstance(as_adapter(tiny.model), MaceAdapter)


def test_truncated_mace_model_file_is_named(tmp_path, data, tiny, capsys):
    """Before: ``error: UnreadableFileError.__init__() missing 2 required positional arguments``."""
    from ase.io import write

    from alhelpers.files import sha256_file
    from alhelpers.select.__main__ import main

    write(tmp_path / "train.extxyz", data.structures[:6], format="extxyz")
    write(tmp_path / "pool.extxyz", data.structures[6:26], format="extxyz")
    torch.save(tiny.model, tmp_path / "mace.model")
    raw = (tmp_path / "mace.model").read_bytes()
    bad = tmp_path / "cut.model"
    bad.write_bytes(raw[: len(raw) - 1000])
    pool_sha = sha256_file(tmp_path / "pool.extxyz")
    outs = ["--out", str(tmp_path / "sel.extxyz"), "--csv", str(tmp_path / "sel.csv")]
    assert main([str(bad), str(tmp_path / "train.extxyz"), str(tmp_path / "pool.extxyz")] + outs) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad} is unreadable (the model file: ") and \
        "Save the whole model again with torch.save(model, path)" in err, err
    assert main([str(tmp_path / "mace.model"), str(tmp_path / "train.extxyz"), str(tmp_path / "pool.extxyz"),
                 "--method", "maxdiag-qbc-f", "--committee", str(tmp_path / "mace.model"), str(bad)] + outs) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad} is unreadable (a --committee file: ")
    assert sha256_file(tmp_path / "pool.extxyz") == pool_sha and not (tmp_path / "sel.extxyz").exists()


def test_track_b_loop_trains_mace(tmp_path):
    from alhelpers.anymodel.train import TrainConfig
    from alhelpers.atomistic.al import run_potentials
    from alhelpers.atomistic.config import PotentialsConfig

    data = load_dataset("offline")
    cfg = PotentialsConfig.smoke("offline", model="mace", strategies=("random", "lcmd-feat-rp", "maxdiag-qbc-f"),
                                 train=TrainConfig(max_epochs=4, patience=2, lr=1e-2, dtype="float32"))
    runs = run_potentials(data, cfg, checkpoints=tmp_path)
    assert runs["model"].eq("mace").all() and len(runs) == 3 * 3
    assert runs.groupby("strategy")["n_labelled"].apply(list).to_dict() == {s: [4, 8, 12] for s in cfg.strategies}
    first = runs[runs["round"] == 0]
    assert first["force_mae"].nunique() == 1  # one shared round-0 model per seed
    assert runs["force_mae"].between(0.01, 50).all() and runs["feature_s"].ge(0).all()
    again = run_potentials(data, cfg, checkpoints=tmp_path)  # resumed from the checkpoints: the same rows
    pd.testing.assert_frame_equal(again.drop(columns=["fit_s", "feature_s", "query_s", "label_s"]),
                                  runs.drop(columns=["fit_s", "feature_s", "query_s", "label_s"]))
