"""Track A campaigns: which of my candidate compositions should I compute next?

``init`` reads the labelled table (formula + formation energy in eV/atom) and the candidates
(a table of formulas, or every charge-balanced composition of a chemical system,
:func:`alhelpers.campaign.candidates.charge_balanced`), and computes the Magpie descriptors of
all of them once. ``next`` trains the studies' model on every label so far — the 5-member
ensemble with its σ recalibrated by cross-validation (``ALConfig.calibration = "cv"``) — and picks
the batch with any strategy of the studies (``random``, ``uncertainty``, ``diversity``, ``hybrid``,
the BMDAL names, ``stability``, ``stability-ei``). ``add`` brings the computed labels back, after
checking them. ``status`` says where the campaign stands.

A composition is the unit: labels of polymorphs of one composition are reduced to the lowest
(the ground state the convex hull sees).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alhelpers.al.seeding import stream
from alhelpers.calibration import Recalibration, cv_folds, predicted_mae, usable_recalibration
from alhelpers.campaign.folder import (CAMPAIGN_FILE, CampaignError, check_new_folder, check_next_arguments, create, identity,
                                       input_record, now, open_campaign, plan_round)
from alhelpers.files import sha256_file, write_csv, write_parquet

__all__ = ["MAX_ABS_LABEL", "TableOracle", "add_materials", "ensure_materials_campaign", "init_materials",
           "next_materials", "read_labels", "status_materials"]

Say = Callable[[str], None]

#: eV/atom: formation energies outside ±5 are refused (the studies' filter): a value there is
#: almost always eV per formula unit or a total energy.
MAX_ABS_LABEL = 5.0
#: Labels of one composition that differ by more than this (eV/atom) conflict.
CONFLICT_TOL = 1e-6
DESCRIPTOR = "magpie"
FEATURES_FILE = "features.parquet"
CANDIDATES_FILE = "candidates.csv"


# --------------------------------------------------------------------------- reading labels


def _lines(path: Path, rows: Sequence[int]) -> str:
    where = "row" if path.suffix.lower() in (".parquet", ".pq") else "line"
    shown = [str(r if where == "row" else r + 2) for r in rows[:5]]
    return f"{where}{'s' if len(rows) > 1 else ''} {', '.join(shown)}{' …' if len(rows) > 5 else ''}"


def read_labels(path: str | os.PathLike, *, target: str, formula: str = "formula",
                polymorphs: str = "refuse") -> pd.DataFrame:
    """A labels table as ``formula`` (reduced) and ``label`` (eV/atom), checked.

    ``CampaignError`` naming the file and its lines for: a missing or non-numeric value, a value
    outside ±:data:`MAX_ABS_LABEL` eV/atom (eV per formula unit or a total energy, most likely),
    and — with ``polymorphs="refuse"`` — one composition with different values; with
    ``polymorphs="lowest"`` the lowest is kept (the initial table may hold polymorphs).
    """
    import warnings

    from alhelpers.data import read_user_table
    from alhelpers.data.formulas import reduced_formula

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-numeric values: refused below, naming the lines
            raw = read_user_table(path, target=target, formula=formula)
    except (ValueError, FileNotFoundError) as err:
        raise CampaignError(str(err)) from None
    y = raw["formation_energy_per_atom"].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(y)).tolist()
    if bad:
        raise CampaignError(f"{path.name}: {_lines(path, bad)}: the {target!r} value is missing or not a number; "
                            "every label needs a formation energy in eV/atom")
    far = np.flatnonzero(np.abs(y) > MAX_ABS_LABEL).tolist()
    if far:
        i = far[0]
        raise CampaignError(
            f"{path.name}: {_lines(path, far)}: {raw['formula'].iloc[i]} = {y[i]:g} lies outside the plausible range "
            f"of formation energies (|E_f| <= {MAX_ABS_LABEL:g} eV/atom). Is it eV per formula unit or a total "
            "energy? Give eV per atom: divide by the atoms of the formula unit (TiO2: 3)")
    df = pd.DataFrame({"formula": [reduced_formula(f) for f in raw["formula"]], "label": y, "line": np.arange(len(y))})
    spread = df.groupby("formula")["label"].agg(lambda v: float(v.max() - v.min()))
    conflicts = spread[spread > CONFLICT_TOL]
    if len(conflicts) and polymorphs == "refuse":
        f = conflicts.index[0]
        rows = df.loc[df["formula"] == f, "line"].tolist()
        values = ", ".join(f"{v:g}" for v in df.loc[df["formula"] == f, "label"])
        raise CampaignError(f"{path.name}: {_lines(path, rows)}: {f} has different values ({values} eV/atom); give "
                            f"one per composition (for polymorphs: the lowest, the ground state); {len(conflicts)} "
                            "composition(s) conflict")
    out = df.sort_values(["formula", "label"]).groupby("formula", as_index=False).first()[["formula", "label"]]
    out.attrs["rows_read"] = len(df)
    return out


# --------------------------------------------------------------------------- oracle


class TableOracle:
    """Labels looked up in a table (formula, target): a campaign replayed without a human."""

    def __init__(self, path: str | os.PathLike, *, target: str, formula: str = "formula") -> None:
        self.path = Path(path)
        labels = read_labels(self.path, target=target, formula=formula, polymorphs="lowest")
        self.labels = dict(zip(labels["formula"], labels["label"]))
        self.origin = f"oracle:table:{self.path.name}"
        self.sha256 = sha256_file(self.path)

    def label(self, formulas: Sequence[str]) -> np.ndarray:
        missing = [f for f in formulas if f not in self.labels]
        if missing:
            raise CampaignError(f"the oracle table {self.path.name} has no label for {missing[:5]}; it can only "
                                "replay compositions it holds")
        return np.array([self.labels[f] for f in formulas], dtype=np.float64)


def parse_oracle(spec: str, *, target: str) -> TableOracle:
    """``table:FILE`` → :class:`TableOracle`; anything else is refused naming the forms."""
    kind, _, arg = spec.partition(":")
    if kind == "table" and arg:
        return TableOracle(arg, target=target)
    raise CampaignError(f"unknown oracle {spec!r} for a materials campaign: use table:FILE (a table with the "
                        f"formula and {target!r} columns)")


# --------------------------------------------------------------------------- features


def _features(root: Path) -> pd.DataFrame:
    from alhelpers.files import read_parquet

    return read_parquet(root / FEATURES_FILE, todo="Delete it: the next command recomputes it.").set_index("formula")


def _ensure_features(root: Path, formulas: Sequence[str]) -> pd.DataFrame:
    """The descriptor rows of ``formulas``, computing (and storing) the ones not yet there."""
    from alhelpers.formation.features import magpie_features

    have = _features(root) if (root / FEATURES_FILE).exists() else None
    new = sorted(set(formulas) - (set(have.index) if have is not None else set()))
    if new:
        rows = magpie_features(new).assign(formula=new).set_index("formula")
        have = rows if have is None else pd.concat([have, rows])
        write_parquet(root / FEATURES_FILE, have.reset_index())
    assert have is not None
    return have.loc[list(formulas)]


# --------------------------------------------------------------------------- init


def init_materials(root: str | os.PathLike, labelled: str | os.PathLike, *, target: str,
                   formula_column: str = "formula", candidates: str | os.PathLike | None = None,
                   candidate_column: str | None = None, chemsys: str | None = None, max_atoms: int = 8,
                   say: Say = print) -> Path:
    """Start a Track A campaign in the new folder ``root``; returns it.

    Candidates come from ``candidates`` (a table with ``candidate_column``, default
    ``formula_column``) or from ``chemsys`` (``"Li-Fe-O"``: every charge-balanced composition up to
    ``max_atoms`` atoms); compositions already labelled are removed. Every input is checked before
    anything is written.
    """
    from alhelpers.campaign.candidates import charge_balanced
    from alhelpers.data.formulas import reduced_formula
    from alhelpers.data.table import read_formulas

    root = check_new_folder(root)
    if (candidates is None) == (chemsys is None):
        raise CampaignError("give the candidates either as a table (--candidates TABLE) or as a chemical system "
                            "(--chemsys Li-Fe-O --max-atoms 8), one of the two")
    labels = read_labels(labelled, target=target, formula=formula_column, polymorphs="lowest")
    try:
        if candidates is not None:
            cands = read_formulas(candidates, formula=candidate_column or formula_column)
            source = {"candidates": input_record(candidates)}
        else:
            cands = charge_balanced(str(chemsys).split("-"), max_atoms)
            source = {"chemsys": str(chemsys), "max_atoms": int(max_atoms)}
    except (ValueError, FileNotFoundError) as err:
        raise CampaignError(str(err)) from None
    cands = list(dict.fromkeys(reduced_formula(f) for f in cands))
    known = set(labels["formula"])
    cands = [f for f in cands if f not in known]
    if not cands:
        raise CampaignError("no candidate is left once the labelled compositions are removed: give other candidates")
    n_poly = labels.attrs["rows_read"] - len(labels)
    root.mkdir(parents=True, exist_ok=True)
    _ensure_features(root, list(labels["formula"]) + cands)
    write_csv(root / CANDIDATES_FILE, pd.DataFrame({"formula": cands}))
    rec = input_record(labelled)
    ledger = pd.DataFrame({"key": labels["formula"], "label": labels["label"], "round": -1, "origin": "initial",
                           "file": rec["file"], "sha256": rec["sha256"], "time": now()})
    create(root, {"track": "materials", "target": target, "formula_column": formula_column, "unit": "eV/atom",
                  "descriptor": DESCRIPTOR, "labelled": rec, **source}, ledger)
    say(f"campaign {root}: {len(labels)} labelled compositions"
        + (f" ({n_poly} polymorph rows reduced to the lowest)" if n_poly > 0 else "")
        + f", {len(cands)} candidates" + (f" (charge-balanced {chemsys} up to {max_atoms} atoms)" if chemsys else ""))
    return root


def ensure_materials_campaign(root: str | os.PathLike, labelled: str | os.PathLike, *, target: str,
                              say: Say = print, **init_kw) -> Path:
    """:func:`init_materials`, or the campaign already in ``root`` when it was started from the
    same labelled table (same sha256), target and candidates (a notebook run again); a campaign
    of other inputs there is refused, naming what differs."""
    root = Path(root)
    if not (root / CAMPAIGN_FILE).exists():
        return init_materials(root, labelled, target=target, say=say, **init_kw)
    with open_campaign(root, track="materials") as camp:
        s = camp.settings
        want = {"labelled table": sha256_file(labelled), "target": target,
                "candidates": (sha256_file(init_kw["candidates"]) if init_kw.get("candidates") else
                               f"{init_kw.get('chemsys')} up to {init_kw.get('max_atoms', 8)} atoms")}
        have = {"labelled table": s["labelled"]["sha256"], "target": s["target"],
                "candidates": (s["candidates"]["sha256"] if "candidates" in s else
                               f"{s.get('chemsys')} up to {s.get('max_atoms')} atoms")}
        differ = [k for k in want if want[k] != have[k]]
        if differ:
            raise CampaignError(f"{root} holds a campaign started from other inputs ({', '.join(differ)} differ); "
                                "give this one another name, or delete that folder")
        say(f"campaign {root}: continued ({len(camp.ledger())} labels, {len(camp.rounds())} round(s) so far)")
    return root


# --------------------------------------------------------------------------- next


def _model_round(X_l: np.ndarray, y_l: np.ndarray, X_c: np.ndarray, seed: int, rnd: int):
    """The studies' model on the labels so far: the ensemble, its σ recalibration (3-fold
    cross-validation ensembles, trained in the same stacked computation), the candidates'
    predictions."""
    from alhelpers.formation.config import ALConfig
    from alhelpers.formation.loop import held_out_pairs
    from alhelpers.formation.models import fit_ensembles

    cfg = ALConfig()
    folds = cv_folds(len(y_l), cfg.cv_folds, stream(seed, "cv", rnd))
    rows = [np.arange(len(y_l))] + [tr for tr, _ in folds]
    models = fit_ensembles([X_l[r] for r in rows], [y_l[r] for r in rows], cfg.model,
                           seeds=[int(stream(seed, "model", rnd).integers(2**31))] * len(rows))
    err, sigma = held_out_pairs([(h, m) for (_, h), m in zip(folds, models[1:])], X_l, y_l)
    recal = usable_recalibration(err, sigma) or Recalibration()
    mean, var = models[0].predict(X_c)
    return models[0], recal, mean, np.sqrt(np.maximum(var, 0.0)), cfg


def next_materials(root: str | os.PathLike, *, batch: int, strategy: str = "stability", seed: int = 0,
                   oracle: str | None = None, replace: bool = False, say: Say = print) -> pd.DataFrame:
    """Suggest the next ``batch`` compositions (``round-NN/suggested.csv``) and return them.

    With ``oracle`` (``table:FILE``) their labels are looked up and added at once. Running it
    again with the same labels and parameters returns the same round (nothing recomputed).
    """
    from alhelpers.formation.hull import below_hull_probability, expected_hull_improvement
    from alhelpers.formation.loop import hull_inputs, query_batch
    from alhelpers.provenance import code_id
    from alhelpers.select import get_strategy

    check_next_arguments(batch, seed, strategy, get_strategy)
    with open_campaign(root, track="materials") as camp:
        orc = parse_oracle(oracle, target=camp.settings["target"]) if oracle else None
        ledger = camp.ledger()
        params, ledger_sha256 = {"batch": batch, "strategy": strategy, "seed": seed}, camp.ledger_hash()
        ident = identity(code=code_id(), ledger=ledger_sha256, candidates=sha256_file(camp.root / CANDIDATES_FILE),
                         params=params)
        rnd, done = plan_round(camp, ident, replace)
        if done:
            say(f"round {rnd}: already suggested with these labels and parameters → {camp.round_dir(rnd).name}/")
            table = pd.read_csv(camp.round_dir(rnd) / "suggested.csv")
        else:
            labelled = ledger["key"].tolist()
            taken = set(labelled) | set(camp.suggested_rounds())
            cands = [f for f in pd.read_csv(camp.root / CANDIDATES_FILE)["formula"] if f not in taken]
            if not cands:
                raise CampaignError("every candidate has been suggested or labelled: the campaign has run out of "
                                    "candidates")
            feats = _ensure_features(camp.root, labelled + cands)
            X = feats.to_numpy(dtype=np.float64)
            X_l, X_c, y_l = X[: len(labelled)], X[len(labelled):], ledger["label"].to_numpy(dtype=np.float64)
            model, recal, mean, sigma, cfg = _model_round(X_l, y_l, X_c, seed, rnd)
            hull = hull_inputs(labelled, y_l, cands, mean, sigma, recal)
            pos = query_batch(strategy, model, X_c, X_l, sigma**2, batch=min(batch, len(cands)),
                              rng=stream(seed, strategy, rnd), hybrid_alpha=cfg.hybrid_alpha, hull=hull)
            every = pd.DataFrame({
                "formula": cands, "predicted": mean, "sigma": sigma, "sigma_cal": hull.sigma,
                "hull": hull.hull, "above_hull": mean - hull.hull,
                "p_below_hull": below_hull_probability(mean, hull.sigma, hull.hull),
                "expected_improvement": expected_hull_improvement(mean, hull.sigma, hull.hull)})
            every["rank"] = 0
            every.loc[pos, "rank"] = np.arange(1, len(pos) + 1)
            table = every.iloc[pos].reset_index(drop=True)
            write_csv(camp.round_dir(rnd) / "candidates.csv", every)
            table = pd.read_csv(write_csv(camp.round_dir(rnd) / "suggested.csv", table))  # as a rerun reads it
            camp.save_suggestion(rnd, {
                "identity": ident, "round": rnd, "params": params, "code_id": code_id(), "ledger_sha256": ledger_sha256,
                "n_labelled": len(labelled), "n_candidates": len(cands), "time": now(),
                "keys": table["formula"].tolist(), "sigma_scale": recal.scale, "sigma_floor": recal.floor,
                "mae_pred": predicted_mae(sigma, recal=recal)})
            say(f"round {rnd}: {strategy} chose {len(table)} of {len(cands)} candidates, trained on {len(labelled)} "
                f"labels → {camp.round_dir(rnd).relative_to(camp.root.parent)}/suggested.csv")
        if orc is not None and not (camp.ledger()["round"] == rnd).any():
            keys = table["formula"].tolist()
            camp.append(pd.DataFrame({"key": keys, "label": orc.label(keys), "round": rnd, "origin": orc.origin,
                                      "file": str(orc.path), "sha256": orc.sha256, "time": now()}))
            say(f"round {rnd}: the oracle labelled {len(keys)} compositions")
        return table


# --------------------------------------------------------------------------- add


def add_materials(root: str | os.PathLike, path: str | os.PathLike, *, target: str | None = None,
                  formula_column: str | None = None, any_: bool = False, say: Say = print) -> int:
    """Add the labels of ``path`` to the ledger; returns how many. Every label is checked first
    (and nothing is written when one is refused): formula, number, range, one value per
    composition, not labelled already, and suggested by a round (unless ``any_``)."""
    with open_campaign(root, track="materials") as camp:
        target = target or camp.settings["target"]
        labels = read_labels(path, target=target, formula=formula_column or camp.settings["formula_column"])
        ledger = camp.ledger()
        again = labels[labels["formula"].isin(set(ledger["key"]))]
        if len(again):
            raise CampaignError(f"{Path(path).name}: {len(again)} composition(s) are labelled already "
                                f"({', '.join(again['formula'][:5])}); the ledger keeps the first label. Remove them "
                                "from the file")
        suggested = camp.suggested_rounds()
        unknown = [f for f in labels["formula"] if f not in suggested]
        if unknown and not any_:
            raise CampaignError(f"{Path(path).name}: {len(unknown)} composition(s) were never suggested "
                                f"({', '.join(unknown[:5])}); check the formulas, or pass --any to add them anyway")
        if unknown:
            _ensure_features(camp.root, unknown)
        last = max(camp.rounds(), default=-1)
        rec = input_record(path)
        camp.append(pd.DataFrame({"key": labels["formula"], "label": labels["label"],
                                  "round": [suggested.get(f, last) for f in labels["formula"]], "origin": "add",
                                  "file": rec["file"], "sha256": rec["sha256"], "time": now()}))
        say(f"added {len(labels)} labels from {Path(path).name} to {camp.root}/ledger.csv")
        return len(labels)


# --------------------------------------------------------------------------- status


def status_materials(root: str | os.PathLike) -> pd.DataFrame:
    """One row per round: strategy, labels trained on, suggested, labels back, the calibrated
    predicted error on the candidates (``mae_pred``, eV/atom: the studies' stopping rule) and the
    compounds on the hull of everything labelled after that round's labels."""
    from alhelpers.formation.hull import on_hull

    with open_campaign(root, track="materials") as camp:
        ledger = camp.ledger()
        rows = []
        for r in camp.rounds():
            s = camp.suggestion(r)
            upto = ledger[ledger["round"] <= r]
            stable = on_hull(upto["key"].tolist(), upto["label"].to_numpy())
            rows.append({"round": r, "strategy": s["params"]["strategy"], "trained_on": s["n_labelled"],
                         "suggested": len(s["keys"]), "labels_back": int((ledger["round"] == r).sum()),
                         "mae_pred": s["mae_pred"], "stable_found": int(stable.sum()),
                         "chosen": ", ".join(s["keys"])})
        return pd.DataFrame(rows, columns=["round", "strategy", "trained_on", "suggested", "labels_back", "mae_pred",
                                           "stable_found", "chosen"])
