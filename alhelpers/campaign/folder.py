"""A campaign folder: its settings, the append-only ledger of labels, the rounds, one lock.

::

    DIR/campaign.json            track, settings, where the inputs came from (file, sha256)
    DIR/ledger.csv               every label, in the order it came: key, label, round, origin,
                                 file, sha256, time (rows are only ever appended)
    DIR/round-NN/suggestion.json what made round NN's suggestion: code, labels (ledger hash),
                                 candidates, parameters; the predicted error of the candidates
    DIR/round-NN/…               the suggestion itself (Track A: suggested.csv; Track B:
                                 to_label.extxyz and to_label.csv)
    DIR/.campaign.lock           held by the command that works on the folder

Every file is written atomically; the ledger last, so a command killed half-way leaves the
campaign as it was or as the command left it, never in between. A round is made only from the
labels in the ledger, and its suggestion records the hash of the ledger it saw: ``next`` after
``add`` always trains again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alhelpers.files import UnreadableFileError, folder_lock, read_json, sha256_file, write_csv, write_json

__all__ = ["LEDGER_COLUMNS", "Campaign", "CampaignError", "check_next_arguments", "identity", "open_campaign",
           "plan_round", "read_settings"]

#: Columns of ``ledger.csv``: ``key`` (Track A: the reduced formula; Track B: the pool index, or
#: ``init:k`` for the k-th structure of the initial labelled file), ``label`` (eV/atom; Track B:
#: the total energy in eV), ``round`` (the round whose suggestion it answers; −1: the initial
#: labels), ``origin`` (``initial``, ``add`` or ``oracle:…``), the ``file`` it came from, that
#: file's ``sha256`` and the UTC ``time`` it was added.
LEDGER_COLUMNS = ("key", "label", "round", "origin", "file", "sha256", "time")

CAMPAIGN_FILE = "campaign.json"
LEDGER_FILE = "ledger.csv"
TRACKS = ("materials", "structures")


class CampaignError(ValueError):
    """A campaign command refused its input; the campaign is left as it was."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Campaign:
    """An open campaign folder (:func:`open_campaign`)."""

    root: Path
    settings: dict

    @property
    def track(self) -> str:
        return self.settings["track"]

    # ------------------------------------------------------------------ ledger
    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_FILE

    def ledger(self) -> pd.DataFrame:
        """Every label so far (:data:`LEDGER_COLUMNS`)."""
        try:
            df = pd.read_csv(self.ledger_path, dtype={"key": str, "origin": str, "file": str, "sha256": str,
                                                      "time": str}, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise UnreadableFileError(self.ledger_path, f"not a readable ledger ({err})",
                                      "Restore it from a backup: the ledger is the campaign's record of its labels."
                                      ) from None
        if tuple(df.columns) != LEDGER_COLUMNS:
            raise UnreadableFileError(self.ledger_path, f"columns {list(df.columns)}, expected {list(LEDGER_COLUMNS)}",
                                      "Restore it from a backup: the ledger is the campaign's record of its labels.")
        return df.astype({"label": np.float64, "round": np.int64})

    def ledger_hash(self) -> str:
        return sha256_file(self.ledger_path)

    def append(self, rows: pd.DataFrame) -> None:
        """Append rows to the ledger (one atomic rewrite: the old rows unchanged, then these)."""
        old = self.ledger()
        new = pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))
        write_csv(self.ledger_path, pd.concat([old, new], ignore_index=True) if len(old) else new)

    # ------------------------------------------------------------------ rounds
    def round_dir(self, rnd: int) -> Path:
        return self.root / f"round-{rnd:02d}"

    def rounds(self) -> list[int]:
        """Rounds with a finished suggestion (their ``suggestion.json`` is written last)."""
        out = []
        for p in sorted(self.root.glob("round-[0-9][0-9]")):
            if (p / "suggestion.json").exists():
                out.append(int(p.name.split("-")[1]))
        return out

    def suggestion(self, rnd: int) -> dict:
        return read_json(self.round_dir(rnd) / "suggestion.json",
                         todo=f"Delete the folder {self.round_dir(rnd).name} and run next again: it is recomputed.")

    def save_suggestion(self, rnd: int, record: dict) -> Path:
        return write_json(self.round_dir(rnd) / "suggestion.json", record, indent=2)

    def suggested_rounds(self) -> dict[str, int]:
        """Every key any round suggested, in order, with the round that suggested it."""
        return {str(k): r for r in self.rounds() for k in self.suggestion(r)["keys"]}

    def labelled_keys(self) -> set[str]:
        return set(self.ledger()["key"].astype(str))


def input_record(path: str | os.PathLike) -> dict:
    """Where an input came from: its path as given, its absolute path and its sha256."""
    return {"file": os.fspath(path), "absolute": str(Path(path).resolve()), "sha256": sha256_file(path)}


def create(root: str | os.PathLike, settings: dict, ledger: pd.DataFrame) -> Campaign:
    """Write a new campaign's settings and initial ledger (``root`` must not hold a campaign)."""
    root = Path(root)
    write_json(root / CAMPAIGN_FILE, {**settings, "created": now()}, indent=2)
    camp = Campaign(root, read_json(root / CAMPAIGN_FILE, todo=""))
    write_csv(camp.ledger_path, pd.DataFrame(ledger, columns=list(LEDGER_COLUMNS)))
    return camp


def check_new_folder(root: str | os.PathLike) -> Path:
    """``CampaignError`` unless ``root`` is a new or empty folder (never an existing campaign's)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CampaignError(f"{root} is a file; give a folder for the campaign")
    if (root / CAMPAIGN_FILE).exists():
        raise CampaignError(f"{root} already holds a campaign ({CAMPAIGN_FILE}); run next/add/status on it, or give "
                            "init another folder")
    if root.exists() and any(root.iterdir()):
        raise CampaignError(f"{root} is not empty; give init a new or empty folder (the campaign writes its own "
                            "files there)")
    return root


def read_settings(root: str | os.PathLike) -> dict:
    """A campaign folder's settings (its track checked); ``CampaignError`` when ``root`` is no
    campaign folder."""
    root = Path(root)
    if not (root / CAMPAIGN_FILE).exists():
        raise CampaignError(f"{root} is no campaign folder (no {CAMPAIGN_FILE}); start one with "
                            f"python -m alhelpers.campaign init {root} …")
    settings = read_json(root / CAMPAIGN_FILE, todo="Restore it from a backup, or start a new campaign.")
    if settings.get("track") not in TRACKS:
        raise UnreadableFileError(root / CAMPAIGN_FILE, f"unknown track {settings.get('track')!r}",
                                  "Restore it from a backup, or start a new campaign.")
    return settings


@contextmanager
def open_campaign(root: str | os.PathLike, *, track: str | None = None) -> Iterator[Campaign]:
    """Hold the campaign folder ``root`` (a lock: a second command on it is refused) and read its
    settings (:func:`read_settings`); ``CampaignError`` when it is not of ``track``."""
    root = Path(root)
    read_settings(root)  # no campaign: said before a lock file is made
    with folder_lock(root / ".campaign.lock", f"the campaign {root} is in use by another command ({{holder}}); "
                                              "wait for it to finish"):
        settings = read_settings(root)
        if track is not None and settings["track"] != track:
            raise CampaignError(f"{root} is a {settings['track']} campaign, not a {track} one")
        yield Campaign(root, settings)


def plan_round(camp: Campaign, ident: str, replace: bool) -> tuple[int, bool]:
    """The round to write and whether it is already written (same code, labels and parameters)."""
    rounds = camp.rounds()
    if not rounds:
        return 0, False
    last = rounds[-1]
    made = camp.suggestion(last)["identity"]
    if made == ident:
        return last, True
    if (camp.ledger()["round"] == last).any():
        return last + 1, False
    if not replace:
        raise CampaignError(f"round {last}'s suggestion has no labels yet: add them (python -m alhelpers.campaign add "
                            f"{camp.root} FILE), or pass --replace to discard that suggestion and suggest again")
    dest = camp.root / "replaced" / f"round-{last:02d}-{made}"
    dest.parent.mkdir(exist_ok=True)
    shutil.move(str(camp.round_dir(last)), str(dest))
    return last, False


def check_next_arguments(batch: Any, seed: Any, strategy: str, parse: Any) -> None:
    """``CampaignError`` for a ``--batch`` below 1, a negative ``--seed`` or a ``--strategy`` that
    ``parse`` (the track's name check) refuses: before the campaign is touched."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise CampaignError(f"--batch must be a whole number >= 1, got {batch!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CampaignError(f"--seed must be a whole number >= 0, got {seed!r}")
    try:
        parse(strategy)
    except ValueError as err:
        raise CampaignError(str(err)) from None


def identity(**parts: Any) -> str:
    """A short hash of what makes a suggestion: code, labels, candidates, parameters."""
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))[:16]
