"""Choose the default ``epochs`` and ``weight_decay`` of :class:`alhelpers.formation.models.EnsembleConfig`.

Real data: the OQMD "legacy" formation energies shipped in the ``qmpy==1.4.0``
wheel (``qmpy/data/thermodata/legacy.dat``: ``composition energy`` per line,
eV/atom).  For each system (entries whose composition contains the element)
the rows are filtered as in docs/study.md §1 (2-50 atoms per formula unit, finite
target, |E_f| <= 5 eV/atom, duplicates of a reduced composition within
1 meV/atom dropped), featurised with Magpie
(``ElementProperty.from_preset("magpie")``, 132 features) and split 80/20
(seeded) into pool and test.  For every training size, seed, epoch count and
weight decay the ensemble (default config otherwise: M = 5, 128-128, Adam
1e-3, full batch) is trained on ``n_train`` pool rows drawn with that seed (the
same rows for every configuration, so comparisons are paired by seed) and
scored on the whole test set.

Usage::

    python benchmarks/ensemble_defaults.py [/path/to/legacy.dat] [--systems Fe Si]
        [--n-train 30 105] [--epochs 50 100 150 200 300 400 800] [--weight-decay 0 1e-4]
        [--seeds 5] [--bootstrap] [--input-clip default|none|10]

Prints one table row per (system, n_train, epochs, weight_decay): test MAE
(mean ± std over seeds, eV/atom), its mean rank within the (system, n_train)
block, the median wall and CPU seconds per fit and the final training loss.
Timings depend on the machine and on its load (the load average is printed);
torch's thread settings are left at their defaults.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alhelpers.formation.models import EnsembleConfig, EnsembleRegressor  # noqa: E402

DEFAULT_PATH = "/tmp/raw/qmpy/data/thermodata/legacy.dat"


def load_system(path: str, element: str) -> tuple[list[str], np.ndarray]:
    """Filtered (formula, E_f) rows of ``legacy.dat`` whose composition contains ``element``."""
    from pymatgen.core import Composition

    formulas: list[str] = []
    targets: list[float] = []
    seen: dict[str, list[float]] = {}
    counts = {"total": 0, "no_element": 0, "atoms": 0, "target": 0, "duplicate": 0, "unparsable": 0}
    with open(path) as fh:
        next(fh)  # header "composition energy"
        for line in fh:
            parts = line.split()
            if len(parts) != 2:
                continue
            counts["total"] += 1
            try:
                comp = Composition(parts[0])
                e = float(parts[1])
            except Exception:  # noqa: BLE001 - malformed formula rows are counted and skipped
                counts["unparsable"] += 1
                continue
            if element not in {el.symbol for el in comp.elements}:
                counts["no_element"] += 1
                continue
            if not 2 <= comp.num_atoms <= 50:
                counts["atoms"] += 1
                continue
            if not np.isfinite(e) or abs(e) > 5.0:
                counts["target"] += 1
                continue
            key = comp.reduced_formula
            if any(abs(e - other) < 1e-3 for other in seen.get(key, [])):
                counts["duplicate"] += 1
                continue
            seen.setdefault(key, []).append(e)
            formulas.append(parts[0])
            targets.append(e)
    print(
        f"# {element}: {len(formulas)} rows kept of {counts['total']} "
        f"(removed: not containing {element} {counts['no_element']}, atoms outside 2-50 {counts['atoms']}, "
        f"|E_f|>5 or non-finite {counts['target']}, duplicates {counts['duplicate']}, "
        f"unparsable {counts['unparsable']})"
    )
    return formulas, np.asarray(targets)


def magpie(formulas: list[str]) -> np.ndarray:
    """Magpie composition features (132 columns)."""
    from matminer.featurizers.composition import ElementProperty
    from pymatgen.core import Composition

    fz = ElementProperty.from_preset("magpie")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [fz.featurize(Composition(f)) for f in formulas]
    return np.asarray(rows, dtype=np.float64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", default=DEFAULT_PATH, help="legacy.dat from the qmpy 1.4.0 wheel")
    ap.add_argument("--systems", nargs="+", default=["Fe", "Si"])
    ap.add_argument("--n-train", nargs="+", type=int, default=[30, 105])
    ap.add_argument("--epochs", nargs="+", type=int, default=[50, 100, 150, 200, 300, 400, 800])
    ap.add_argument("--weight-decay", nargs="+", type=float, default=[0.0, 1e-4])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--bootstrap", action="store_true", help="train members on bootstrap resamples")
    ap.add_argument(
        "--input-clip",
        default="default",
        help="clip of the standardised inputs: a number, 'none', or 'default' (EnsembleConfig's default)",
    )
    args = ap.parse_args(argv)
    clip_kw: dict[str, float | None] = {}
    if args.input_clip.lower() == "none":
        clip_kw["input_clip"] = None
    elif args.input_clip.lower() != "default":
        clip_kw["input_clip"] = float(args.input_clip)

    import torch

    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu, "
          f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    probe = EnsembleConfig(**clip_kw)
    print(f"# config: n_members={probe.n_members} hidden={probe.hidden} lr={probe.lr} "
          f"batch_size={probe.batch_size} bootstrap={args.bootstrap} input_clip={probe.input_clip}")
    header = (
        f"{'system':>6} {'n_train':>7} {'epochs':>6} {'wd':>7} "
        f"{'MAE (eV/at)':>16} {'rank':>5} {'fit_s':>6} {'cpu_s':>6} {'trainMSE':>8} {'base_MAE':>8}"
    )
    lines: list[str] = []
    for system in args.systems:
        formulas, y = load_system(args.path, system)
        t0 = time.perf_counter()
        X = magpie(formulas)
        ok = np.all(np.isfinite(X), axis=1)
        X, y = X[ok], y[ok]
        print(f"# {system}: featurised {len(formulas)} rows in {time.perf_counter() - t0:.1f} s; "
              f"{int((~ok).sum())} rows with non-finite features dropped; X {X.shape}")
        perm = np.random.default_rng(12345).permutation(len(y))
        n_test = int(round(0.2 * len(y)))
        test, pool = perm[:n_test], perm[n_test:]
        for n_train in args.n_train:
            configs = [(e, wd) for e in args.epochs for wd in args.weight_decay]
            mae = np.zeros((len(configs), args.seeds))
            secs = np.zeros_like(mae)
            cpu = np.zeros_like(mae)
            loss = np.zeros_like(mae)
            base = np.zeros(args.seeds)
            for s in range(args.seeds):
                tr = np.random.default_rng(s).choice(pool, size=n_train, replace=False)
                base[s] = np.mean(np.abs(y[test] - np.median(y[tr])))
                for c, (epochs, wd) in enumerate(configs):
                    cfg = EnsembleConfig(
                        epochs=epochs, weight_decay=wd, bootstrap=args.bootstrap, device="cpu", **clip_kw
                    )
                    model = EnsembleRegressor(cfg, seed=s)
                    t, tc = time.perf_counter(), time.process_time()
                    model.fit(X[tr], y[tr])
                    secs[c, s] = time.perf_counter() - t
                    cpu[c, s] = time.process_time() - tc
                    loss[c, s] = model.train_loss_
                    mean, _ = model.predict(X[test])
                    mae[c, s] = np.mean(np.abs(mean - y[test]))
            ranks = np.argsort(np.argsort(mae, axis=0), axis=0).mean(axis=1) + 1
            for c, (epochs, wd) in enumerate(configs):
                line = (
                    f"{system:>6} {n_train:>7} {epochs:>6} {wd:>7.0e} "
                    f"{mae[c].mean():>8.4f} ± {mae[c].std(ddof=1) if args.seeds > 1 else 0.0:<5.3f} "
                    f"{ranks[c]:>5.1f} {np.median(secs[c]):>6.3f} {np.median(cpu[c]):>6.3f} "
                    f"{loss[c].mean():>8.1e} {base.mean():>8.4f}"
                )
                lines.append(line)
                print(line, flush=True)
    print()
    print("# summary (test MAE mean ± std over seeds; rank = mean rank within its system/n_train block;")
    print("#          fit_s / cpu_s = median wall / process CPU seconds per fit (5 members);")
    print("#          trainMSE = final training MSE on the standardised target;")
    print("#          base_MAE = predicting the training median)")
    print(f"# load average at end {os.getloadavg()[0]:.2f}")
    print(header)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
