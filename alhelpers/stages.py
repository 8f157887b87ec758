"""The Track A study's stages as library functions, so any notebook can make its own inputs.

Notebook 01 calls :func:`fetch_stage`, 02 :func:`featurize_stage`, 03 :func:`al_stage`, 04
:func:`collect_runs` and the statistics, 06 :func:`cross_stage`. When a notebook's input is
missing — it is the first notebook opened in a fresh Colab runtime, say — the ``ensure_*``
functions call the earlier stages to make it, and say so; when a stage output is unreadable
(a truncated parquet), they recompute it and say so too. Every path comes from
:class:`alhelpers.layout.Layout`, every write is atomic (:mod:`alhelpers.files`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from alhelpers.al.rounds import Budget, BudgetExceeded
from alhelpers.al.seeding import stream
from alhelpers.files import (
    UnreadableFileError,
    read_csv,
    read_json,
    read_parquet,
    write_csv,
    write_parquet,
)
from alhelpers.formation.config import ALConfig, EnsembleConfig, FeaturizeConfig, FetchConfig
from alhelpers.formation.features import (
    FeatureSet,
    featurize,
    load_features,
    save_features,
)
from alhelpers.keys import Key
from alhelpers.layout import STUDY_TABLES, Layout
from alhelpers.provenance import by_code, code_id, listing

Say = Callable[[str], None]

__all__ = [
    "ALResult",
    "FetchResult",
    "al_stage",
    "collect_runs",
    "complete_runs",
    "cross_stage",
    "ensure_features",
    "ensure_runs",
    "ensure_statistics",
    "ensure_system",
    "featurize_stage",
    "fetch_stage",
    "load_system",
    "read_table",
    "save_table",
    "smoke",
    "statistics_stage",
]


# --------------------------------------------------------------------------- 01 fetch


@dataclass
class FetchResult:
    """What notebook 01 made: the cleaned entries, the filter steps, Table 1 and where they are."""

    entries: pd.DataFrame
    steps: list
    table1: pd.DataFrame
    path: Path


def fetch_stage(cfg: FetchConfig, layout: Layout) -> FetchResult:
    """Fetch one system from one source, apply the study's filters and save the tables.

    Writes the cleaned entries, their filter report, the rows before de-duplication (for the
    MP–OQMD disagreement floor of notebook 06) and the config.
    """
    from alhelpers.data import fetch_raw, save_system, summarize_system
    from alhelpers.data.systems import clean_entries

    kw = cfg.fetch_kwargs()
    filters = {k: kw.pop(k) for k in ("min_sites", "max_sites", "max_abs_target", "dedup_tol")}
    raw = fetch_raw(cfg.source, cfg.system, **kw)
    label = (f"{Path(cfg.table_path).name}, system {cfg.system!r}" if cfg.source == "file"
             else f"source {cfg.source!r}, system {cfg.system!r}")
    entries, steps = clean_entries(raw, label=label, **filters)  # raises, naming why, if none are left
    with warnings.catch_warnings():  # the same rows again: their warnings were given just now
        warnings.simplefilter("ignore")
        undeduplicated, _ = clean_entries(raw, label=label, **{**filters, "dedup_tol": 0.0})
    path = save_system(entries, steps, layout.system_table(cfg.source, cfg.system))
    write_parquet(layout.undeduplicated_table(cfg.source, cfg.system), undeduplicated)
    cfg.save(path.with_suffix(".config.json"))
    return FetchResult(entries, steps, summarize_system(entries, test_fraction=cfg.test_fraction), path)


def load_system(layout: Layout, source: str, system: str, *, undeduplicated: bool = False) -> pd.DataFrame:
    """A system table written by :func:`fetch_stage` (checked; a clear error if missing or broken)."""
    path = (layout.undeduplicated_table if undeduplicated else layout.system_table)(source, system)
    return read_parquet(path, todo=f"Run notebooks/01_fetch.ipynb with SYSTEM = {system!r}, "
                                   f"SOURCE = {source!r} (it rewrites the file).")


def _recover(what: str, err: Exception, say: Say) -> None:
    if isinstance(err, FileNotFoundError):
        say(f"{what} is not in this results folder yet: making it now.")
    else:
        say(f"{err}\n→ recomputing {what} now.")


def ensure_system(layout: Layout, source: str, system: str, *, fetch: FetchConfig | None = None,
                  say: Say = print, undeduplicated: bool = False) -> pd.DataFrame:
    """A system table — read if it is there, else made by notebook 01's stage (with ``fetch``, or
    the default settings of ``source``)."""
    try:
        return load_system(layout, source, system, undeduplicated=undeduplicated)
    except (FileNotFoundError, UnreadableFileError) as err:
        if source == "file" and fetch is None:
            raise FileNotFoundError(
                f"{err} Your own table is read by notebook 01 (SOURCE = 'file', TABLE_PATH = ...): "
                "run it first.") from None
        _recover(f"the {system} table ({source}, notebook 01's output)", err, say)
        fetch_stage(fetch or FetchConfig(system=system, source=source), layout)
        return load_system(layout, source, system, undeduplicated=undeduplicated)


# --------------------------------------------------------------------------- 02 featurize


def featurize_stage(cfg: FeaturizeConfig, layout: Layout, entries: pd.DataFrame, *,
                    progress: bool = False) -> FeatureSet:
    """Descriptors of a system's entries, saved with their bookkeeping and config."""
    fs = featurize(entries, cfg.descriptor, progress=progress)
    path = layout.features(cfg.source, cfg.descriptor, cfg.system)
    save_features(fs, path)
    cfg.save(path.with_suffix(".config.json"))
    return fs


def ensure_features(layout: Layout, cfg: FeaturizeConfig, *, fetch: FetchConfig | None = None,
                    say: Say = print, progress: bool = False) -> FeatureSet:
    """The feature table of ``cfg`` — read if it is there, else made by notebooks 01 and 02's stages."""
    path = layout.features(cfg.source, cfg.descriptor, cfg.system)
    try:
        return load_features(path)
    except (FileNotFoundError, UnreadableFileError) as err:
        _recover(f"the {cfg.descriptor} features of {cfg.system} (notebook 02's output)", err, say)
        entries = ensure_system(layout, cfg.source, cfg.system, fetch=fetch, say=say)
        return featurize_stage(cfg, layout, entries, progress=progress)


# --------------------------------------------------------------------------- 03 active learning


@dataclass
class ALResult:
    """What notebook 03 got: the runs (None if a budget stopped it), why it stopped, rounds resumed."""

    runs: pd.DataFrame | None
    stopped: str
    resumed_rounds: int
    path: Path


def al_stage(cfg: ALConfig, layout: Layout, *, progress: bool = False, budget: Budget | None = None,
             say: Say = print, features: FeatureSet | None = None) -> ALResult:
    """One (system, descriptor, seed): every strategy's learning curve, checkpointed and saved."""
    from alhelpers.formation.loop import run_al  # torch: only the notebooks that train import it

    fs = features or ensure_features(layout, FeaturizeConfig(cfg.system, cfg.source, cfg.descriptor),
                                     say=say)
    path = layout.run(cfg.system, cfg.descriptor, cfg.seed)
    try:
        runs = run_al(fs.X, fs.y, cfg, checkpoint_dir=layout.checkpoints, progress=progress,
                      budget=budget, formulas=fs.table[Key.formula].tolist())
    except BudgetExceeded as err:
        return ALResult(None, str(err), 0, path)
    resumed = int(runs.attrs.get("resumed_rounds", 0))
    if resumed:
        rest = ("nothing computed" if resumed >= cfg.rounds
                else f"rounds {resumed}–{cfg.rounds - 1} computed")
        say(f"{cfg.system} seed {cfg.seed}: resumed — {min(resumed, cfg.rounds)} of {cfg.rounds} rounds read back "
            f"from the checkpoints in {layout.rel(layout.checkpoints)}/ (same configuration and data); {rest}.")
    write_parquet(path, runs.assign(config_id=cfg.protocol_id, code_id=code_id()))
    cfg.save(path.with_suffix(".config.json"))
    return ALResult(runs, "", resumed, path)


def _stale_code(table: pd.DataFrame) -> str:
    """Why a table's rows were computed by other code than this process runs ("" when they were not)."""
    ids = set(map(str, table["code_id"].dropna().unique())) if "code_id" in table else set()
    if not ids:
        return "it does not record the code that computed it"
    if ids != {code_id()}:
        return f"it was computed by other code (code id {', '.join(sorted(ids))}; this code: {code_id()})"
    return ""


def ensure_runs(layout: Layout, cfgs: Sequence[ALConfig], *, say: Say = print) -> None:
    """Make every run of ``cfgs`` whose file is missing, unreadable or computed by other code
    (notebook 03's stage; a run of other code is recomputed, never mixed with this code's)."""
    for cfg in cfgs:
        path = layout.run(cfg.system, cfg.descriptor, cfg.seed)
        what = f"the run of {cfg.system} seed {cfg.seed} (notebook 03's output)"
        try:
            stale = _stale_code(read_parquet(path, todo=""))
            _run_config(path)  # which configuration made it: unreadable, the run is made again
        except (FileNotFoundError, UnreadableFileError) as err:
            _recover(what, err, say)
        else:
            if not stale:
                continue
            say(f"{layout.rel(path)}: {stale}.\n→ recomputing {what} now.")
        al_stage(cfg, layout, say=say)


def _run_config(path: Path) -> dict:
    cfg_path = path.with_suffix(".config.json")
    todo = "Rerun notebook 03 for this run (its checkpoints make that quick), or delete both files."
    if not cfg_path.exists():
        raise FileNotFoundError(f"{cfg_path} does not exist (it says which configuration made "
                                f"{path.name}). {todo}")
    return read_json(cfg_path, todo=todo)["config"]


def collect_runs(layout: Layout, *, systems: Sequence[str] | None = None,
                 descriptors: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None) -> pd.DataFrame:
    """The tidy runs table assembled from the per-run files of notebook 03 that exist.

    Optionally only some systems, descriptors and seeds. Runs of different protocols (another
    ``N_INIT``, ``BATCH``, ``SMOKE`` …) or computed by different code (their ``code_id``) are never
    mixed: that raises a ``ValueError`` naming the files of each. ``df.attrs["config_id"]`` is
    the protocol's id, ``df.attrs["code_id"]`` the code's.
    """
    frames, names, ids = [], [], {}
    for path in sorted(layout.runs_dir.glob("*.parquet")):
        cfg = _run_config(path)
        if ((systems is not None and cfg["system"] not in systems)
                or (descriptors is not None and cfg["descriptor"] not in descriptors)
                or (seeds is not None and cfg["seed"] not in seeds)):
            continue
        df = read_parquet(path, todo=f"Rerun notebook 03 with SYSTEM = {cfg['system']!r}, SEED = "
                                     f"{cfg['seed']} (its checkpoints make that quick), or delete it.")
        pid = ALConfig(**{**cfg, "strategies": tuple(cfg["strategies"]),
                          "model": _ensemble(cfg["model"])}).protocol_id
        ids.setdefault(pid, []).append(path.name)
        frames.append(df.assign(config_id=pid))
        names.append(path.name)
    if not frames:
        raise FileNotFoundError(
            f"no active-learning runs in {layout.runs_dir}: run notebooks/03_active_learning.ipynb "
            "first (or `python -m alhelpers.run study`).")
    codes = by_code(zip(names, frames))
    if len(ids) > 1:
        raise ValueError(
            f"{layout.runs_dir} holds runs of {len(ids)} different configurations ({listing(ids)}); they "
            "cannot be compared. Move or delete the runs of the configuration you do not want, or "
            "rerun notebook 03 for them with the same parameters.")
    if len(codes) > 1:
        raise ValueError(
            f"{layout.runs_dir} holds runs computed by {len(codes)} versions of the code ({listing(codes)}); "
            "their numbers cannot be compared. Rerun notebook 03 for the runs of the other code (or "
            "`python -m alhelpers.run study`, which reruns what changed).")
    runs = pd.concat(frames, ignore_index=True).sort_values(
        ["system", "descriptor", "strategy", "seed", "round"], kind="mergesort", ignore_index=True)
    runs.attrs["config_id"] = next(iter(ids))
    runs.attrs["code_id"] = next(iter(codes))
    return runs


def _ensemble(d: dict):
    return EnsembleConfig(**{**d, "hidden": tuple(d["hidden"])})


def complete_runs(layout: Layout, *, systems: Sequence[str], seeds: Sequence[int],
                  descriptors: Sequence[str] = ("magpie",), source: str = "snapshot",
                  smoke_run: bool = False, say: Say = print) -> pd.DataFrame:
    """The runs of ``systems`` × ``descriptors`` × ``seeds``, making the missing ones first.

    Missing runs get the protocol of the runs already in the folder (so a student's own ``N_INIT``
    is kept), else the study's default protocol (or the smoke one); then :func:`collect_runs`.
    """
    template = None
    for path in sorted(layout.runs_dir.glob("*.parquet")):
        try:
            cfg = _run_config(path)
        except (FileNotFoundError, UnreadableFileError):
            continue
        if cfg["source"] == source:
            template = ALConfig(**{**cfg, "strategies": tuple(cfg["strategies"]),
                                   "model": _ensemble(cfg["model"])})
            break
    if template is None:
        template = ALConfig(source=source)
        template = smoke(template) if smoke_run else template
    seeds = [int(k) for k in seeds]
    ensure_runs(layout, [replace(template, system=s, descriptor=d, seed=k)
                         for s in systems for d in descriptors for k in seeds], say=say)
    return collect_runs(layout, systems=systems, descriptors=descriptors, seeds=seeds)


# --------------------------------------------------------------------------- tables


def save_table(layout: Layout, name: str, table: pd.DataFrame, *, config_id: str) -> Path:
    """Write a study table (CSV) with the ids of the configuration and of the code that produced it."""
    return write_csv(layout.table(name), table.assign(config_id=config_id, code_id=code_id()))


def read_table(layout: Layout, name: str) -> pd.DataFrame:
    """A study table written by notebook 04 (a clear error when it is missing)."""
    path = layout.table(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run notebooks/04_statistics.ipynb first.")
    try:
        return read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(path, str(exc), "Run notebooks/04_statistics.ipynb again.") from None


# --------------------------------------------------------------------------- 04 statistics


def statistics_stage(layout: Layout, runs: pd.DataFrame, *, baseline: str = "random",
                     alpha: float = 0.05, n_boot: int = 2000, boot_seed: int = 0,
                     say: Say = print) -> dict[str, pd.DataFrame]:
    """Notebook 04's tables from a runs table, each saved with its configuration id.

    ``runs`` (saved as ``runs.parquet``), ``table1`` (data per system), ``final_table`` (each
    strategy against ``baseline``, paired by seed), ``savings``, ``auc``, ``calibration`` (σ's
    calibration and the predicted MAE per round, mean over seeds) and ``leakage`` (a linear model
    on each descriptor set alone; the features come from notebook 02's files, made if missing).
    """
    from alhelpers import curves, stats
    from alhelpers.calibration import calibration_table
    from alhelpers.data import summarize_system
    from alhelpers.formation.leakage import leakage_table

    config_id = runs.attrs.get("config_id") or str(runs["config_id"].iloc[0])
    source = str(_first_config(layout, runs)["source"])
    write_parquet(layout.runs_table, runs)
    out: dict[str, pd.DataFrame] = {"runs": runs}
    entries, leak = [], []
    for system in runs["system"].unique():
        entries.append(ensure_system(layout, source, system, say=say))
        sets = {}
        for descriptor in ("magpie", "paper17"):
            fs = ensure_features(layout, FeaturizeConfig(system, source, descriptor), say=say)
            if len(fs.table) >= 10:
                sets[descriptor] = (fs.X, fs.y, fs.feature_names)
        leak.append(leakage_table(sets).assign(system=system))
    out["table1"] = summarize_system(pd.concat(entries, ignore_index=True))
    out["final_table"] = stats.final_table(runs, baseline=baseline, alpha=alpha)
    out["savings"] = curves.label_savings(runs, baseline=baseline, n_boot=n_boot,
                                         rng=stream(boot_seed))
    out["auc"] = curves.learning_curve_auc(runs, n_boot=n_boot, rng=stream(boot_seed))
    out["calibration"] = calibration_table(runs)
    out["leakage"] = pd.concat(leak, ignore_index=True)
    for name in STUDY_TABLES:
        save_table(layout, name, out[name], config_id=config_id)
    return out


def _first_config(layout: Layout, runs: pd.DataFrame) -> dict:
    r = runs.iloc[0]
    return _run_config(layout.run(r["system"], r["descriptor"], int(r["seed"])))


def ensure_statistics(layout: Layout, *, systems: Sequence[str] | None = None,
                      seeds: Sequence[int] = range(5), smoke_run: bool = False,
                      say: Say = print) -> dict[str, pd.DataFrame]:
    """Notebook 04's tables for notebook 05: read when they are there, else computed from the runs
    of ``systems`` × ``seeds`` (default: the study's four systems, seeds 0–4; missing runs are made)."""
    try:
        runs = read_parquet(layout.runs_table, todo="Run notebooks/04_statistics.ipynb again.")
        return {"runs": runs, **{n: read_table(layout, n) for n in STUDY_TABLES}}
    except (FileNotFoundError, UnreadableFileError) as err:
        _recover("the statistics of notebook 04", err, say)
    from alhelpers.keys import SYSTEMS

    runs = complete_runs(layout, systems=list(systems or SYSTEMS), seeds=seeds, smoke_run=smoke_run, say=say)
    return statistics_stage(layout, runs, say=say)


# --------------------------------------------------------------------------- 06 cross-database


def cross_stage(cfg: ALConfig, layout: Layout, *, seeds: Sequence[int], progress: bool = False,
                say: Say = print) -> dict:
    """MP–OQMD disagreement on shared compositions (rows before de-duplication) and the
    cross-database learning curves; both saved. Returns what the notebook shows and records."""
    from alhelpers.files import write_json
    from alhelpers.formation.crossdb import (
        cross_database_runs,
        cross_summary,
        enough_data,
        source_disagreement,
    )

    undeduplicated = ensure_system(layout, cfg.source, cfg.system, say=say, undeduplicated=True)
    fs = ensure_features(layout, FeaturizeConfig(cfg.system, cfg.source, cfg.descriptor), say=say)
    shared, floor = source_disagreement(undeduplicated)
    write_csv(layout.disagreement(cfg.system, ".csv"), shared.assign(code_id=code_id()))
    counts = enough_data(fs.table["source"], cfg)
    cross = summary = None
    if counts["enough"]:
        cross = cross_database_runs(fs.X, fs.y, fs.table["source"], cfg, seeds=seeds, progress=progress,
                                    checkpoint_dir=layout.checkpoints / "cross",
                                    formulas=fs.table[Key.formula].tolist())
        summary = cross_summary(cross)
        if cross.attrs.get("resumed_rounds"):
            done, total = cross.attrs["resumed_rounds"], cross.attrs["total_rounds"]
            say(f"{cfg.system}: resumed — {done} of {total} rounds (directions × seeds × rounds) read back from the "
                f"checkpoints in {layout.rel(layout.checkpoints / 'cross')}/ (same configuration and data); "
                + ("nothing computed." if done >= total else "the rest computed."))
        write_parquet(layout.cross(cfg.system, cfg.descriptor),
                      cross.assign(config_id=cfg.protocol_id, code_id=code_id()))
    from alhelpers.al.config import package_versions

    write_json(layout.disagreement(cfg.system), {"system": cfg.system, **floor, **counts, "code_id": code_id(),
                                                 "versions": package_versions()})
    return {"shared": shared, "floor": floor, "counts": counts, "cross": cross, "summary": summary}


def smoke(cfg: ALConfig) -> ALConfig:
    """The tiny version of a protocol that checks a notebook runs (10 → 15 labels, 2 members)."""
    return replace(cfg, n_init=10, batch=5, rounds=2, model=EnsembleConfig(n_members=2, epochs=20))
