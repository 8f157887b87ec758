"""Where every result lives: one results folder, one layout, for notebooks and runner alike.

A results folder (default ``results/`` in the repository, or ``$ALHELPERS_RESULTS``, or Google
Drive in Colab) holds everything one study produces::

    data/systems/<source>/<system>.parquet             notebook 01: cleaned entries (+ .filters.csv,
    data/systems/<source>/<system>.undeduplicated.parquet        .config.json; rows before de-dup)
    data/features/<source>/<descriptor>/<system>.parquet   notebook 02 (+ .json, .config.json)
    runs/<system>_<descriptor>_seed<seed>.parquet       notebook 03 (+ .config.json)
    checkpoints/                                        per-round checkpoints (keyed by config + data hash)
    cross/<system>_<descriptor>.parquet, cross/<system>_disagreement.{csv,json}   notebook 06
    runs.parquet, table1.csv, final_table.csv, savings.csv, auc.csv, calibration.csv,
    leakage.csv                                        notebook 04
    figures/*.png                                       notebook 05
    potentials/<dataset>_batch<b>_seed<s>.parquet       notebook 07 (Track B)
    notebooks/                                          executed notebooks (runner)
    study.json, report.md                               runner: the configuration and the report

Paths recorded in tables and executed notebooks are relative to the folder (:meth:`Layout.rel`),
so a results folder can be moved or copied and still reads its own data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from alhelpers.data.paths import REPO_ROOT, features_path, system_table_path

ENV_RESULTS = "ALHELPERS_RESULTS"
#: Where results go in Colab when ``DRIVE = True``: survives a disconnect of the runtime.
DRIVE_RESULTS = Path("/content/drive/MyDrive/alhelpers/results")


def default_results_dir() -> Path:
    """``$ALHELPERS_RESULTS``, else ``results/`` in the repository."""
    env = os.environ.get(ENV_RESULTS)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "results"


def _where_from(out_dir: str | os.PathLike, drive: bool) -> str:
    """How the results folder was chosen, in the words the user used."""
    if out_dir:
        return "the results folder (OUT_DIR in a notebook, --out for the runner)"
    if drive:
        return "the Google Drive results folder"
    if os.environ.get(ENV_RESULTS):
        return f"the results folder ${ENV_RESULTS}"
    return "the default results folder"


#: Track A's study tables (``<name>.csv``, notebook 04), in the order the statistics make them.
STUDY_TABLES: tuple[str, ...] = ("final_table", "savings", "auc", "calibration", "table1", "leakage")

#: Everything of a Track A study at the top of a results folder besides its executed notebooks
#: (``--replace`` moves these, and Track A's executed notebooks, as one unit; ``study.json`` last).
STUDY_ITEMS: tuple[str, ...] = ("data", "runs", "cross", "figures", "runs.parquet",
                                *(f"{name}.csv" for name in STUDY_TABLES), "report.md", "report.html",
                                "study.json")

#: Track A's executed notebooks in ``notebooks/`` (01–06); Track B's (07–09) are not the study's.
STUDY_NOTEBOOKS = "0[1-6]_*.ipynb"

#: Names a results folder may hold at its top level (anything else is the user's).
KNOWN_ITEMS: frozenset[str] = frozenset({*STUDY_ITEMS, "notebooks", "checkpoints", "potentials", "selections",
                                         "campaigns", "replaced", ".runner.lock"})


def mount_drive() -> Path:
    """Mount Google Drive in Colab (asks for permission once) and return the Drive results folder."""
    try:
        from google.colab import drive  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError("DRIVE = True works only in Google Colab; elsewhere set OUT_DIR") from None
    drive.mount(str(DRIVE_RESULTS.parents[2]))
    return DRIVE_RESULTS


def _under(name: str, doc: str = "") -> property:
    """A path of the results folder: ``root / name``."""
    return property(lambda self: self.root / name, doc=doc or f"``<results>/{name}``")


@dataclass(frozen=True)
class Layout:
    """All paths of one results folder."""

    root: Path

    @classmethod
    def at(cls, out_dir: str | os.PathLike = "", *, drive: bool = False) -> Layout:
        """The layout of ``out_dir`` (empty: the default folder; ``drive``: Google Drive in Colab)."""
        if drive:
            root = mount_drive() if not out_dir else Path(out_dir)
        else:
            root = Path(out_dir).expanduser() if out_dir else default_results_dir()
        root = root.resolve()
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(
                f"{_where_from(out_dir, drive)} {root} is a file, not a folder. Results go into a folder "
                f"(it is made when missing): set OUT_DIR, --out or ${ENV_RESULTS} to a folder, e.g. "
                f"{root.with_name(root.name + '-results')}.")
        return cls(root)

    def check_not_foreign(self) -> None:
        """Refuse a folder that holds files but nothing of this project's: the runner would write
        its tables and reports among (and possibly over) someone's own files."""
        if not self.root.is_dir():
            return
        names = sorted(p.name for p in self.root.iterdir())
        if names and not KNOWN_ITEMS.intersection(names):
            shown = ", ".join(names[:4]) + (" …" if len(names) > 4 else "")
            raise FileExistsError(
                f"{self.root} already holds other files ({shown}) and no results of this project; "
                "nothing was written. Give --out a new or empty folder (it is made when missing).")

    def study_paths(self) -> list[Path]:
        """Track A's study in this folder as it is now: the :data:`STUDY_ITEMS` that exist and its
        executed notebooks, ``study.json`` last (what ``--replace`` moves as one unit)."""
        items = [self.root / name for name in STUDY_ITEMS if name != "study.json"]
        paths = [p for p in items if p.exists()]
        if self.notebooks.is_dir():
            paths += sorted(self.notebooks.glob(STUDY_NOTEBOOKS))
        return [*paths, *([self.study_config] if self.study_config.exists() else [])]

    # ---------------------------------------------------------------- stage outputs
    data = _under("data", "Notebooks 01–02: system tables and features.")

    def system_table(self, source: str, system: str) -> Path:
        return system_table_path(source, system, self.data)

    def undeduplicated_table(self, source: str, system: str) -> Path:
        """Notebook 01's rows after every filter but the de-duplication (for the MP–OQMD floor)."""
        return self.system_table(source, system).with_suffix(".undeduplicated.parquet")

    def features(self, source: str, descriptor: str, system: str) -> Path:
        return features_path(source, descriptor, system, self.data)

    runs_dir = _under("runs", "Notebook 03: one runs table per (system, descriptor, seed).")

    def run(self, system: str, descriptor: str, seed: int) -> Path:
        return self.runs_dir / f"{system}_{descriptor}_seed{seed}.parquet"

    checkpoints = _under("checkpoints", "Per-round checkpoints of both tracks (keyed by config and data).")

    cross_dir = _under("cross", "Notebook 06: cross-database runs and disagreement.")

    def cross(self, system: str, descriptor: str) -> Path:
        return self.cross_dir / f"{system}_{descriptor}.parquet"

    def disagreement(self, system: str, suffix: str = ".json") -> Path:
        return self.cross_dir / f"{system}_disagreement{suffix}"

    def potentials_run(self, system: str, batch: int, seed: int) -> Path:
        """Notebook 07's rows of one Track B run."""
        return self.root / "potentials" / f"{system}_batch{batch}_seed{seed}.parquet"

    def potentials_table(self, system: str, name: str) -> Path:
        """Notebook 08's tables of one system: ``runs`` (parquet), ``final``, ``vs_random`` (CSV)."""
        suffix = ".parquet" if name == "runs" else ".csv"
        return self.root / "potentials" / f"{system}_{name}{suffix}"

    def campaign(self, name: str) -> Path:
        """Notebook 10's campaign folders (:mod:`alhelpers.campaign`)."""
        return self.root / "campaigns" / name

    # ---------------------------------------------------------------- study tables
    runs_table = _under("runs.parquet", "Notebook 04: all of Track A's runs in one table.")

    def table(self, name: str) -> Path:
        """A study table: ``table1``, ``final_table``, ``savings``, ``auc``, ``calibration``, ``leakage`` (CSV)."""
        return self.root / f"{name}.csv"

    figures = _under("figures")

    notebooks = _under("notebooks", "The runner's executed notebooks.")

    study_config = _under("study.json", "The configuration the folder's Track A results belong to.")

    lock = _under(".runner.lock", "Held by the runner that writes into the folder.")

    # ---------------------------------------------------------------- relative paths
    def rel(self, path: str | os.PathLike) -> str:
        """``path`` relative to the folder (POSIX separators), for tables and records."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"{p} is not inside the results folder {self.root}") from None

    def resolve(self, rel: str | os.PathLike) -> Path:
        """A path recorded with :meth:`rel`, inside this folder wherever it now lies."""
        p = Path(rel)
        return p if p.is_absolute() else self.root / p
