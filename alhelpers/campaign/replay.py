"""Replayed materials campaigns: the labels are known and hidden, and a table oracle reveals them.

Used by notebook 10 and ``benchmarks/campaign_discovery.py``: every strategy of a seed starts from
the same ``n_init`` compositions (drawn with the seed), asks ``batch`` labels per round, and the
question is how many of the compounds on the convex hull of *all* the data it has labelled after
each round.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.al.seeding import stream
from alhelpers.campaign.materials import ensure_materials_campaign, next_materials
from alhelpers.files import write_csv

__all__ = ["composition_labels", "found_on_hull", "replay_materials", "snapshot_compounds"]


def composition_labels(entries: pd.DataFrame, *, target: str = "formation_energy_per_atom") -> pd.DataFrame:
    """One row per reduced composition (``formula``, ``label``): the lowest of its polymorphs."""
    from alhelpers.data.formulas import reduced_formula

    df = pd.DataFrame({"formula": entries["formula"].map(reduced_formula), "label": entries[target].astype(float)})
    return df.groupby("formula", as_index=False)["label"].min()


def snapshot_compounds(system: str) -> pd.DataFrame:
    """The offline snapshot's compounds made only of ``system``'s elements (``"Li-Ti-O"``: its
    binaries and ternaries), one per composition (the lowest), as ``formula`` and
    ``formation_energy_per_atom``: demonstration labels for a campaign."""
    from alhelpers.data.formulas import elements_of
    from alhelpers.data.snapshot import load_snapshot
    from alhelpers.data.systems import canonical_system, system_elements

    els = set(system_elements(canonical_system(system)))
    snap = load_snapshot()
    inside = snap[snap["formula"].map(lambda f: len(elements_of(f)) >= 2 and elements_of(f) <= els)]
    if inside.empty:
        raise ValueError(f"the offline snapshot has no compound of {system}")
    return composition_labels(inside).rename(columns={"label": "formation_energy_per_atom"})


def replay_materials(labels: pd.DataFrame, root: str | os.PathLike, *, strategy: str, seed: int, n_init: int,
                     batch: int, rounds: int) -> pd.DataFrame:
    """A campaign on ``labels`` (:func:`composition_labels`) in the new folder ``root``: ``n_init``
    seeded compositions labelled, the rest candidates, ``rounds`` rounds of ``batch`` with the
    table oracle. Returns the ledger. Run again on the same folder, it adds only the rounds that
    are missing."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    forms = labels["formula"].to_numpy()
    init = np.sort(stream(seed, "campaign-init").choice(len(forms), size=n_init, replace=False))
    rest = np.setdiff1d(np.arange(len(forms)), init)
    files = {k: root / f"{k}.csv" for k in ("all", "known", "candidates")}
    write_csv(files["all"], labels.rename(columns={"label": "Ef"}))
    write_csv(files["known"], labels.iloc[init].rename(columns={"label": "Ef"}))
    write_csv(files["candidates"], pd.DataFrame({"formula": forms[rest]}))
    quiet = {"say": lambda _: None}
    camp = root / strategy
    ensure_materials_campaign(camp, files["known"], target="Ef", candidates=files["candidates"], **quiet)
    answered = int(pd.read_csv(camp / "ledger.csv")["round"].max()) + 1  # run again: only the rounds missing
    for _ in range(answered, rounds):
        next_materials(camp, batch=batch, strategy=strategy, seed=seed, oracle=f"table:{files['all']}", **quiet)
    return pd.read_csv(camp / "ledger.csv")


def found_on_hull(ledger: pd.DataFrame, stable: set[str], counts: Sequence[int]) -> dict[int, int]:
    """How many of the ``stable`` compositions the first ``n`` labels of the ledger hold, per n."""
    keys = ledger["key"].astype(str).tolist()
    return {int(n): sum(k in stable for k in keys[:n]) for n in counts}
