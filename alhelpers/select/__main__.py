"""``python -m alhelpers.select``: the structures to label next, for your own potential and files.

::

    python -m alhelpers.select MODEL TRAIN POOL [--method lcmd-feat-rp] [--batch 10] [--seed 0]
                               [--out selected.extxyz] [--csv selection.csv] [--committee FILE …]
                               [--overwrite]

* ``MODEL``: a whole PyTorch model saved with ``torch.save(model, path)`` — a MACE model file
  (``mace-torch``) or the project's potential. Loading a model file runs code from it: load only
  files you trust.
* ``TRAIN``, ``POOL``: the labelled training structures and the unlabelled candidates, in any
  format ``ase.io`` reads (extxyz, …).
* Writes ``--out``: the selected structures in selection order as extxyz, ready for DFT, each
  with ``pool_index``, ``rank`` and ``score`` in its info; and ``--csv``: one row per pool
  structure (``pool_index, score, selected, rank``). Both are written atomically, never over an
  input (model, training set, pool, ``--committee``), and over an existing file only with
  ``--overwrite``.

Every argument is checked before anything is loaded (``--batch`` and ``--rp-dim`` >= 1, ``--seed``
>= 0, the output paths; ``--batch`` at most the pool's size once the pool is read, before the
model is); a refusal prints ``error: …`` and exits with 2.

The selection is :func:`alhelpers.anymodel.select.select_structures` with the same arguments,
so the command and the Python call select the same indices.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alhelpers.select.methods import RULES

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alhelpers.select",
                                description="The structures to label next, for your own potential and files: "
                                            "extxyz in; the batch as extxyz and every candidate's score as CSV out.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model file (torch.save(model, path)): a MACE model or the project's potential")
    p.add_argument("train", help="labelled training structures (extxyz or any ase.io format)")
    p.add_argument("pool", help="unlabelled candidate structures (extxyz or any ase.io format)")
    p.add_argument("--method", default="lcmd-feat-rp",
                   help=f"random or <rule>-<kernel>, rule in {', '.join(RULES)} (default lcmd-feat-rp)")
    p.add_argument("--batch", type=int, default=10, help="structures to select (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the selection's randomness (default 0)")
    p.add_argument("--rp-dim", type=int, default=512, help="sketch dimension of FEAT(RP) (default 512)")
    p.add_argument("--committee", nargs="+", default=[], metavar="FILE",
                   help="model files of a committee, for maxdiag-qbc-e / maxdiag-qbc-f")
    p.add_argument("--out", default="selected.extxyz", help="selected structures (default selected.extxyz)")
    p.add_argument("--csv", default="selection.csv", help="indices and scores (default selection.csv)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out and --csv if they exist (never one of the input files)")
    return p


def _inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(what, path)`` of every file the command reads, as messages name them."""
    return ([("the model file", args.model), ("the training set file", args.train), ("the pool file", args.pool)]
            + [("a --committee file", f) for f in args.committee])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from alhelpers.anymodel.io import load_model, write_selection
    from alhelpers.anymodel.select import (FLAGS, check_arguments, check_pool, parse_any_method, read_structures,
                                           select_structures)
    from alhelpers.files import check_output_paths

    try:
        parse_any_method(args.method)  # a bad name, number or output path fails before anything is loaded
        check_arguments(args.batch, args.rp_dim, args.seed, names=FLAGS)
        check_output_paths({"--out": args.out, "--csv": args.csv}, _inputs(args), overwrite=args.overwrite)
        train = read_structures(args.train, "training set")
        pool = read_structures(args.pool, "pool")
        check_pool(args.batch, len(pool), name=FLAGS["batch"], source=args.pool)  # before the model is loaded
        model = load_model(args.model)
        committee = [load_model(f, "a --committee file") for f in args.committee]
        sel = select_structures(model, train, pool, method=args.method, batch=args.batch, rng=args.seed,
                                committee=committee, rp_dim=args.rp_dim)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out, csv = write_selection(sel, pool, args.out, args.csv)
    t = sel.timings
    print(f"{sel.method}: {len(sel.indices)} of {len(pool)} pool structures selected "
          f"(features {t.get('feature_s', 0.0):.2f} s, rule {t.get('query_s', 0.0):.2f} s)")
    print(f"pool indices in selection order: {sel.indices.tolist()}")
    print(f"→ {out} (structures for DFT), {csv} (indices and scores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
