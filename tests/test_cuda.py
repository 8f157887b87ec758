"""Track B on a GPU: training, features and selection with ``device="auto"`` run on CUDA. Runs only
where torch sees a CUDA device and is skipped elsewhere (CI has none), so a GPU path that breaks
is caught on the first machine that has one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_a_track_b_run_with_device_auto_runs_on_cuda_and_gives_the_cpu_runs_shape():
    from alhelpers.anymodel.train import resolve_device
    from alhelpers.atomistic.al import run_potentials
    from alhelpers.atomistic.config import PotentialsConfig
    from alhelpers.atomistic.data.offline import load_offline

    assert resolve_device("auto").type == "cuda"
    data = load_offline(limit=80)
    base = PotentialsConfig.smoke("offline", strategies=("random", "lcmd-feat-rp", "maxdet-gp-ll", "maxdiag-qbc-f"))
    runs = {}
    for device in ("cpu", "auto"):
        cfg = replace(base, train=replace(base.train, device=device), warm_train=replace(base.warm_train, device=device))
        torch.cuda.reset_peak_memory_stats()
        runs[device] = run_potentials(data, cfg)
        if device == "auto":
            assert torch.cuda.max_memory_allocated() > 0  # the work ran on the GPU
    cpu, gpu = runs["cpu"], runs["auto"]
    assert list(gpu["strategy"]) == list(cpu["strategy"]) and list(gpu["n_labelled"]) == list(cpu["n_labelled"])
    for col in ("force_mae", "energy_mae", "force_rmse", "energy_rmse"):
        assert np.isfinite(gpu[col]).all()
