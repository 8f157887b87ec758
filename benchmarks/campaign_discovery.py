"""Does stability-aware selection find the stable compounds faster? Replayed campaigns (issue 26).

For each system of the offline snapshot (C, Si, Fe, Ti–O; the studies' cleaned rows, one label per
composition: the lowest polymorph) and each seed, a campaign starts from ``--n-init`` compositions
drawn with the seed (the same for every strategy of that seed) and asks ``--batch`` labels per
round until ``--labels`` are labelled; the table oracle reveals the hidden labels
(:func:`alhelpers.campaign.replay.replay_materials`). A compound is *stable* when it lies on the
convex hull of all the system's compositions (:func:`alhelpers.formation.hull.on_hull`). Found =
how many of those the labelled set holds after 15, 30, 60 and 90 labels. Strategies: random,
uncertainty (ensemble variance) and stability (P(E < E_hull) from the calibrated σ'), compared
with random paired by seed (paired t-test and Wilcoxon, :func:`alhelpers.paired.paired_tests`).

Prints one table row per system, strategy and label count (mean ± std over seeds, and p against
random), then the last line exactly:
``campaign_discovery: labels=<L> random_found=<…> stability_found=<…> uncertainty_found=<…> ratio=<…>``
(found: the mean over systems and seeds at the largest label count; ratio = stability/random).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from alhelpers.campaign.replay import composition_labels, found_on_hull, replay_materials
from alhelpers.data import fetch_system
from alhelpers.formation.hull import on_hull
from alhelpers.paired import paired_tests

STRATEGIES = ("random", "uncertainty", "stability")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--systems", nargs="+", default=["C", "Si", "Fe", "Ti-O"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--n-init", type=int, default=15)
    p.add_argument("--batch", type=int, default=15)
    p.add_argument("--labels", type=int, default=90, help="labels at the end (n_init + k·batch)")
    p.add_argument("--counts", type=int, nargs="+", default=[15, 30, 60, 90])
    args = p.parse_args()
    if (args.labels - args.n_init) % args.batch or args.labels < args.n_init:
        raise SystemExit("--labels must be --n-init plus a whole number of batches")
    rounds = (args.labels - args.n_init) // args.batch
    counts = sorted({c for c in args.counts if c <= args.labels} | {args.labels})
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for system in args.systems:
            entries, _ = fetch_system("snapshot", system)
            labels = composition_labels(entries)
            stable = set(labels["formula"][on_hull(labels["formula"].tolist(), labels["label"].to_numpy())])
            print(f"{system}: {len(labels)} compositions, {len(stable)} on the hull of all of them", flush=True)
            for seed in args.seeds:
                for strategy in STRATEGIES:
                    ledger = replay_materials(labels, Path(tmp, system, f"seed{seed}"), strategy=strategy, seed=seed,
                                              n_init=args.n_init, batch=args.batch, rounds=rounds)
                    for n, found in found_on_hull(ledger, stable, counts).items():
                        rows.append({"system": system, "seed": seed, "strategy": strategy, "labels": n,
                                     "found": found, "stable": len(stable)})
    df = pd.DataFrame(rows)
    print(f"\n{len(args.systems)} systems × {len(args.seeds)} seeds × {len(STRATEGIES)} strategies in "
          f"{time.perf_counter() - t0:.0f} s; found = hull compounds among the labelled (mean ± std over seeds); "
          "p: paired t-test / Wilcoxon against random over seeds")
    print(f"{'system':8} {'labels':>6} {'stable':>6}  " + "  ".join(f"{s:>22}" for s in STRATEGIES))
    for (system, n), g in df.groupby(["system", "labels"], sort=False):
        base = g[g["strategy"] == "random"].sort_values("seed")["found"].to_numpy(float)
        cells = []
        for s in STRATEGIES:
            v = g[g["strategy"] == s].sort_values("seed")["found"].to_numpy(float)
            cell = f"{v.mean():5.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:4.1f}"
            if s != "random":
                t = paired_tests(v, base)
                cell += f" p={t['p_paired']:.3f}/{t['p_wilcoxon']:.3f}"
            cells.append(f"{cell:>22}")
        print(f"{system:8} {n:6d} {int(g['stable'].iloc[0]):6d}  " + "  ".join(cells))
    last = df[df["labels"] == args.labels]
    mean = {s: float(last[last["strategy"] == s]["found"].mean()) for s in STRATEGIES}
    print(f"campaign_discovery: labels={args.labels} random_found={mean['random']:.2f} "
          f"stability_found={mean['stability']:.2f} uncertainty_found={mean['uncertainty']:.2f} "
          f"ratio={mean['stability'] / mean['random']:.3f}")


if __name__ == "__main__":
    main()
