"""Shared fixtures: small real rows from the committed offline snapshot."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Notebook kernels and torch: one thread each so parallel test workers do not oversubscribe 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def snapshot() -> pd.DataFrame:
    from alhelpers.data import load_snapshot

    return load_snapshot()


@pytest.fixture(scope="session")
def tio2():
    """The 1,000 real TiO2 DFT structures of ``../shared/data`` (the test skips where they are absent)."""
    path = SHARED_DATA / "tio2_aenet" / "tio2_dir_xsf.tar.gz"
    if not path.exists():
        pytest.skip(f"real TiO2 data absent ({path})")
    from alhelpers.atomistic.data import load_tio2

    return load_tio2()


@pytest.fixture(scope="session")
def tio2_entries() -> pd.DataFrame:
    """The cleaned Ti–O system of the snapshot (148 real entries)."""
    from alhelpers.data import fetch_system

    entries, _ = fetch_system("snapshot", "Ti-O")
    return entries


@pytest.fixture
def warning_text() -> Callable[..., str]:
    """The text of the one recorded warning of ``category`` whose message matches ``match``.

    ``pytest.warns`` records every warning raised inside its block, unrelated ones included:
    the garbage collector may emit a ``ResourceWarning`` ("unclosed event loop") there for an
    object left behind by another test on the same worker. So ``rec[0]`` is not reliable.
    """

    def pick(rec: pytest.WarningsRecorder, match: str, category: type[Warning] = UserWarning) -> str:
        texts = [str(w.message) for w in rec
                 if issubclass(w.category, category) and re.search(match, str(w.message))]
        assert len(texts) == 1, f"expected one {category.__name__} matching {match!r}, got {texts}"
        return texts[0]

    return pick


@pytest.fixture
def autograd_gradient() -> Callable:
    """``rows(adapter, structures, names)``: ∂E_s/∂θ of every structure with respect to the
    parameters of the named modules, one backward pass per structure — the reference the
    model-agnostic gradient features are checked against."""
    import numpy as np
    import torch

    def rows(adapter, structures, names):
        mods = dict(adapter.model.named_modules())
        params = [p for n in names for p in mods[n].parameters() if p.requires_grad]
        out = []
        for a in structures:
            (E,) = adapter.energies(adapter.collate([adapter.prepare(a)]))
            grads = torch.autograd.grad(E, params, allow_unused=True)
            out.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                                  for g, p in zip(grads, params)]).double().numpy())
        return np.array(out)

    return rows


@pytest.fixture
def rp_kernel_sampled() -> Callable:
    """``check(adapter, structures, K, seeds, p)``: FEAT(RP) kernels of ``structures`` over projection
    seeds ``0 … seeds − 1``; asserts their mean lies within 4 standard errors of the exact gradient
    kernel ``K`` everywhere (unbiased) and returns ``(relative error of the mean, relative spread of
    one sample)``."""
    import numpy as np

    from alhelpers.anymodel.gradients import gradient_features

    def check(adapter, structures, K, seeds: int, p: int = 128) -> tuple[float, float]:
        samples = np.stack([(lambda phi: phi @ phi.T)(gradient_features(adapter, structures, "rp", p=p, seed=k))
                            for k in range(seeds)])
        mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(seeds)
        assert (np.abs(mean - K) < 4 * se).all(), np.abs(mean - K) / se
        return (float(np.linalg.norm(mean - K) / np.linalg.norm(K)),
                float(np.sqrt(samples.var(0, ddof=1).sum()) / np.linalg.norm(K)))

    return check
