"""Track B's notebook stages: what notebook 07 does, as functions notebook 08 can call too.

:func:`potentials_stage` runs one (system, batch, seed) and writes its rows and config where
notebook 08 reads them; :func:`ensure_potential_runs` runs notebook 07's defaults when a results
folder has none yet (notebook 08 opened first, e.g. Colab "Run All" on a fresh runtime).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd

from alhelpers.atomistic.al import run_potentials
from alhelpers.atomistic.config import (
    NOTEBOOK_STRATEGIES,
    PRETRAINED,
    PotentialsConfig,
    resolve_strategies,
    run_label,
)
from alhelpers.atomistic.oracle import Oracle
from alhelpers.atomistic.summary import found_runs
from alhelpers.files import write_parquet
from alhelpers.layout import Layout
from alhelpers.provenance import code_id
from alhelpers.structures import StructureSet

__all__ = ["ensure_potential_runs", "load_potential_data", "potentials_config", "potentials_stage"]

Say = Callable[[str], None]


def load_potential_data(system: str, *, data_file: str = "", energy_key: str = "", forces_key: str = "",
                        energy_unit: str = "eV", say: Say = print) -> StructureSet:
    """The structures of ``system``; TiO2 and LMNTO are downloaded once when not on this machine.
    ``system="file"``: the labelled structures of ``data_file`` (any file ``ase.io`` reads;
    :func:`~alhelpers.atomistic.data.user.load_structure_file`, empty keys: the defaults)."""
    from alhelpers.atomistic import data

    if system == "file":
        if not data_file:
            raise ValueError('SYSTEM = "file" needs DATA = "path/to/structures.extxyz" (any file ase.io reads, with '
                             "energies and forces)")
        from alhelpers.atomistic.data.user import load_structure_file

        return load_structure_file(data_file, energy_key=energy_key or None, forces_key=forces_key or None,
                                   energy_unit=energy_unit)
    if data_file:
        raise ValueError(f'DATA = {data_file!r} is only read with SYSTEM = "file" (SYSTEM is {system!r})')
    try:
        return data.load_dataset(system)
    except FileNotFoundError as err:
        if system not in ("tio2", "lmnto"):
            raise
        say(f"{err}\n→ downloading it now")
        getattr(data, f"download_{system}")()
        return data.load_dataset(system)


def potentials_config(system: str, n_structures: int, *, seed: int = 0,
                      strategies: tuple[str, ...] | list[str] | str = NOTEBOOK_STRATEGIES, batch: int = 10,
                      n_init: int = 10, max_size: int = 100, epochs: int = 0, smoke: bool = False,
                      model: str = "gm", target_mae: float = 0.0, warm_start: bool | None = None,
                      init_method: str = "random", finetune_from: str = "pretrained",
                      freeze: bool = False) -> PotentialsConfig:
    """Notebook 07's config from its parameters (``smoke``: a tiny run of three rounds;
    ``strategies="study"``: the study's seven; ``warm_start`` None: the model's default, on for
    ``gm``, off for ``mace`` and ``chgnet``; ``init_method``: how the start set is chosen).

    A pretrained model (``chgnet``) is fine-tuned every round from its pretrained weights
    (``finetune_from="pretrained"``) or from the previous round's fine-tuned model (``"previous"``:
    warm continuation, checkpointed with each round so a resumed run is exact); ``freeze``: only
    its head (the readout MLP) is fine-tuned."""
    if finetune_from not in ("pretrained", "previous"):
        raise ValueError(f"FINETUNE_FROM must be 'pretrained' or 'previous', got {finetune_from!r}")
    if model in PRETRAINED:
        warm_start = finetune_from == "previous"
    elif finetune_from != "pretrained":
        raise ValueError(f"FINETUNE_FROM = {finetune_from!r} is for a pretrained model (MODEL in {PRETRAINED}); "
                         f"{model!r} trains from scratch (WARM_START decides whether it continues between rounds)")
    warm = {} if warm_start is None else {"warm_start": warm_start}
    warm["init_method"] = init_method
    strategies = resolve_strategies(strategies)
    if smoke:
        cfg = PotentialsConfig.smoke(system, seed=seed, strategies=strategies, batch=batch, max_size=4 + 2 * batch,
                                     model=model, target_mae=target_mae, **warm)
    else:
        cfg = PotentialsConfig.for_system(system, n_structures, seed=seed, strategies=strategies, n_init=n_init,
                                          batch=batch, max_size=max_size, model=model, target_mae=target_mae, **warm)
        if epochs:
            cfg = replace(cfg, train=replace(cfg.train, max_epochs=epochs))
    if freeze:
        cfg = replace(cfg, train=replace(cfg.train, freeze=True), warm_train=replace(cfg.warm_train, freeze=True))
    return cfg


def potentials_stage(cfg: PotentialsConfig, layout: Layout, data: StructureSet, *, oracle: Oracle | None = None,
                     progress: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, Path]:
    """Run every strategy of ``cfg`` (checkpointed) and write the rows and the config next to them."""
    runs = run_potentials(data, cfg, oracle=oracle, checkpoints=layout.checkpoints / "potentials", progress=progress)
    path = write_parquet(layout.potentials_run(cfg.label, cfg.batch, cfg.seed), runs.assign(code_id=code_id()))
    cfg.save(path.with_suffix(".config.json"))
    return runs, path


def ensure_potential_runs(layout: Layout, system: str, *, smoke: bool = False, model: str = "gm",
                          say: Say = print) -> None:
    """Run notebook 07's defaults (seed 0) for ``system`` and ``model`` unless the folder holds results of it."""
    if found_runs(layout, run_label(system, model)):
        return
    if system.startswith("file-"):
        raise FileNotFoundError(f"no results of notebook 07 for {run_label(system, model)!r} in {layout.root}: run "
                                'notebook 07 with SYSTEM = "file" and DATA = your file first (or python -m '
                                "alhelpers.run potentials --system file --data PATH)")
    say(f"No results of notebook 07 for {run_label(system, model)!r} in {layout.root}: running it now with its "
        "defaults (seed 0; run notebook 07 for other seeds and settings).")
    data = load_potential_data(system, say=say)
    potentials_stage(potentials_config(system, len(data), smoke=smoke, model=model), layout, data)
