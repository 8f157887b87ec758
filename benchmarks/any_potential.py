"""The model-agnostic BMDAL path on TiO2: a small MACE and the project's potential, side by side (issue 16).

For N TiO2 structures (default 1,000: the whole set) and each model, in one run:

* ``epoch_s`` — one training epoch over the N structures (mini-batches of 8, forward plus the
  energy-and-force loss's backward, Adam step): the time of a 2-epoch fit minus a 1-epoch fit, so
  neighbour lists, freezing and set-up are not counted;
* ``ll_s`` / ``rp_s`` — FEAT(LL) and FEAT(RP) (p = 512) of the N structures through the generic
  path (:func:`alhelpers.anymodel.gradients.gradient_features`; prepared structures reused);
* each rule on the MACE FEAT(RP) features (pool = structures 100 … N, training = the first 100,
  batch 10): MAXDIAG and MAXDET on the GP posterior, MAXDIST and LCMD on the plain features;
  ``select_s`` is their sum.

Target: ``rp_s`` at most 3 × ``epoch_s`` for both models. The MACE is :func:`small_mace`
(16 channels, L = 0 messages, 2 interactions, float32), the project's potential the study's
(512 × 512, float32). Torch uses ``--threads`` threads (default 2, Colab's free tier).

Needs the TiO2 file (``../shared/data`` or the cache; ``python -c "from alhelpers.atomistic.data
import download_tio2; download_tio2()"`` gets it) and mace-torch (``pip install "alhelpers[mace]"``).

Last line: ``any_potential: n=<N> mace_epoch_s=… mace_ll_s=… mace_rp_s=… ours_epoch_s=… ours_ll_s=…
ours_rp_s=… select_s=…``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _epoch(fit) -> float:
    """One epoch: a 2-epoch fit minus a 1-epoch fit (the same set-up in both)."""
    times = {}
    for epochs in (1, 2):
        t0 = time.perf_counter()
        fit(epochs)
        times[epochs] = time.perf_counter() - t0
    return times[2] - times[1]


def _features(adapter, items, base: str) -> float:
    from alhelpers.anymodel.gradients import gradient_features

    t0 = time.perf_counter()
    gradient_features(adapter, items, base, p=512, seed=0)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1000, help="TiO2 structures (default 1000)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dataclasses import replace

    from alhelpers.anymodel.gradients import gradient_features
    from alhelpers.anymodel.mace import small_mace
    from alhelpers.anymodel.train import fit_adapter
    from alhelpers.atomistic.config import MACE_TRAIN, STUDY_TRAIN
    from alhelpers.atomistic.data.tio2 import load_tio2
    from alhelpers.atomistic.model import OwnPotentialAdapter
    from alhelpers.atomistic.train import fit_potential
    from alhelpers.neighbours import GraphCache
    from alhelpers.select.methods import bmdal_select

    data = load_tio2(limit=args.n)
    n = len(data)
    print(f"TiO2: {n} structures, {int(data.n_atoms.sum())} atoms; torch threads {torch.get_num_threads()}")

    mace = small_mace(data.structures[:100], data.energy[:100], data.forces[:100], species=data.species, seed=0)
    mace_items = [mace.prepare(a) for a in data.structures]  # neighbour graphs built once, outside the timings
    state = {k: v.clone() for k, v in mace.model.state_dict().items()}

    def fit_mace(epochs: int) -> None:
        mace.model.load_state_dict(state)
        fit_adapter(mace, data, None, replace(MACE_TRAIN, max_epochs=epochs), seed=0)

    res = {"mace_epoch_s": _epoch(fit_mace)}
    mace.model.load_state_dict(state)
    res["mace_ll_s"] = _features(mace, mace_items, "ll")
    res["mace_rp_s"] = _features(mace, mace_items, "rp")

    cache = GraphCache()
    res["ours_epoch_s"] = _epoch(lambda epochs: fit_potential(data, None, replace(STUDY_TRAIN, max_epochs=epochs),
                                                              seed=0, cache=cache))
    ours, _ = fit_potential(data.subset(range(100)), None, replace(STUDY_TRAIN, max_epochs=1), seed=0, cache=cache)
    own = OwnPotentialAdapter(ours, cache=cache)
    own_items = [own.prepare(a) for a in data.structures]
    res["ours_ll_s"] = _features(own, own_items, "ll")
    res["ours_rp_s"] = _features(own, own_items, "rp")

    phi = gradient_features(mace, mace_items, "rp", p=512, seed=0).astype(np.float32)
    pool, train = phi[100:], phi[:100]
    total = 0.0
    for rule, gp in (("maxdiag", True), ("maxdet", True), ("maxdist", False), ("lcmd", False)):
        t0 = time.perf_counter()
        bmdal_select(rule, pool, train, 10, gp=gp, device="cpu")
        secs = time.perf_counter() - t0
        total += secs
        print(f"rule {rule}{'-gp' if gp else '-feat'}-rp: {secs:.3f} s (pool {len(pool)}, training {len(train)}, batch 10)")
    res["select_s"] = total
    for model in ("mace", "ours"):
        ratio = res[f"{model}_rp_s"] / res[f"{model}_epoch_s"]
        print(f"{model}: FEAT(RP) / one epoch = {ratio:.2f} (target <= 3), FEAT(LL) / one epoch = "
              f"{res[f'{model}_ll_s'] / res[f'{model}_epoch_s']:.2f}")
    print(f"any_potential: n={n} " + " ".join(f"{k}={v:.2f}" for k, v in res.items()))


if __name__ == "__main__":
    main()
