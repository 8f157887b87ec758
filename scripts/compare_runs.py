"""Compare two runs tables metric by metric, bit for bit (timings and configuration ids left out).

The before/after check of a refactoring: run the study (or ``python -m alhelpers.run potentials``)
with the old code and the new, then

    python scripts/compare_runs.py OLD/runs.parquet NEW/runs.parquet
    python scripts/compare_runs.py OLD/potentials_runs.parquet NEW/potentials/offline_runs.parquet

Columns written under their names before the one vocabulary of :class:`alhelpers.keys.Key`
(``n_labeled``, ``dataset``/``method``/``n_train``/``train_s``/``selection_s`` of Track B) are
renamed first. Exit status 0 when every shared row and metric is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from alhelpers.keys import TIMING_COLUMNS

#: Old column names → the shared vocabulary.
RENAMED = {"n_labeled": "n_labelled", "dataset": "system", "method": "strategy", "n_train": "n_labelled",
           "n_atoms_train": "n_atoms_labelled", "train_s": "fit_s", "selection_s": "query_s"}
IGNORED = (*TIMING_COLUMNS, "config_id")
KEYS = ("system", "descriptor", "batch", "strategy", "seed", "round")


def normalised(path: str) -> pd.DataFrame:
    df = pd.read_parquet(path).rename(columns=RENAMED)
    df = df.drop(columns=[c for c in IGNORED if c in df.columns])
    keys = [k for k in KEYS if k in df.columns]
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True)[sorted(df.columns)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    args = p.parse_args(argv)
    old, new = normalised(args.old), normalised(args.new)
    if list(old.columns) != list(new.columns):
        print(f"columns differ: only old {sorted(set(old) - set(new))}, only new {sorted(set(new) - set(old))}")
        return 1
    try:
        pd.testing.assert_frame_equal(old, new, check_exact=True, check_dtype=False)
    except AssertionError as err:
        print(f"DIFFERENT: {err}")
        return 1
    metrics = [c for c in new.columns if c not in KEYS and c != "note"]
    print(f"identical: {len(new)} rows, {len(metrics)} metric columns ({', '.join(metrics)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
