"""Fine-tuning a pretrained universal potential with BMDAL: CHGNet on TiO2 (issue 27).

One Track B run per setting, through the study's own loop (:func:`alhelpers.atomistic.al.run_potentials`),
on the TiO2 split of the study (pool 700 / validation 50 / test 250) from ``--n-init`` to ``--max-size``
structures in batches of ``--batch``:

* zero-shot — the pretrained CHGNet with only its per-element reference refitted to the start set
  (its forces are the pretrained ones): the force MAE of that model on the test split;
* random — CHGNet fine-tuned (every round from the pretrained weights), random batches;
* bmdal — CHGNet fine-tuned, MAXDET on the GP posterior of last-layer features (``maxdet-gp-ll``);
* scratch — the project's potential trained from scratch on random batches (same seed, split and
  start set).

Needs the TiO2 data (``python -m alhelpers.atomistic.data download tio2``, or ``../shared/data``)
and the ``chgnet`` extra. Last line exactly:
``finetune: n=<N> zero_shot_force_mae=<eV/Å> random_force_mae=<…> bmdal_force_mae=<…> scratch_force_mae=<…> round_s=<s>``
(the MAEs at N structures; round_s: the wall seconds of both CHGNet runs over their rounds: fit, test
predictions, uncertainty and calibration, selection).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-init", type=int, default=10)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--max-size", type=int, default=50)
    p.add_argument("--epochs", type=int, default=0, help="fine-tuning epochs per round (0: the study's default)")
    args = p.parse_args()

    from dataclasses import replace

    from alhelpers.anymodel.chgnet import pretrained_chgnet, refit_reference
    from alhelpers.anymodel.train import predict_adapter
    from alhelpers.atomistic.al import run_potentials
    from alhelpers.atomistic.config import PotentialsConfig
    from alhelpers.atomistic.data import load_tio2, split_indices

    data = load_tio2()
    common = dict(seed=args.seed, n_init=args.n_init, batch=args.batch, max_size=args.max_size)
    runs, wall = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, strategy in (("random", "chgnet", "random"), ("bmdal", "chgnet", "maxdet-gp-ll"),
                                      ("scratch", "gm", "random")):
            cfg = PotentialsConfig.for_system("tio2", len(data), model=model, strategies=(strategy,), **common)
            if args.epochs and model == "chgnet":
                cfg = replace(cfg, train=replace(cfg.train, max_epochs=args.epochs))
            t0 = time.perf_counter()
            runs[name] = run_potentials(data, cfg, checkpoints=tmp, progress=print)
            wall[name] = time.perf_counter() - t0
            print(f"{name}: {wall[name]:.0f} s", flush=True)
        split = split_indices(len(data), n_pool=cfg.n_pool, n_val=cfg.n_val, n_test=cfg.n_test, seed=args.seed)
    start, test = data.subset(split["pool"][: args.n_init]), data.subset(split["test"])
    zero = pretrained_chgnet()
    refit_reference(zero, start.structures, start.energy)
    F = predict_adapter(zero, test.structures)[1]
    zero_shot = float(np.mean(np.abs(np.concatenate(F) - np.concatenate(test.forces))))
    print(f"\n{'round':>5} {'n':>4}  " + "  ".join(f"{k + ' F (eV/Å)':>18} {'E (meV/atom)':>12}" for k in runs))
    for rnd in range(int(max(r["round"].max() for r in runs.values())) + 1):
        cells = []
        for r in runs.values():
            row = r[r["round"] == rnd].iloc[0]
            cells.append(f"{row['force_mae']:18.4f} {row['energy_mae'] * 1000:12.1f}")
        n = int(runs["random"][runs["random"]["round"] == rnd]["n_labelled"].iloc[0])
        print(f"{rnd:5d} {n:4d}  " + "  ".join(cells))
    final = {k: float(r.sort_values("round").iloc[-1]["force_mae"]) for k, r in runs.items()}
    tuned = ("random", "bmdal")
    round_s = sum(wall[k] for k in tuned) / sum(len(runs[k]) for k in tuned)  # one row per round
    same = runs["random"]["n_labelled"].tolist() == runs["scratch"]["n_labelled"].tolist()
    print(f"zero-shot (reference refitted on the {args.n_init} start structures): force MAE {zero_shot:.4f} eV/Å; "
          f"scratch and random labelled the same counts: {same}")
    print(f"finetune: n={args.max_size} zero_shot_force_mae={zero_shot:.4f} random_force_mae={final['random']:.4f} "
          f"bmdal_force_mae={final['bmdal']:.4f} scratch_force_mae={final['scratch']:.4f} round_s={round_s:.1f}")


if __name__ == "__main__":
    main()
