"""Wall time and peak memory of the whole default Track A study on this machine.

    python benchmarks/study_speed.py [--out DIR] [--jobs 2] [extra `alhelpers.run study` args]

Runs ``python -m alhelpers.run study`` (4 systems × 4 strategies × 5 seeds, 30 → 105 labels, on
the offline snapshot; by default the whole main job, i.e. also cross-database runs, statistics,
figures and report — pass ``--no-cross-db`` to time the AL study alone) in a fresh output folder, sampling the summed resident memory of the runner
and all its notebook kernels every 0.2 s. Time is split from the tidy runs table:

- ``train_s``: sum over all rounds of ensemble training time (``fit_s``),
- ``query_s``: sum over all rounds of query-strategy time (``query_s``),
- ``overhead_s``: the rest of the wall time, per worker: wall − (train + query) / jobs — kernel
  start-up, imports, fetch/featurize notebooks, evaluation, I/O (and, unless ``--no-cross-db``,
  the cross-database notebooks, whose training is not in the runs table).

The last line is machine-readable:
``study_speed: wall_s=… peak_mb=… train_s=… query_s=… overhead_s=…``.
The original study's budget is 4 h and 8 GB *per system* on Colab.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import psutil


def tree_rss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temp dir)")
    parser.add_argument("--jobs", type=int, default=2)
    args, extra = parser.parse_known_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="study_speed-"))
    cmd = [sys.executable, "-m", "alhelpers.run", "study", "--out", str(out), "--jobs", str(args.jobs),
           "--force", *extra]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    ps = psutil.Process(proc.pid)
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            try:
                peak[0] = max(peak[0], tree_rss_mb(ps))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    th.join()
    if rc != 0:
        print(f"study failed with exit code {rc}", file=sys.stderr)
        return rc
    runs = pd.read_parquet(out / "runs.parquet")
    train, query = float(runs["fit_s"].sum()), float(runs["query_s"].sum())
    overhead = wall - (train + query) / args.jobs
    n_sys = runs["system"].nunique()
    print(f"\nrows={len(runs)} systems={n_sys} strategies={runs['strategy'].nunique()} "
          f"seeds={runs['seed'].nunique()} jobs={args.jobs}")
    print(f"vs the original budget of 4 h per system: {4 * 3600 * n_sys / wall:.0f}x faster; "
          f"peak memory {peak[0] / 1024:.2f} GB vs 8 GB")
    print(f"study_speed: wall_s={wall:.1f} peak_mb={peak[0]:.0f} train_s={train:.1f} "
          f"query_s={query:.1f} overhead_s={overhead:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
