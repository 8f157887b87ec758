"""``python -m alhelpers.campaign``: active-learning campaigns on your own materials and structures.

::

    # Track A — materials: labelled compositions and candidates in, the batch to compute out
    python -m alhelpers.campaign init DIR --labelled known.csv --target Ef [--formula-column formula]
                                          (--candidates cands.csv | --chemsys Li-Fe-O --max-atoms 8)
    # Track B — structures: labelled frames (energies, forces) and a pool of candidates
    python -m alhelpers.campaign init DIR --structures pool.extxyz --labelled-structures dft.extxyz [--model gm]

    python -m alhelpers.campaign next DIR --batch 10 [--strategy S] [--seed 0] [--oracle …] [--replace]
    python -m alhelpers.campaign add DIR FILE [--any]      # computed labels back
    python -m alhelpers.campaign status DIR

``next`` writes ``DIR/round-NN/suggested.csv`` (materials) or ``DIR/round-NN/to_label.extxyz`` and
``to_label.csv`` (structures). ``--oracle table:FILE`` (materials) or ``--oracle pool`` /
``--oracle tblite`` (structures) labels the batch at once, to replay a campaign without a human.
A refused input prints ``error: …`` and exits with 2, leaving the campaign as it was.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alhelpers.campaign", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("init", help="start a campaign in a new folder")
    i.add_argument("dir")
    a = i.add_argument_group("materials (Track A)")
    a.add_argument("--labelled", help="table (CSV/parquet) of computed compositions: formula and target")
    a.add_argument("--target", default="formation_energy_per_atom", help="the target column (eV/atom)")
    a.add_argument("--formula-column", default="formula", help="the formula column (default formula)")
    a.add_argument("--candidates", help="table of candidate formulas (no target needed)")
    a.add_argument("--candidate-column", help="the candidates' formula column (default: --formula-column)")
    a.add_argument("--chemsys", help="candidates: every charge-balanced composition of these elements, e.g. Li-Fe-O")
    a.add_argument("--max-atoms", type=int, default=8, help="atoms per formula unit for --chemsys (default 8)")
    b = i.add_argument_group("structures (Track B)")
    b.add_argument("--structures", help="the pool of candidate structures (extxyz or any ase.io format)")
    b.add_argument("--labelled-structures",
                   help="labelled structures with energies and forces (none with a pretrained --model: chgnet or a "
                        "model file; its first batch is then chosen on its pretrained features)")
    b.add_argument("--model", default="gm", help="the potential trained each round: gm (the project's), mace, "
                                                  "chgnet (the pretrained CHGNet, fine-tuned) or a model file")
    b.add_argument("--epochs", type=int, default=60, help="training epochs per round (default 60)")
    n = sub.add_parser("next", help="train on every label so far and write the batch to compute")
    n.add_argument("dir")
    n.add_argument("--batch", type=int, default=10, help="how many to suggest (default 10)")
    n.add_argument("--strategy", help="any strategy of the studies (default: stability for materials, "
                                      "lcmd-feat-rp for structures)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--oracle", help="label the batch at once: table:FILE (materials), pool or tblite (structures)")
    n.add_argument("--replace", action="store_true", help="discard a suggestion that has no labels yet")
    d = sub.add_parser("add", help="bring computed labels back")
    d.add_argument("dir")
    d.add_argument("file", help="materials: a table with formula and target; structures: extxyz with energies and "
                                "forces")
    d.add_argument("--any", action="store_true", help="accept labels of candidates no round suggested")
    s = sub.add_parser("status", help="labels per round, predicted error, what each round chose")
    s.add_argument("dir")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from alhelpers.campaign import materials as A
    from alhelpers.campaign import structures as B
    from alhelpers.campaign.folder import read_settings
    from alhelpers.files import UnreadableFileError

    try:
        if args.command == "init":
            if args.labelled and args.structures:
                raise ValueError("give either --labelled (materials) or --structures (structures), not both")
            if args.labelled:
                A.init_materials(args.dir, args.labelled, target=args.target, formula_column=args.formula_column,
                                 candidates=args.candidates, candidate_column=args.candidate_column,
                                 chemsys=args.chemsys, max_atoms=args.max_atoms)
            elif args.structures:
                B.init_structures(args.dir, args.structures, args.labelled_structures, model=args.model,
                                  epochs=args.epochs)
            else:
                raise ValueError("init needs --labelled TABLE (materials) or --structures POOL (structures)")
            return 0
        nxt, add, status = {"materials": (A.next_materials, A.add_materials, A.status_materials),
                            "structures": (B.next_structures, B.add_structures, B.status_structures)}[
            read_settings(args.dir)["track"]]
        if args.command == "next":
            kw = {"strategy": args.strategy} if args.strategy else {}
            nxt(args.dir, batch=args.batch, seed=args.seed, oracle=args.oracle, replace=args.replace, **kw)
        elif args.command == "add":
            add(args.dir, args.file, any_=args.any)
        else:
            import pandas as pd

            table = status(args.dir)
            with pd.option_context("display.width", 160, "display.max_colwidth", 60):
                print(table.to_string(index=False) if len(table) else "no round yet: run next")
    except (ValueError, FileNotFoundError, RuntimeError, UnreadableFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
