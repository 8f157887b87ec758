"""Track B's training speed: the project's potential and a small MACE, side by side on TiO2 (issue 18).

In one run, with torch on ``--threads`` threads (default 2, Colab's free tier):

* **Training to convergence** on the first ``--n`` (default 100) pool structures of the TiO2
  split of seed 0 (pool 700 / validation 50 / test 250), early stopping on that validation
  split: the project's potential with the study's settings (:data:`STUDY_TRAIN`: float32,
  512 × 512, patience 20) and the small MACE of Track B (:func:`small_mace`, :data:`MACE_TRAIN`:
  patience 15), each with its epoch cap lifted to ``--max-epochs`` so that early stopping, not
  the cap, ends the fit. Timed: the whole fit (neighbour lists, set-up and epochs). Then the test
  force MAE (eV/Å) and energy MAE (meV/atom) of each.
* **One full AL round** (train + evaluate + uncertainty/calibration + features + selection) of
  MAXDET on GP(LL), as notebook 07 runs it, at 10 labelled structures (round 0: from scratch)
  and at 100 (warm-started from the model of 90, the default; and from scratch, as before warm
  starts).

Needs the TiO2 file (``../shared/data`` or the cache; ``python -c "from alhelpers.atomistic.data
import download_tio2; download_tio2()"`` gets it) and mace-torch (``pip install "alhelpers[mace]"``).

Last line: ``potentials_speed: ours_s=… peer_s=… ratio=<ours_s/peer_s> ours_force_mae=…
peer_force_mae=…``
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch


def _round_seconds(data, cfg, at_round: int) -> float:
    """Wall seconds of round ``at_round`` of a run (between the progress lines of the rounds)."""
    from alhelpers.atomistic.al import run_potentials

    stamps = [time.perf_counter()]
    run_potentials(data, cfg, progress=lambda _line: stamps.append(time.perf_counter()))
    return stamps[at_round + 1] - stamps[at_round]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="training structures (default 100)")
    p.add_argument("--max-epochs", type=int, default=1000, help="epoch cap; early stopping ends the fit first")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-rounds", action="store_true", help="skip the AL-round timings")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from alhelpers.anymodel.mace import small_mace
    from alhelpers.anymodel.train import fit_adapter, predict_adapter
    from alhelpers.atomistic.al import potential_metrics
    from alhelpers.atomistic.config import MACE_TRAIN, STUDY_TRAIN, PotentialsConfig
    from alhelpers.atomistic.data import load_tio2, split_indices
    from alhelpers.atomistic.train import fit_potential, predict

    data = load_tio2()
    split = split_indices(len(data), n_pool=700, n_val=50, n_test=250, seed=0)
    train, val, test = data.subset(split["pool"][: args.n]), data.subset(split["val"]), data.subset(split["test"])
    print(f"TiO2: train {len(train)} structures ({int(train.n_atoms.sum())} atoms), validation {len(val)}, "
          f"test {len(test)}; torch threads {torch.get_num_threads()}", flush=True)

    res: dict[str, float] = {}
    t0 = time.perf_counter()
    ours, hist = fit_potential(train, val, replace(STUDY_TRAIN, max_epochs=args.max_epochs), species=data.species, seed=0)
    res["ours_s"] = time.perf_counter() - t0
    m = potential_metrics(test, *predict(ours, test))
    res["ours_force_mae"], res["ours_energy_mev"] = m["force_mae"], 1000 * m["energy_mae"]
    print(f"ours: {res['ours_s']:.1f} s, {len(hist)} epochs (best {hist.attrs['best_epoch']}), test force MAE "
          f"{m['force_mae']:.4f} eV/Å, energy MAE {1000 * m['energy_mae']:.1f} meV/atom", flush=True)

    t0 = time.perf_counter()
    mace = small_mace(train.structures, train.energy, train.forces, species=data.species, seed=0)
    mace, hist = fit_adapter(mace, train, val, replace(MACE_TRAIN, max_epochs=args.max_epochs), seed=0)
    res["peer_s"] = time.perf_counter() - t0
    m = potential_metrics(test, *predict_adapter(mace, test.structures))
    res["peer_force_mae"], res["peer_energy_mev"] = m["force_mae"], 1000 * m["energy_mae"]
    print(f"small MACE: {res['peer_s']:.1f} s, {len(hist)} epochs (best {hist.attrs['best_epoch']}), test force MAE "
          f"{m['force_mae']:.4f} eV/Å, energy MAE {1000 * m['energy_mae']:.1f} meV/atom", flush=True)

    if not args.no_rounds:
        base = PotentialsConfig.for_system("tio2", len(data), seed=0, strategies=("maxdet-gp-ll",), batch=10)
        res["round10_s"] = _round_seconds(data, replace(base, n_init=10, max_size=20), 0)
        res["round100_s"] = _round_seconds(data, replace(base, n_init=90, max_size=110), 1)
        res["round100_cold_s"] = _round_seconds(data, replace(base, n_init=90, max_size=110, warm_start=False), 1)
        print(f"one AL round (maxdet-gp-ll): at 10 structures {res['round10_s']:.1f} s; at 100 "
              f"{res['round100_s']:.1f} s warm-started, {res['round100_cold_s']:.1f} s from scratch", flush=True)
    print(f"potentials_speed: ours_s={res['ours_s']:.1f} peer_s={res['peer_s']:.1f} "
          f"ratio={res['ours_s'] / res['peer_s']:.2f} ours_force_mae={res['ours_force_mae']:.4f} "
          f"peer_force_mae={res['peer_force_mae']:.4f}")


if __name__ == "__main__":
    main()
