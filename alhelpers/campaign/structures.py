"""Track B campaigns: which of my candidate structures should I compute with DFT next?

``init`` reads the pool of candidate structures and the labelled structures (energies in eV,
forces in eV/Å) in any format ``ase.io`` reads. ``next`` trains the potential (``gm``: the
project's; ``mace``: a small MACE) on every label so far, from a seed derived from the campaign's
seed and the round, and picks the batch with a BMDAL method of the studies
(:func:`alhelpers.anymodel.select.select_structures`, default ``lcmd-feat-rp``); the structures go
to ``round-NN/to_label.extxyz`` with their pool index. ``add`` matches each returned frame to a
suggested structure by its atoms and positions and checks its labels. ``status`` gives, per
round, the energy error the GP(LL) uncertainty predicts for the candidates, recalibrated on the
errors of the earlier batches' own predictions — made before their labels existed — once labels
have come back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms

from alhelpers.al.seeding import stream
from alhelpers.calibration import predicted_mae, usable_recalibration
from alhelpers.campaign.folder import (
    Campaign,
    CampaignError,
    check_new_folder,
    check_next_arguments,
    create,
    identity,
    input_record,
    now,
    open_campaign,
    plan_round,
)
from alhelpers.files import atomic_write, sha256_file, write_csv
from alhelpers.structures import composition_matrix, same_structure

__all__ = ["MAX_FORCE", "add_structures", "init_structures", "next_structures", "status_structures"]

Say = Callable[[str], None]

POOL_FILE = "pool.extxyz"
LABELLED_FILE = "labelled.extxyz"
MODEL_FILE = "model.pt"
#: ``gm``: the project's potential and ``mace``: a small MACE, both from scratch each round;
#: ``chgnet``: the pretrained CHGNet, its energy reference refitted, fine-tuned each round; or the
#: path of a model file (``torch.save(model, path)``: MACE, the project's potential, any model
#: with an adapter), fine-tuned from its own weights each round.
MODELS = ("gm", "mace", "chgnet")
#: Members of the committee trained for the QBC methods (``maxdiag-qbc-e``/``-f``).
COMMITTEE = 3
#: eV/Å: a force component beyond this is refused (eV/Bohr or Hartree/Bohr mistakes, broken runs).
MAX_FORCE = 50.0
#: eV/atom: an energy whose per-atom residual from the labelled set's per-element fit exceeds
#: this (and 20 × the labelled set's own largest residual) is refused: Hartree, kJ/mol, eV/atom …
ENERGY_RESIDUAL = 1.0
#: Å: positions of a returned frame must match the suggested structure's to this.
POSITION_TOL = 1e-4


# --------------------------------------------------------------------------- reading


def _labelled_frames(path: str | os.PathLike, what: str) -> tuple[list[Atoms], np.ndarray, list[np.ndarray]]:
    """Frames with energies (eV) and forces (eV/Å); ``CampaignError`` naming the file, the frame and
    its line when one lacks them or is unusable (:func:`alhelpers.atomistic.data.user.labelled_frames`)."""
    from alhelpers.atomistic.data.user import labelled_frames

    try:
        frames, energies, forces = labelled_frames(path, require_forces=True)
    except (ValueError, FileNotFoundError) as err:
        raise CampaignError(f"the {what}: {err}") from None
    return frames, energies, forces


def _write_frames(path: Path, frames: Sequence[Atoms], energies: Sequence[float] | None = None,
                  forces: Sequence[np.ndarray] | None = None) -> Path:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    out = []
    for k, a in enumerate(frames):
        b = a.copy()
        b.calc = None
        if energies is not None and forces is not None:
            b.calc = SinglePointCalculator(b, energy=float(energies[k]), forces=np.asarray(forces[k]))
        out.append(b)
    return atomic_write(path, lambda tmp: write(tmp, out, format="extxyz"))


def _check_energies(frames: Sequence[Atoms], energies: np.ndarray, forces: Sequence[np.ndarray],
                    ref_frames: Sequence[Atoms], ref_energies: np.ndarray, name: str) -> None:
    """Refuse forces beyond :data:`MAX_FORCE` and energies far from the labelled set's per-element
    least-squares fit (wrong units), naming the frame."""
    for k, f in enumerate(forces):
        if np.abs(f).max() > MAX_FORCE:
            raise CampaignError(f"{name}: frame {k}: a force of {np.abs(f).max():.3g} eV/Å (> {MAX_FORCE:g}); are the "
                                "forces in eV/Å (not eV/Bohr or Hartree/Bohr) and the calculation converged?")
    species = sorted({int(z) for a in list(ref_frames) + list(frames) for z in a.numbers})
    A = composition_matrix(ref_frames, species)
    mu = np.linalg.lstsq(A, ref_energies, rcond=None)[0]
    n_ref = A.sum(1)
    own = np.abs(ref_energies - A @ mu) / n_ref
    limit = max(ENERGY_RESIDUAL, 20 * float(own.max()))
    B = composition_matrix(frames, species)
    resid = (energies - B @ mu) / B.sum(1)
    far = np.flatnonzero(np.abs(resid) > limit)
    if far.size:
        k = int(far[0])
        raise CampaignError(f"{name}: frame {k}: its energy {energies[k]:.6g} eV is {resid[k]:+.3g} eV/atom from what "
                            f"the labelled structures' per-element energies give (they agree to {own.max():.2g}); is it "
                            "the total energy in eV of the same method (not Hartree, kJ/mol or eV/atom)?")


# --------------------------------------------------------------------------- init


def init_structures(root: str | os.PathLike, pool: str | os.PathLike, labelled: str | os.PathLike | None, *,
                    model: str = "gm", epochs: int = 60, say: Say = print) -> Path:
    """Start a Track B campaign in the new folder ``root``; returns it. The pool's own labels, if
    it has any, stay hidden: only ``next --oracle pool`` reveals them. ``labelled`` None: no
    structure is labelled yet, for a model that exists before any label (``chgnet`` or a model
    file): the first ``next`` chooses on its pretrained features (:func:`initial_select`)."""
    from alhelpers.anymodel.select import read_structures

    root = check_new_folder(root)
    loaded = None
    if model not in MODELS:
        if not os.path.isfile(model):
            raise CampaignError(f"--model must be one of {MODELS} or a model file (torch.save(model, path)), got "
                                f"{model!r}")
        from alhelpers.anymodel.io import load_model
        from alhelpers.anymodel.select import as_adapter

        try:
            loaded = load_model(model)
            as_adapter(loaded)
        except (ValueError, TypeError, ImportError) as err:
            raise CampaignError(str(err)) from None
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise CampaignError(f"--epochs must be a whole number >= 1, got {epochs!r}")
    if labelled is None and (model if model in MODELS else "file") not in PRETRAINED:
        raise CampaignError(f"--model {model} is trained from scratch and needs labelled structures to start from: "
                            "give --labelled-structures, or start from a pretrained model (--model chgnet or a model "
                            "file), whose first batch is chosen before any label")
    frames, energies, forces = (_labelled_frames(labelled, "labelled structures") if labelled is not None
                                else ([], np.empty(0), []))
    try:
        pool_frames = read_structures(pool, "pool")
    except (ValueError, FileNotFoundError) as err:
        raise CampaignError(str(err)) from None
    if not pool_frames:
        raise CampaignError(f"the pool {Path(pool).name} holds no structure")
    from ase.data import chemical_symbols

    missing = sorted({chemical_symbols[int(z)] for a in pool_frames for z in a.numbers}
                     - {chemical_symbols[int(z)] for a in frames for z in a.numbers})
    if frames:  # a pretrained model started without labels knows every element already
        _check_energies(frames, energies, forces, frames, energies, Path(labelled).name)
        if missing:
            raise CampaignError(f"the pool has elements {missing} that no labelled structure has: the "
                                "potential cannot learn their energy; label at least one structure with each")
    root.mkdir(parents=True, exist_ok=True)
    model_record = {}
    if loaded is not None:
        import shutil

        atomic_write(root / MODEL_FILE, lambda tmp: shutil.copyfile(model, tmp))
        model_record, model = {"model_file": input_record(model)}, "file"
    labels = [(a.calc.results.get("energy"), a.calc.results.get("forces")) if a.calc is not None else (None, None)
              for a in pool_frames]
    has = all(e is not None and f is not None for e, f in labels)
    _write_frames(root / POOL_FILE, pool_frames, [e for e, _ in labels] if has else None,
                  [f for _, f in labels] if has else None)
    _write_frames(root / LABELLED_FILE, frames, energies, forces)
    rec = input_record(labelled) if labelled is not None else {"file": None, "sha256": None}
    ledger = pd.DataFrame({"key": [f"init:{k}" for k in range(len(frames))], "label": energies, "round": -1,
                           "origin": "initial", "file": rec["file"], "sha256": rec["sha256"], "time": now()},
                          columns=["key", "label", "round", "origin", "file", "sha256", "time"])
    create(root, {"track": "structures", "model": model, "epochs": epochs, "unit": "eV", "pool": input_record(pool),
                  "labelled": rec, "n_pool": len(pool_frames), "pool_has_labels": has, **model_record}, ledger)
    say(f"campaign {root}: {len(frames)} labelled structures, a pool of {len(pool_frames)} (model {model})")
    return root


# --------------------------------------------------------------------------- the labelled set


def _read(camp: Campaign, name: str):
    from ase.io import read

    try:
        return read(camp.root / name, index=":")
    except Exception as err:
        raise CampaignError(f"{camp.root / name} cannot be read ({err}); restore it from a backup") from None


def _labelled_set(camp: Campaign):
    """The labelled structures in ledger order (frames the ledger does not list — a killed
    ``add`` — are ignored)."""
    from alhelpers.structures import StructureSet

    ledger = camp.ledger()
    if not len(ledger):  # started without labels
        return StructureSet("campaign", [], np.empty(0), [])
    frames = _read(camp, LABELLED_FILE)[: len(ledger)]
    if len(frames) < len(ledger):
        raise CampaignError(f"{camp.root / LABELLED_FILE} has {len(frames)} structures but the ledger lists "
                            f"{len(ledger)}; restore it from a backup")
    return StructureSet("campaign", frames, [a.get_potential_energy() for a in frames],
                        [a.get_forces() for a in frames])


def _train_gm(camp: Campaign, train, species: Sequence[int], seed: int, cfg):
    from alhelpers.atomistic.train import fit_potential

    return fit_potential(train, None, cfg, species=species, seed=seed)[0]


def _train_mace(camp: Campaign, train, species: Sequence[int], seed: int, cfg):
    from alhelpers.anymodel.mace import small_mace
    from alhelpers.anymodel.train import fit_adapter

    mace = small_mace(train.structures, train.energy, train.forces, species=species, seed=seed)
    return fit_adapter(mace, train, None, cfg, seed=seed)[0]


def _train_chgnet(camp: Campaign, train, species: Sequence[int], seed: int, cfg):
    """The pretrained CHGNet, its per-element reference refitted to the labels, fine-tuned."""
    from dataclasses import replace

    from alhelpers.anymodel.chgnet import refit_reference
    from alhelpers.anymodel.train import fit_adapter
    from alhelpers.atomistic.config import CHGNET_TRAIN

    adapter = _pretrained_chgnet(camp)
    refit_reference(adapter, train.structures, train.energy)
    return fit_adapter(adapter, train, None, replace(CHGNET_TRAIN, max_epochs=cfg.max_epochs,
                                                     patience=cfg.max_epochs), seed=seed)[0]


def _train_file(camp: Campaign, train, species: Sequence[int], seed: int, cfg):
    """The user's model, fine-tuned from its own weights."""
    from alhelpers.anymodel.select import as_adapter
    from alhelpers.anymodel.train import fit_adapter

    return fit_adapter(as_adapter(_model_file(camp)), train, None, cfg, seed=seed)[0]


def _pretrained_chgnet(camp: Campaign):
    from alhelpers.anymodel.chgnet import pretrained_chgnet

    return pretrained_chgnet()


def _model_file(camp: Campaign):
    from alhelpers.anymodel.io import load_model

    return load_model(camp.root / MODEL_FILE)


#: The models that exist before any label, by ``model`` setting: a campaign of them may start with
#: nothing labelled (the pretrained CHGNet; the user's model file as it is).
PRETRAINED = {"chgnet": _pretrained_chgnet, "file": _model_file}


#: How each kind of ``model`` setting is trained on the labelled structures, every round.
TRAINERS = {"gm": _train_gm, "mace": _train_mace, "chgnet": _train_chgnet, "file": _train_file}


def _train(camp: Campaign, train, species: Sequence[int], seed: int):
    from alhelpers.anymodel.train import TrainConfig

    cfg = TrainConfig(max_epochs=int(camp.settings["epochs"]), patience=int(camp.settings["epochs"]))
    return TRAINERS[camp.settings["model"]](camp, train, species, seed, cfg)


class _PoolLabels:
    """The pool oracle: the labels the pool file carries, revealed for the structures asked."""

    origin = "oracle:pool"

    def __init__(self, camp: Campaign) -> None:
        if not camp.settings.get("pool_has_labels"):
            raise CampaignError("--oracle pool needs a pool file with energies and forces; this pool has none "
                                "(use --oracle tblite, or compute the labels and add them)")
        self.frames = _read(camp, POOL_FILE)
        self.path = camp.root / POOL_FILE

    def label(self, idx: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        return (np.array([self.frames[i].get_potential_energy() for i in idx]),
                [self.frames[i].get_forces() for i in idx])


class _CalculatorLabels:
    """An :class:`~alhelpers.atomistic.oracle.Oracle` (e.g. a ``CalculatorOracle`` of any ASE
    calculator; ``tblite``: GFN2-xTB with its isolated-atom references) on the structures asked."""

    def __init__(self, camp: Campaign, oracle=None) -> None:
        self.frames = _read(camp, POOL_FILE)
        if oracle is None:
            from alhelpers.atomistic.oracle import tblite_oracle

            oracle = tblite_oracle(elements=sorted({s for a in self.frames for s in a.get_chemical_symbols()}))
        self.oracle = oracle
        self.origin = f"oracle:{getattr(oracle, 'name', type(oracle).__name__)}"
        self.path = camp.root / POOL_FILE

    def label(self, idx: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.oracle.label([self.frames[i] for i in idx])


def _oracle(camp: Campaign, spec):
    """``"pool"``, ``"tblite"``, or an oracle object (anything with ``label(structures)``)."""
    if spec == "pool":
        return _PoolLabels(camp)
    if spec == "tblite":
        return _CalculatorLabels(camp)
    if not isinstance(spec, str) and callable(getattr(spec, "label", None)):
        return _CalculatorLabels(camp, spec)
    raise CampaignError(f"unknown oracle {spec!r} for a structures campaign: use pool (the pool file's own labels), "
                        "tblite (GFN2-xTB) or, from Python, an oracle such as CalculatorOracle(lambda: calculator)")


# --------------------------------------------------------------------------- next


def _gp_sigma(model, candidates: Sequence[Atoms], labelled: Sequence[Atoms], seed: int) -> np.ndarray:
    """GP(LL) posterior σ of each candidate's energy per atom (the studies' uncertainty)."""
    from alhelpers.anymodel.select import (
        adapter_uncertainty,
        as_adapter,
        parse_any_method,
    )

    sigma = adapter_uncertainty(parse_any_method("maxdet-gp-ll"), as_adapter(model), candidates, labelled,
                                rp_dim=512, seed=seed)
    return sigma / np.array([len(a) for a in candidates])


def _energies(model, frames: Sequence[Atoms]) -> np.ndarray:
    from alhelpers.anymodel.select import as_adapter
    from alhelpers.anymodel.train import predict_adapter

    return np.asarray(predict_adapter(as_adapter(model), list(frames), forces=False)[0], dtype=np.float64)


def _cal_pairs(camp: Campaign) -> tuple[np.ndarray, np.ndarray]:
    """(signed error per atom, σ per atom) of every earlier batch's predictions, once labelled."""
    ledger = camp.ledger()
    errs, sigmas = [], []
    for r in camp.rounds():
        table = pd.read_csv(camp.round_dir(r) / "to_label.csv")
        back = ledger[ledger["round"] == r].set_index("key")["label"]
        for row in table.itertuples():  # a batch chosen before any label has no σ: not a calibration pair
            if str(row.pool_index) in back.index and np.isfinite(row.sigma_per_atom):
                errs.append((row.predicted_energy - back[str(row.pool_index)]) / row.n_atoms)
                sigmas.append(row.sigma_per_atom)
    return np.array(errs), np.array(sigmas)


def next_structures(root: str | os.PathLike, *, batch: int, strategy: str = "lcmd-feat-rp", seed: int = 0,
                    oracle: object = None, replace: bool = False, say: Say = print) -> pd.DataFrame:
    """Suggest the next ``batch`` pool structures (``round-NN/to_label.extxyz`` and ``.csv``) and
    return their table; with ``oracle`` (``"pool"``, ``"tblite"``, or from Python any oracle, e.g.
    :class:`~alhelpers.atomistic.oracle.CalculatorOracle` of an ASE calculator) label them at once."""
    import torch

    from alhelpers.anymodel.select import (
        check_label_free,
        initial_select,
        parse_any_method,
        select_structures,
    )
    from alhelpers.provenance import code_id

    check_next_arguments(batch, seed, strategy, parse_any_method)
    with open_campaign(root, track="structures") as camp:
        orc = _oracle(camp, oracle) if oracle else None
        params, ledger_sha256 = {"batch": batch, "strategy": strategy, "seed": seed}, camp.ledger_hash()
        ident = identity(code=code_id(), ledger=ledger_sha256, pool=sha256_file(camp.root / POOL_FILE),
                         params=params, model=camp.settings["model"], epochs=camp.settings["epochs"],
                         model_file=camp.settings.get("model_file", {}).get("sha256"))
        rnd, done = plan_round(camp, ident, replace)
        if done:
            say(f"round {rnd}: already suggested with these labels and parameters → {camp.round_dir(rnd).name}/")
            table = pd.read_csv(camp.round_dir(rnd) / "to_label.csv")
        else:
            pool = _read(camp, POOL_FILE)
            taken = {int(k) for k in camp.ledger()["key"] if not str(k).startswith("init:")}
            taken |= {int(k) for k in camp.suggested_rounds()}
            free = np.array([i for i in range(len(pool)) if i not in taken], dtype=np.int64)
            if free.size == 0:
                raise CampaignError("every pool structure has been suggested or labelled: the campaign has run out "
                                    "of candidates")
            train = _labelled_set(camp)
            cands = [pool[i] for i in free]
            if not len(train):  # nothing labelled yet: the pretrained model's features choose
                try:
                    check_label_free(strategy)
                except ValueError as err:
                    raise CampaignError(f"{err} (--strategy)") from None
                model = PRETRAINED[camp.settings["model"]](camp)
                chosen = initial_select(strategy, model, cands, min(batch, len(cands)), stream(seed, strategy, rnd))
                score, sigma = np.full(len(cands), np.nan), np.full(len(cands), np.nan)
            else:
                species = sorted({int(z) for a in pool for z in a.numbers} | set(train.species))
                model_seed = int(stream(seed, "model", rnd).integers(2**31))
                torch.manual_seed(model_seed)
                model = _train(camp, train, species, model_seed)
                committee = []
                if parse_any_method(strategy).kernel in ("qbc-e", "qbc-f"):  # the model and COMMITTEE − 1 others
                    committee = [model] + [_train(camp, train, species, model_seed + k) for k in range(1, COMMITTEE)]
                sel = select_structures(model, train.structures, cands, method=strategy,
                                        batch=min(batch, len(cands)), rng=stream(seed, strategy, rnd),
                                        committee=committee)
                chosen, score = sel.indices, sel.scores
                sigma = _gp_sigma(model, cands, train.structures, seed)
            e_pred = _energies(model, [cands[i] for i in chosen])
            table = pd.DataFrame({"rank": np.arange(1, len(chosen) + 1), "pool_index": free[chosen],
                                  "score": score[chosen], "n_atoms": [len(cands[i]) for i in chosen],
                                  "formula": [cands[i].get_chemical_formula() for i in chosen],
                                  "predicted_energy": e_pred, "sigma_per_atom": sigma[chosen]})
            frames = []
            for row in table.itertuples():
                a = pool[int(row.pool_index)].copy()
                a.info = {"pool_index": int(row.pool_index), "rank": int(row.rank), "score": float(row.score),
                          "method": strategy}
                frames.append(a)
            _write_frames(camp.round_dir(rnd) / "to_label.extxyz", frames)  # no labels
            table = pd.read_csv(write_csv(camp.round_dir(rnd) / "to_label.csv", table))  # as a rerun reads it
            err, sig = _cal_pairs(camp)
            recal = usable_recalibration(err, sig) if err.size >= 2 else None
            mae_pred = predicted_mae(sigma, recal=recal) if recal else float("nan")
            camp.save_suggestion(rnd, {
                "identity": ident, "round": rnd, "params": params, "code_id": code_id(), "ledger_sha256": ledger_sha256,
                "n_labelled": len(train), "n_candidates": int(free.size), "time": now(),
                "keys": [str(int(i)) for i in table["pool_index"]], "mae_pred": mae_pred,
                "model": camp.settings["model"],
                "model_file_sha256": camp.settings.get("model_file", {}).get("sha256")})
            say(f"round {rnd}: {strategy} chose {len(table)} of {free.size} pool structures, trained on {len(train)} "
                f"→ {camp.round_dir(rnd).name}/to_label.extxyz")
        if orc is not None and not (camp.ledger()["round"] == rnd).any():
            idx = [int(i) for i in table["pool_index"]]
            energies, forces = orc.label(idx)
            _append_labels(camp, [orc.frames[i] for i in idx], energies, forces, idx, rnd, orc.origin,
                           {"file": str(orc.path), "sha256": sha256_file(orc.path)})
            say(f"round {rnd}: the oracle labelled {len(idx)} structures")
        return table


def _append_labels(camp: Campaign, frames: Sequence[Atoms], energies: np.ndarray, forces: Sequence[np.ndarray],
                   idx: Sequence[int], rnd: int | Sequence[int], origin: str, rec: dict) -> None:
    """The labelled structures file first (a killed command leaves frames the ledger ignores),
    then the ledger."""
    old = _labelled_set(camp)
    _write_frames(camp.root / LABELLED_FILE, list(old.structures) + list(frames), list(old.energy) + list(energies),
                  list(old.forces) + list(forces))
    camp.append(pd.DataFrame({"key": [str(int(i)) for i in idx], "label": energies, "round": rnd, "origin": origin,
                              "file": rec["file"], "sha256": rec["sha256"], "time": now()}))


# --------------------------------------------------------------------------- add


def _match(a: Atoms, pool: Sequence[Atoms], among: Sequence[int]) -> int | None:
    return next((int(i) for i in among if same_structure(a, pool[i], atol=POSITION_TOL)), None)


def add_structures(root: str | os.PathLike, path: str | os.PathLike, *, any_: bool = False, say: Say = print) -> int:
    """Add the labelled frames of ``path`` (energies, forces) to the campaign; returns how many.
    Each frame must be a suggested pool structure (its atoms and positions, to 10⁻⁴ Å; any pool
    structure with ``any_``), labelled once, with plausible energy and forces; nothing is written
    when one is refused."""
    name = Path(path).name
    with open_campaign(root, track="structures") as camp:
        frames, energies, forces = _labelled_frames(path, "labels")
        pool = _read(camp, POOL_FILE)
        suggested = {int(k): r for k, r in camp.suggested_rounds().items()}
        among = list(range(len(pool))) if any_ else sorted(suggested)
        idx = []
        for k, a in enumerate(frames):
            i = _match(a, pool, among)
            if i is None:
                other = _match(a, pool, range(len(pool))) if not any_ else None
                why = (f"pool structure {other}, which no round suggested (pass --any to add it anyway)"
                       if other is not None else "no pool structure: its atoms or positions differ (to 1e-4 Å) from "
                       "every suggested one; label the structures as suggested, without relaxing them")
                raise CampaignError(f"{name}: frame {k} ({a.get_chemical_formula()}) matches {why}")
            idx.append(i)
        seen: dict[int, int] = {}
        for k, i in enumerate(idx):
            if i in seen:
                raise CampaignError(f"{name}: frames {seen[i]} and {k} are both pool structure {i}; give each once")
            seen[i] = k
        have = {int(k) for k in camp.ledger()["key"] if not str(k).startswith("init:")}
        again = [i for i in idx if i in have]
        if again:
            raise CampaignError(f"{name}: pool structure(s) {again[:5]} are labelled already; the ledger keeps the first "
                                "label. Remove them from the file")
        train = _labelled_set(camp)  # none yet (a campaign started without labels): their own per-element fit
        ref = (train.structures, train.energy) if len(train) else (frames, energies)
        _check_energies(frames, energies, forces, *ref, name)
        last = max(camp.rounds(), default=-1)
        _append_labels(camp, [pool[i] for i in idx], energies, forces, idx, [suggested.get(i, last) for i in idx],
                       "add", input_record(path))
        say(f"added {len(idx)} labelled structures from {name} to {camp.root}/ledger.csv")
        return len(idx)


# --------------------------------------------------------------------------- status


def status_structures(root: str | os.PathLike) -> pd.DataFrame:
    """One row per round: strategy, structures trained on, suggested, labels back and ``mae_pred``
    (eV/atom: the energy error the recalibrated GP(LL) σ predicts for the candidates; NaN until a
    batch has come back)."""
    with open_campaign(root, track="structures") as camp:
        ledger = camp.ledger()
        rows = [{"round": r, "strategy": s["params"]["strategy"], "trained_on": s["n_labelled"],
                 "suggested": len(s["keys"]), "labels_back": int((ledger["round"] == r).sum()),
                 "mae_pred": s["mae_pred"], "chosen": ", ".join(s["keys"])}
                for r, s in ((r, camp.suggestion(r)) for r in camp.rounds())]
        return pd.DataFrame(rows, columns=["round", "strategy", "trained_on", "suggested", "labels_back", "mae_pred",
                                           "chosen"])
