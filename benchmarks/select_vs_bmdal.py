"""Our MAXDIST, LCMD and MAXDET against bmdal_reg 3.0.2 on the same inputs, in one run (issue 5).

Pool N × 512 float32 features (default N = 100,000), 1,000 training points, B = 250. MAXDIST and
LCMD on the plain features (bmdal_reg's ``'linear'`` kernel, TP mode), MAXDET on the GP posterior
kernel (``('train', [σ])`` with σ² from the trace rule, P mode). Times are wall-clock seconds of
the whole call on each side (features → transform → selection). Each side runs ``--repeat``
times (default 3), interleaved (ours, bmdal_reg, ours, …), and the fastest run of each side is
compared, as ``timeit`` does: on a shared 2-core machine single runs vary by ±20 %. Every run's
times are printed, and ``same set`` must hold on every run.

Feature sets (``--features``): ``gaussian`` i.i.d. N(0, 1); ``gradient`` FEAT(RP) (p = 512) of an
MLP 132 → 256 → 256 → 1 fitted on the snapshot's real carbon Magpie descriptors, evaluated at
random convex combinations of real descriptor rows; ``both`` runs both and its last line holds the
smaller ratio of each rule and ``agree=yes`` only if every set agreed.

Needs bmdal_reg (test-only): ``pip install --no-deps bmdal-reg==3.0.2 dill``. ``--ours-only``
skips it (ratios print as ``nan``), e.g. ``--pool 1000000 --ours-only`` for the memory check.

Last line: ``select_vs_bmdal: pool=<N> maxdist_ratio=<bmdal_s/ours_s> lcmd_ratio=<…>
maxdet_ratio=<…> agree=<yes|no|n/a> peak_mb=<MB>`` (peak resident memory of this process;
``n/a`` with ``--ours-only``).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from alhelpers.select.features import default_sigma2, gp_posterior_matrix, rp_features
from alhelpers.select.rules import lcmd, maxdet, maxdist

D, N_TRAIN, BATCH = 512, 1000, 250


def gaussian_features(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = np.random.default_rng(seed)
    return (torch.from_numpy(g.standard_normal((n, D), dtype=np.float32)),
            torch.from_numpy(g.standard_normal((N_TRAIN, D), dtype=np.float32)))


def gradient_features(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from alhelpers.data import fetch_system
    from alhelpers.formation.features import featurize
    from alhelpers.formation.models import EnsembleConfig, EnsembleRegressor

    fs = featurize(fetch_system("snapshot", "C")[0], "magpie")
    X, y = np.asarray(fs.X, dtype=np.float64), np.asarray(fs.y, dtype=np.float64)
    model = EnsembleRegressor(EnsembleConfig(n_members=1, hidden=(256, 256), device="cpu"), seed=seed).fit(X, y)
    g = np.random.default_rng(seed)
    i, j = g.integers(0, len(X), (2, n + N_TRAIN))
    t = g.random((n + N_TRAIN, 1))
    inputs = t * X[i] + (1 - t) * X[j]
    feats = np.empty((n + N_TRAIN, D), dtype=np.float32)
    for s in range(0, len(inputs), 50_000):
        feats[s:s + 50_000] = rp_features(model, inputs[s:s + 50_000], p=D, seed=seed, dtype=torch.float32)
    return torch.from_numpy(feats[N_TRAIN:]), torch.from_numpy(feats[:N_TRAIN])


def ours(method: str, pool: torch.Tensor, train: torch.Tensor, sigma2: float) -> np.ndarray:
    if method == "maxdist":
        return maxdist(pool, train, BATCH)
    if method == "lcmd":
        return lcmd(pool, train, BATCH)
    return maxdet(pool, BATCH, transform=gp_posterior_matrix(train, sigma2=sigma2))


def bmdal(method: str, pool: torch.Tensor, train: torch.Tensor, sigma2: float) -> np.ndarray:
    if not hasattr(np, "Inf"):
        np.Inf = np.inf  # bmdal_reg 3.0.2 needs it on NumPy >= 2
    from bmdal_reg.bmdal.algorithms import select_batch
    from bmdal_reg.bmdal.feature_data import TensorFeatureData

    tfms = [("train", [sigma2 ** 0.5])] if method == "maxdet" else []
    data = {"train": TensorFeatureData(train), "pool": TensorFeatureData(pool)}
    idx, _ = select_batch(BATCH, [None], data, None, "linear", tfms, method, verbosity=0)
    return idx.cpu().numpy()


def timed(f, *args) -> tuple[np.ndarray, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = f(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def run_set(name: str, n: int, ours_only: bool, repeat: int) -> dict[str, float | bool]:
    t0 = time.perf_counter()
    pool, train = gaussian_features(n) if name == "gaussian" else gradient_features(n)
    print(f"[{name}] features {tuple(pool.shape)} float32 made in {time.perf_counter() - t0:.1f} s", flush=True)
    sigma2 = default_sigma2(train)
    res: dict[str, float | bool] = {"agree": True}
    for method in ("maxdist", "lcmd", "maxdet"):
        t_ours, t_ref, same = [], [], True
        for _ in range(repeat):  # interleaved, so both sides see the same machine state
            mine, t = timed(ours, method, pool, train, sigma2)
            t_ours.append(t)
            if not ours_only:
                ref, t = timed(bmdal, method, pool, train, sigma2)
                t_ref.append(t)
                same = same and set(mine.tolist()) == set(ref.tolist())
        ratio = float("nan") if ours_only else min(t_ref) / min(t_ours)
        res[f"{method}_ratio"] = ratio
        res["agree"] = bool(res["agree"]) and same
        if ours_only:
            print(f"[{name}] {method}: ours {min(t_ours):.2f} s (fastest of {repeat}; runs: "
                  f"{', '.join(f'{a:.2f}' for a in t_ours)})", flush=True)
            continue
        runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(t_ours, t_ref))
        print(f"[{name}] {method}: ours {min(t_ours):.2f} s, bmdal_reg {min(t_ref):.2f} s "
              f"(fastest of {repeat}; runs ours/bmdal_reg: {runs}), ratio {ratio:.1f}, same set {same}", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=100_000)
    ap.add_argument("--features", choices=("gaussian", "gradient", "both"), default="gaussian")
    ap.add_argument("--ours-only", action="store_true", help="skip bmdal_reg (ratios are nan)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each side per rule, interleaved; the fastest of each is compared")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)
    sets = ("gaussian", "gradient") if args.features == "both" else (args.features,)
    results = [run_set(s, args.pool, args.ours_only, args.repeat) for s in sets]
    line = {m: min(float(r[f"{m}_ratio"]) for r in results) for m in ("maxdist", "lcmd", "maxdet")}
    agree = "n/a" if args.ours_only else ("yes" if all(bool(r["agree"]) for r in results) else "no")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if len(results) > 1:
        for s, r in zip(sets, results):
            print(f"select_vs_bmdal[{s}]: pool={args.pool} maxdist_ratio={r['maxdist_ratio']:.1f} "
                  f"lcmd_ratio={r['lcmd_ratio']:.1f} maxdet_ratio={r['maxdet_ratio']:.1f} "
                  f"agree={'yes' if r['agree'] else 'no'}")
    print(f"select_vs_bmdal: pool={args.pool} maxdist_ratio={line['maxdist']:.1f} lcmd_ratio={line['lcmd']:.1f} "
          f"maxdet_ratio={line['maxdet']:.1f} agree={agree} peak_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
