"""Headless study runner: executes the numbered notebooks through papermill, per system (and seed).

Track B (batch active learning for potentials, notebook 07 per data set, batch size and seed):

    python -m alhelpers.run potentials [--system offline|tio2|lmnto|qm9] [--model gm|mace] [--strategies …]
                                       [--batch 10] [--seeds 0 1 2 3 4] [--smoke] [--out DIR]
                                       [--executor local|dask] [--jobs N] [--workers N]
                                       [--scheduler ADDRESS]

runs notebook 07 per (batch, seed) and notebook 08 over them, which writes
``DIR/potentials/<system>_runs.parquet``, ``_final.csv``, ``_vs_random.csv`` and
``DIR/figures/potentials_*.png``.

    python -m alhelpers.run study [--systems C Si Fe Ti-O] [--seeds 0 1 2 3 4]
                                  [--strategies random uncertainty diversity hybrid]
                                  [--descriptors magpie] [--out results]
                                  [--executor local|dask] [--jobs N] [--workers N]
                                  [--scheduler ADDRESS]

Stages: 01_fetch per system → 02_featurize per (system, descriptor) → 03_active_learning per
(system, descriptor, seed), all rows in ``DIR/runs.parquet`` → 06_cross_database per system →
04_statistics (``final_table.csv``, ``savings.csv``, ``auc.csv``, ``leakage.csv``) →
05_figures (``figures/*.png``) → ``report.md``.

Each notebook run is one task, and its identity is its code, parameters and inputs: a task is
skipped only when its executed notebook finished with the same code (its notebook's code cells and
the ``alhelpers`` source), the same parameters, its inputs still have the same hashes and its
outputs are still there (:func:`task_status`); otherwise it reruns and the runner says why. So an interrupted study continues where it stopped, and a study with other parameters
never reuses old results. One folder holds one configuration (``study.json``): a run with another
one is refused unless ``--replace`` moves the old results aside. Paths follow
:class:`alhelpers.layout.Layout` (the notebooks use the same one), so a results folder can be moved.
Two runners on one folder are refused (a lock).

Executors: ``--executor local`` (default) runs ``--jobs`` notebooks side by side in this process;
``--executor dask`` submits every task of a stage to ``dask.distributed`` (a LocalCluster of
``--workers`` single-threaded worker processes, or the existing cluster at ``--scheduler
ADDRESS``, whose workers must import ``alhelpers`` and see the same paths). The results are the
same either way. A failing task does not stop the others: its error is reported, the stages that
need it are skipped, everything that finished is kept, and the runner exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alhelpers.formation.config import CALIBRATIONS, DEFAULT_STRATEGIES
from alhelpers.keys import SYSTEMS
from alhelpers.runner.potentials import potentials
from alhelpers.runner.study import study

#: Where the runner writes: the same default folder as the notebooks (alhelpers.layout).
OUT_HELP = ("output folder (default: $ALHELPERS_RESULTS when set, else results/ in the repository, the "
            "notebooks' default)")

#: Exit status of a run stopped with Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def add_executor_flags(p: argparse.ArgumentParser) -> None:
    """Where a grid's notebooks run: here (``--jobs`` side by side) or on ``dask.distributed``."""
    p.add_argument("--executor", default="local", choices=["local", "dask"],
                   help="local: --jobs notebooks side by side here (default); dask: each notebook "
                        "a task on a dask.distributed cluster")
    p.add_argument("--jobs", type=int, default=None,
                   help="local executor: notebooks run side by side (default: one per core, a few more where "
                        "that leaves no core idle at the end: 5 notebooks on 2 cores run 3 side by side)")
    p.add_argument("--workers", type=int, default=2,
                   help="dask executor: worker processes of the LocalCluster (default 2)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask executor: use the existing cluster at ADDRESS (e.g. "
                        "tcp://host:8786) instead of a LocalCluster (default: none, a LocalCluster)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alhelpers.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("study", help="Track A study over systems and seeds (headless, resumable)")
    s.add_argument("--systems", nargs="+", default=list(SYSTEMS), metavar="SYSTEM",
                   help="material systems (default: C Si Fe Ti-O; any element list like Li-Co-O; "
                        "'all' for every row of your own table)")
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="SEED",
                   help="seeds: one split and initial set each, shared by all strategies (default 0-4)")
    s.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), metavar="NAME",
                   help="query strategies (default: random uncertainty diversity hybrid)")
    s.add_argument("--descriptors", nargs="+", default=["magpie"], choices=["magpie", "paper17"],
                   help="descriptor sets (default: magpie)")
    s.add_argument("--n-init", type=int, default=30, help="labelled materials at the start (default 30)")
    s.add_argument("--batch", type=int, default=15, help="materials queried per round (default 15)")
    s.add_argument("--rounds", type=int, default=6, help="train/evaluate rounds (default 6: 30 → 105 labels)")
    s.add_argument("--members", type=int, default=5, help="ensemble members (default 5)")
    s.add_argument("--target-mae", type=float, default=0.0,
                   help="stop a strategy's labelling once its predicted test MAE (eV/atom, from the "
                        "calibrated σ of the pool) is at or below this (default 0: never)")
    s.add_argument("--calibration", choices=list(CALIBRATIONS), default=next(iter(CALIBRATIONS)),
                   help="σ recalibration of notebook 03's runs: cv-final, cross-validation ensembles in the "
                        "final round (every round with --target-mae) and the batches before it; cv, every round "
                        "(3× the training); batches, the predictions that chose each queried batch (no "
                        "training after round 0; σ' measured 25–40 %% too wide). No selection or MAE "
                        "changes (default cv-final; the cross-database runs report no calibration and use "
                        "batches)")
    s.add_argument("--smoke", action="store_true",
                   help="tiny runs to check the pipeline: 10 → 15 labels in 2 rounds, 2 members, overriding "
                        "--n-init, --batch, --rounds and --members (default: off)")
    s.add_argument("--no-cross-db", dest="cross_db", action="store_false",
                   help="skip the cross-database stage (notebook 06; default: run it)")
    s.add_argument("--n-boot", type=int, default=2000,
                   help="bootstrap replicates of the confidence intervals in the statistics (default 2000)")
    s.add_argument("--max-wall-s", type=float, default=0,
                   help="wall-time budget per active-learning notebook in seconds (default 0: none); a "
                        "notebook that would exceed it stops after a checkpointed round and the same "
                        "command resumes")
    s.add_argument("--max-ram-mb", type=float, default=0,
                   help="memory budget per active-learning notebook in MB (default 0: none)")
    s.add_argument("--source", default="snapshot", choices=["snapshot", "mp", "oqmd", "file"],
                   help="where the entries come from: the offline snapshot (default), live Materials "
                        "Project (needs MP_API_KEY), live OQMD, or your own table (--table)")
    s.add_argument("--table", default="", metavar="PATH",
                   help="--source file: your CSV or parquet table (a 'source' column with mp/oqmd "
                        "values enables the cross-database stage; default: none)")
    s.add_argument("--target", default="formation_energy_per_atom", metavar="COL",
                   help="--source file: the target column, in eV/atom (default: formation_energy_per_atom)")
    s.add_argument("--formula-column", default="formula", metavar="COL",
                   help="--source file: the column with chemical formulas (default: formula)")
    s.add_argument("--encoding", default="utf-8",
                   help="--source file: the text encoding of a CSV table (default: utf-8)")
    s.add_argument("--out", default="", help=OUT_HELP)
    s.add_argument("--replace", action="store_true",
                   help="the output folder holds another configuration's results: move them to "
                        "OUT/replaced/ and run this one (default: off, such a run is refused)")
    add_executor_flags(s)
    s.add_argument("--force", action="store_true",
                   help="rerun finished tasks too (default: off, a task finished with the same parameters, "
                        "inputs and outputs is skipped)")
    s.set_defaults(func=study)

    from alhelpers.atomistic.config import DEFAULT_STRATEGIES as POTENTIAL_STRATEGIES

    t = sub.add_parser("potentials", help="Track B: batch AL for interatomic potentials (headless, resumable)")
    t.add_argument("--system", default="offline", choices=["offline", "tio2", "lmnto", "qm9", "file"],
                   help="structure data set (default: offline, the committed aspirin MD set); file: your own "
                        "structures, --data PATH")
    t.add_argument("--data", default="", metavar="PATH",
                   help="with --system file: any file ase.io reads with energies and forces (extxyz, OUTCAR, "
                        "vasprun.xml, .traj …); its runs are filed as file-<its name> (default: none)")
    t.add_argument("--energy-key", default="", metavar="K",
                   help="with --system file: the energy's key in atoms.info or the calculator's results "
                        "(default: the calculator's energy, e.g. extxyz energy=)")
    t.add_argument("--forces-key", default="", metavar="K",
                   help="with --system file: the forces' per-atom array (default: the calculator's forces)")
    t.add_argument("--energy-unit", default="eV",
                   help="with --system file: the unit of the energies, eV (default), meV, Hartree, Ry, kcal/mol or "
                        "kJ/mol (forces: the same per Å)")
    t.add_argument("--model", default="gm", choices=["gm", "mace", "chgnet"],
                   help="the potential: gm, the project's Gaussian-moment network (default); mace, a small "
                        "MACE from scratch (needs mace-torch); chgnet, the pretrained CHGNet fine-tuned (needs "
                        "chgnet); the last two through the model-agnostic path")
    t.add_argument("--strategies", nargs="+", default=list(POTENTIAL_STRATEGIES), metavar="NAME",
                   help="BMDAL methods, e.g. random lcmd-feat-ll (default: the study's seven)")
    t.add_argument("--batch", nargs="+", type=int, default=[10], metavar="B",
                   help="structures added per round; several sizes give the error-vs-batch-size figure "
                        "(default 10)")
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="SEED",
                   help="seeds: one split, start set, models and selections each, one notebook 07 per "
                        "seed and batch size (default 0-4)")
    t.add_argument("--n-init", type=int, default=10,
                   help="structures in the random start set (default 10; --smoke: 4)")
    t.add_argument("--max-size", type=int, default=100,
                   help="stop once the training set has this many structures (default 100; --smoke: "
                        "4 + 2 × batch)")
    t.add_argument("--epochs", type=int, default=0,
                   help="maximum training epochs of a model trained from scratch (default 0: the "
                        "model's own, 80 for gm, 60 for mace; ignored with --smoke)")
    t.add_argument("--cold-start", action="store_true",
                   help="train every round from scratch (the protocol before warm starts, ~3x slower) instead of "
                        "continuing from the previous round's model (default: off, warm starts; mace "
                        "always trains from scratch)")
    t.add_argument("--init-method", default="random",
                   help="how the start set is chosen: random (default), or for a pretrained model (--model chgnet) "
                        "a rule on its features before any label, e.g. maxdet-feat-ll or lcmd-feat-rp")
    t.add_argument("--finetune-from", default="pretrained", choices=["pretrained", "previous"],
                   help="a pretrained model (--model chgnet) is fine-tuned each round from its pretrained weights "
                        "(default: pretrained) or from the previous round's fine-tuned model (previous)")
    t.add_argument("--freeze", action="store_true",
                   help="fine-tune only a pretrained model's head (CHGNet: its readout MLP), the rest frozen "
                        "(default: off, every layer)")
    t.add_argument("--target-mae", type=float, default=0.0,
                   help="stop a strategy's labelling once its predicted test force MAE (eV/Å) is at or "
                        "below this (default 0: never)")
    t.add_argument("--oracle", default="pool", choices=["pool", "tblite"],
                   help="pool: the set's stored labels (default); tblite: GFN2-xTB labels computed on "
                        "the fly")
    t.add_argument("--smoke", action="store_true",
                   help="tiny runs to check the pipeline: a 40-structure pool, a tiny network, few "
                        "epochs, three rounds from 4 structures (default: off)")
    t.add_argument("--out", default="", help=OUT_HELP)
    add_executor_flags(t)
    t.add_argument("--force", action="store_true",
                   help="rerun finished tasks too (default: off, a task finished with the same parameters, "
                        "inputs and outputs is skipped)")
    t.set_defaults(func=potentials)
    return p


def check_flags(args: argparse.Namespace) -> None:
    """Every flag that no notebook config checks, checked before anything runs (``ValueError``
    naming the flag)."""
    from alhelpers.al.rounds import Budget
    from alhelpers.data.systems import system_elements
    from alhelpers.select import get_strategy

    if getattr(args, "scheduler", None) and args.executor != "dask":
        raise ValueError("--scheduler needs --executor dask")
    if getattr(args, "workers", 1) < 1 or (getattr(args, "jobs", None) or 1) < 1:
        raise ValueError("--workers and --jobs must be at least 1")
    bad_seeds = [k for k in args.seeds if k < 0]
    if bad_seeds:
        raise ValueError(f"--seeds must be whole numbers >= 0, got {bad_seeds[0]}")
    if args.cmd == "potentials":
        from alhelpers.atomistic.stages import potentials_config

        if args.epochs < 0:
            raise ValueError(f"--epochs must be >= 0 (0: the model's own), got {args.epochs}")
        if args.system == "file":
            if not args.data:
                raise ValueError("--system file needs --data PATH (a file ase.io reads, with energies and forces)")
            from alhelpers.atomistic.data.user import load_structure_file

            try:  # every frame checked before any task starts
                load_structure_file(args.data, energy_key=args.energy_key or None,
                                    forces_key=args.forces_key or None, energy_unit=args.energy_unit)
            except FileNotFoundError as err:
                raise ValueError(f"--data: {err}") from None
        elif args.data or args.energy_key or args.forces_key or args.energy_unit != "eV":
            raise ValueError("--data, --energy-key, --forces-key and --energy-unit are for --system file")
        for b in args.batch:
            for seed in args.seeds:  # notebook 07's config, checked here (split sizes of a 1,000-structure set)
                potentials_config(args.system, 1000, seed=seed, strategies=tuple(args.strategies), batch=b,
                                  n_init=args.n_init, max_size=args.max_size, target_mae=args.target_mae,
                                  model=args.model, init_method=args.init_method, finetune_from=args.finetune_from,
                                  freeze=args.freeze)
        return
    Budget.from_params(args.max_wall_s, args.max_ram_mb, names=("--max-wall-s", "--max-ram-mb"))
    for system in args.systems:
        if system == "all" and args.source != "file":
            raise ValueError("--systems all means every row of your own table: it needs --source file "
                             "--table PATH. For the snapshot, name systems such as C Si Fe Ti-O (or Li-Co-O).")
        if system != "all":
            system_elements(system)
    for name in args.strategies:
        get_strategy(name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_flags(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\n[run] interrupted (Ctrl-C): the notebooks that finished and every checkpointed round are kept; "
              "run the same command to continue where it stopped.", file=sys.stderr, flush=True)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
