"""Campaigns: a user's labels and candidates in, the next batch out, their labels back in.

Track A on the Ti–O rows of the offline snapshot (a table oracle replays the hidden labels), Track
B on the project's GFN2-xTB aspirin set (the pool file's own labels are the oracle). The exact
batches are pinned: a replay is seeded, so the same labels, parameters and code give the same
suggestion in any process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alhelpers.campaign.__main__ import main
from alhelpers.campaign.candidates import charge_balanced
from alhelpers.campaign.folder import CampaignError
from alhelpers.campaign.materials import (
    add_materials,
    init_materials,
    next_materials,
    status_materials,
)
from alhelpers.data.formulas import reduced_formula

QUIET = {"say": lambda _: None}


def folder_state(root: Path) -> dict[str, str]:
    """Every file of a campaign folder and its sha256 (the lock file aside)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".campaign.lock"}


# --------------------------------------------------------------------------- Track A


@pytest.fixture
def tio(tmp_path, tio2_entries) -> dict[str, Path]:
    """Ti–O of the snapshot: every 8th composition (sorted) labelled, the rest candidates, and
    the whole table as the oracle."""
    tab = tio2_entries[["formula", "formation_energy_per_atom"]].rename(columns={"formation_energy_per_atom": "Ef"})
    forms = sorted({reduced_formula(f) for f in tab["formula"]})
    known = forms[::8]
    paths = {k: tmp_path / f"{k}.csv" for k in ("all", "known", "cands")}
    tab.to_csv(paths["all"], index=False)
    tab[tab["formula"].map(reduced_formula).isin(known)].to_csv(paths["known"], index=False)
    pd.DataFrame({"formula": [f for f in forms if f not in known]}).to_csv(paths["cands"], index=False)
    paths["dir"] = tmp_path / "campaign"
    return paths


def test_tio2_entries_are_the_ti_o_rows(tio):
    assert len(pd.read_csv(tio["all"])) == 148
    assert len(pd.read_csv(tio["cands"])) == 95  # 109 compositions, 14 labelled


REPLAYED = {  # 4 rounds of 4, seed 0, on the fixture's campaign
    "stability": [["EuTiClO3", "Nd2Ti2S2O5", "NaSmTiO4", "RbNaTiO3"], ["Sr2TiO4", "MgTiO3", "BaTiO3", "Tb2Ti2O7"],
                  ["Sm2Ti2O7", "Er2Ti2O7", "Nd2TiO5", "La2TiZnO6"], ["Gd2TiO5", "TiCdO3", "La2TiO5", "TiO2"]],
    "uncertainty": [["Y2TiO5", "Na2TiSiO5", "Y2Ti2O7", "Li2TiSiO5"], ["TiFe(BiO3)2", "BaTi2As2O", "Na2Ti2Sb2O", "TiAl2O5"],
                    ["Gd2TiO5", "Ti(SeO3)2", "Cs2Li2TiO4", "CsNaTiO3"], ["TiNb3O6", "Sr2Ti2As2OF2", "Sr2Ti2Sb2OF2", "TiO"]],
}


@pytest.mark.parametrize("strategy", sorted(REPLAYED))
def test_a_materials_campaign_replays_four_rounds_exactly(tio, strategy):
    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    oracle = pd.read_csv(tio["all"]).assign(red=lambda d: d["formula"].map(reduced_formula)).groupby("red")["Ef"].min()
    batches = [next_materials(tio["dir"], batch=4, strategy=strategy, seed=0, oracle=f"table:{tio['all']}", **QUIET)
               for _ in range(4)]
    assert [b["formula"].tolist() for b in batches] == REPLAYED[strategy]
    chosen = [f for b in batches for f in b["formula"]]
    known = set(pd.read_csv(tio["known"])["formula"].map(reduced_formula))
    assert len(set(chosen)) == 16 and not set(chosen) & known  # nothing suggested twice, nothing labelled
    ledger = pd.read_csv(tio["dir"] / "ledger.csv")
    assert len(ledger) == 14 + 16 and ledger["round"].tolist() == [-1] * 14 + [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert (ledger["origin"].iloc[14:] == "oracle:table:all.csv").all()
    np.testing.assert_allclose(ledger["label"].iloc[14:], oracle[chosen].to_numpy())  # the lowest polymorph
    status = status_materials(tio["dir"])
    assert status["labels_back"].tolist() == [4] * 4 and status["trained_on"].tolist() == [14, 18, 22, 26]
    assert status["mae_pred"].between(0.01, 2).all()


def test_next_again_reuses_the_round_and_after_add_always_trains_again(tio):
    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    first = next_materials(tio["dir"], batch=3, seed=1, **QUIET)
    before = folder_state(tio["dir"])
    said = []
    again = next_materials(tio["dir"], batch=3, seed=1, say=said.append)
    assert again.equals(first) and folder_state(tio["dir"]) == before
    assert said == ["round 0: already suggested with these labels and parameters → round-00/"]
    with pytest.raises(CampaignError, match="round 0's suggestion has no labels yet.*--replace"):
        next_materials(tio["dir"], batch=5, seed=1, **QUIET)  # other parameters, labels still missing
    assert folder_state(tio["dir"]) == before
    other = next_materials(tio["dir"], batch=5, seed=1, replace=True, **QUIET)
    assert len(other) == 5 and (tio["dir"] / "replaced").is_dir() and len(list((tio["dir"] / "replaced").iterdir())) == 1
    labels = pd.read_csv(tio["all"]).assign(formula=lambda d: d["formula"].map(reduced_formula))
    labels = labels[labels["formula"].isin(other["formula"])].groupby("formula", as_index=False)["Ef"].min()
    labels.to_csv(tio["dir"].parent / "labels.csv", index=False)
    add_materials(tio["dir"], tio["dir"].parent / "labels.csv", **QUIET)
    nxt = next_materials(tio["dir"], batch=5, seed=1, **QUIET)  # same parameters, new labels: round 1
    assert (tio["dir"] / "round-01" / "suggested.csv").exists() and not set(nxt["formula"]) & set(other["formula"])


def _labels_file(path: Path, rows: list[tuple[str, object]]) -> Path:
    pd.DataFrame(rows, columns=["formula", "Ef"]).to_csv(path, index=False)
    return path


def test_the_human_loop_by_files_and_its_ledger(tio, tmp_path):
    assert main(["init", str(tio["dir"]), "--labelled", str(tio["known"]), "--target", "Ef",
                 "--candidates", str(tio["cands"])]) == 0
    assert main(["next", str(tio["dir"]), "--batch", "3", "--seed", "2"]) == 0
    suggested = pd.read_csv(tio["dir"] / "round-00" / "suggested.csv")
    assert suggested.columns.tolist() == ["formula", "predicted", "sigma", "sigma_cal", "hull", "above_hull",
                                          "p_below_hull", "expected_improvement", "rank"]
    truth = pd.read_csv(tio["all"]).assign(formula=lambda d: d["formula"].map(reduced_formula)).groupby("formula")["Ef"].min()
    a, b, c = suggested["formula"]
    good = _labels_file(tmp_path / "dft.csv", [(a, truth[a]), (b, truth[b])])  # one still running
    assert main(["add", str(tio["dir"]), str(good)]) == 0
    ledger = pd.read_csv(tio["dir"] / "ledger.csv")
    new = ledger.iloc[14:]
    assert new["key"].tolist() == sorted([a, b]) and (new["round"] == 0).all() and (new["origin"] == "add").all()
    assert (new["sha256"] == hashlib.sha256(good.read_bytes()).hexdigest()).all() and new["file"].iloc[0] == str(good)
    assert main(["next", str(tio["dir"]), "--batch", "3", "--seed", "2"]) == 0
    second = pd.read_csv(tio["dir"] / "round-01" / "suggested.csv")
    assert not set(second["formula"]) & {a, b, c}  # never again what was suggested, labelled or not
    assert main(["status", str(tio["dir"])]) == 0
    assert status_materials(tio["dir"])["labels_back"].tolist() == [2, 0]


@pytest.mark.parametrize("rows, message", [
    ([("{known}", -3.3)], "composition\\(s\\) are labelled already"),
    ([("Li9Tx", -1.0)], "pymatgen cannot read"),
    ([("NaNbO3", -2.0)], "never suggested"),
    ([("{a}", "not computed")], "missing or not a number"),
    ([("{a}", -2.0), ("{a}", -2.4)], "has different values"),
    ([("{a}", "{a_fu}")], "outside the plausible range.*eV per formula unit"),
])
def test_bad_label_files_are_refused_and_leave_the_campaign_as_it_was(tio, tmp_path, rows, message):
    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    first = next_materials(tio["dir"], batch=3, seed=0, **QUIET)
    a = first["formula"].iloc[0]
    known = pd.read_csv(tio["dir"] / "ledger.csv")["key"].iloc[0]
    from pymatgen.core import Composition

    truth = pd.read_csv(tio["all"]).assign(formula=lambda d: d["formula"].map(reduced_formula)).groupby("formula")["Ef"].min()
    fill = {"a": a, "a_fu": truth[a] * Composition(a).num_atoms, "known": known}
    rows = [(f.format(**fill), v.format(**fill) if isinstance(v, str) and "{" in v else v) for f, v in rows]
    bad = _labels_file(tmp_path / "bad.csv", rows)
    before = folder_state(tio["dir"])
    with pytest.raises(CampaignError, match=message):
        add_materials(tio["dir"], bad, **QUIET)
    assert folder_state(tio["dir"]) == before
    assert main(["add", str(tio["dir"]), str(bad)]) == 2  # the command: "error: …", exit 2, nothing changed
    assert folder_state(tio["dir"]) == before


def test_init_refuses_bad_inputs_before_writing(tio, tmp_path):
    with pytest.raises(CampaignError, match="either as a table.*or as a chemical system"):
        init_materials(tio["dir"], tio["known"], target="Ef", **QUIET)
    with pytest.raises(CampaignError, match="no target column 'energy'"):
        init_materials(tio["dir"], tio["known"], target="energy", candidates=tio["cands"], **QUIET)
    assert not tio["dir"].exists()
    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    with pytest.raises(CampaignError, match="already holds a campaign"):
        init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    with pytest.raises(CampaignError, match="no campaign folder"):
        next_materials(tmp_path / "nowhere", batch=3, **QUIET)
    with pytest.raises(CampaignError, match="unknown strategy 'stable'"):
        next_materials(tio["dir"], batch=3, strategy="stable", **QUIET)


def test_a_second_command_on_a_campaign_is_refused_while_one_works(tio):
    from alhelpers.campaign.folder import open_campaign

    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    with open_campaign(tio["dir"]):
        with pytest.raises(RuntimeError, match="in use by another command"):
            next_materials(tio["dir"], batch=3, **QUIET)


def test_a_killed_next_is_finished_by_the_next_run(tio, monkeypatch):
    """Killed after the suggestion was written but before the oracle's labels: the rerun labels
    that same suggestion once; killed before the suggestion: it is computed again, the same."""
    from alhelpers.campaign import folder

    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    oracle = f"table:{tio['all']}"
    with monkeypatch.context() as m:
        m.setattr(folder.Campaign, "append", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            next_materials(tio["dir"], batch=4, strategy="stability", seed=0, oracle=oracle, **QUIET)
    assert len(pd.read_csv(tio["dir"] / "ledger.csv")) == 14
    batch = next_materials(tio["dir"], batch=4, strategy="stability", seed=0, oracle=oracle, **QUIET)
    assert batch["formula"].tolist() == REPLAYED["stability"][0]
    assert pd.read_csv(tio["dir"] / "ledger.csv")["round"].tolist() == [-1] * 14 + [0] * 4
    with monkeypatch.context() as m:
        m.setattr(folder.Campaign, "save_suggestion", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            next_materials(tio["dir"], batch=4, strategy="stability", seed=0, oracle=oracle, **QUIET)
    assert (tio["dir"] / "round-01" / "suggested.csv").exists() and not (tio["dir"] / "round-01" / "suggestion.json").exists()
    batch = next_materials(tio["dir"], batch=4, strategy="stability", seed=0, oracle=oracle, **QUIET)
    assert batch["formula"].tolist() == REPLAYED["stability"][1]
    assert pd.read_csv(tio["dir"] / "ledger.csv")["round"].tolist() == [-1] * 14 + [0] * 4 + [1] * 4


def test_chemsys_candidates_are_every_charge_balanced_li_ti_o_composition_up_to_7_atoms():
    # by hand, with Li+, O2− and Ti2+/3+/4+ (mixed valence allowed: n Ti carry 2n … 4n), reduced:
    # Li–O: Li2O; Ti–O: TiO, TiO2, Ti2O3, Ti3O4 (Ti 8/3); Li–Ti: none (no negative ion);
    # Li–Ti–O, a Li + b Ti + c O with a + q = 2c, q in [2b, 4b], a + b + c <= 7:
    # b = 1: LiTiO2, Li2TiO2, Li2TiO3, Li3TiO3 (Li4TiO3 has 8); b = 2: LiTi2O3, Li2Ti2O3, LiTi2O4
    expected = {"Li2O", "TiO", "TiO2", "Ti2O3", "Ti3O4", "LiTiO2", "Li2TiO2", "Li2TiO3", "Li3TiO3", "LiTi2O3",
                "Li2Ti2O3", "LiTi2O4"}
    got = charge_balanced(["Li", "Ti", "O"], 7)
    assert set(got) == expected and len(got) == 12
    assert charge_balanced(["O", "Ti", "Li"], 7) == got  # any order of the elements
    with pytest.raises(ValueError, match="at least two elements"):
        charge_balanced(["Ti"], 7)


def test_init_from_a_chemical_system_removes_the_labelled_compositions(tmp_path):
    known = _labels_file(tmp_path / "known.csv", [("TiO2", -3.26), ("Li2O", -2.07), ("Ti2O3", -3.15)])
    init_materials(tmp_path / "c", known, target="Ef", chemsys="Li-Ti-O", max_atoms=7, **QUIET)
    cands = pd.read_csv(tmp_path / "c" / "candidates.csv")["formula"].tolist()
    assert len(cands) == 9 and not {"TiO2", "Li2O", "Ti2O3"} & set(cands)
    batch = next_materials(tmp_path / "c", batch=2, strategy="stability-ei", **QUIET)
    assert len(batch) == 2 and set(batch["formula"]) <= set(cands)


# --------------------------------------------------------------------------- Track B


def _frames(data, idx, *, energy_scale: float = 1.0):
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for i in idx:
        a = data.structures[i].copy()
        a.calc = SinglePointCalculator(a, energy=float(data.energy[i]) * energy_scale, forces=data.forces[i].copy())
        out.append(a)
    return out


@pytest.fixture(scope="module")
def offline():
    from alhelpers.atomistic.data.offline import load_offline

    return load_offline()


@pytest.fixture
def aspirin(tmp_path, offline) -> dict:
    """8 labelled frames (every 150th MD step) and a pool of 60 others, which carries its labels."""
    from ase.io import write

    labelled, pool = list(range(0, 1200, 150)), [i for i in range(3, 1200, 20)]
    paths = {"known": tmp_path / "known.extxyz", "pool": tmp_path / "pool.extxyz", "dir": tmp_path / "campaign"}
    write(paths["known"], _frames(offline, labelled))
    write(paths["pool"], _frames(offline, pool))
    return {**paths, "pool_idx": pool}


REPLAYED_B = [[26, 4, 42, 50], [7, 22, 57, 9], [32, 6, 12, 39], [49, 38, 51, 35]]  # 4 rounds of 4, seed 0


def test_a_structures_campaign_replays_four_rounds_exactly(aspirin, offline):
    from alhelpers.campaign.structures import (
        init_structures,
        next_structures,
        status_structures,
    )

    init_structures(aspirin["dir"], aspirin["pool"], aspirin["known"], epochs=10, **QUIET)
    batches = [next_structures(aspirin["dir"], batch=4, seed=0, oracle="pool", **QUIET) for _ in range(4)]
    assert [b["pool_index"].tolist() for b in batches] == REPLAYED_B
    chosen = [i for b in REPLAYED_B for i in b]
    assert len(set(chosen)) == 16
    ledger = pd.read_csv(aspirin["dir"] / "ledger.csv")
    assert ledger["key"].tolist() == [f"init:{k}" for k in range(8)] + [str(i) for i in chosen]
    np.testing.assert_allclose(ledger["label"].iloc[8:], offline.energy[[aspirin["pool_idx"][i] for i in chosen]])
    status = status_structures(aspirin["dir"])
    assert status["trained_on"].tolist() == [8, 12, 16, 20] and status["labels_back"].tolist() == [4] * 4
    assert np.isnan(status["mae_pred"].iloc[0]) and (status["mae_pred"].iloc[1:] > 0).all()


def test_the_structures_loop_by_files_and_bad_label_files(aspirin, offline, tmp_path):
    from ase.io import read, write

    from alhelpers.campaign.structures import add_structures

    assert main(["init", str(aspirin["dir"]), "--structures", str(aspirin["pool"]), "--labelled-structures",
                 str(aspirin["known"]), "--epochs", "10"]) == 0
    assert main(["next", str(aspirin["dir"]), "--batch", "3", "--strategy", "maxdet-gp-ll"]) == 0
    to_label = read(aspirin["dir"] / "round-00" / "to_label.extxyz", index=":")
    picked = [int(a.info["pool_index"]) for a in to_label]
    assert all(a.calc is None for a in to_label)  # the pool's labels stay hidden
    truth = [aspirin["pool_idx"][i] for i in picked]
    before = folder_state(aspirin["dir"])

    def refused(frames, message):
        bad = tmp_path / "bad.extxyz"
        write(bad, frames)
        with pytest.raises(CampaignError, match=message):
            add_structures(aspirin["dir"], bad, **QUIET)
        assert folder_state(aspirin["dir"]) == before

    moved = _frames(offline, truth[:1])
    moved[0].positions[0] += 0.01
    refused(moved, "frame 0 .* matches no pool structure: its atoms or positions differ")
    refused(_frames(offline, [aspirin["pool_idx"][59]]), "matches pool structure 59, which no round suggested")
    refused(_frames(offline, [truth[0], truth[0]]), "frames 0 and 1 are both pool structure")
    refused(_frames(offline, truth[:1], energy_scale=1 / 27.211386), "eV/atom from what the labelled.*not Hartree")
    nan = _frames(offline, truth[:1])
    nan[0].calc.results["forces"][0, 0] = np.nan
    refused(nan, "not finite|NaN")
    no_forces = _frames(offline, truth[:1])
    del no_forces[0].calc.results["forces"]
    refused(no_forces, "has no forces")

    good = tmp_path / "dft.extxyz"
    write(good, _frames(offline, truth[:2]))
    assert main(["add", str(aspirin["dir"]), str(good)]) == 0
    ledger = pd.read_csv(aspirin["dir"] / "ledger.csv")
    assert ledger["key"].iloc[8:].tolist() == [str(i) for i in picked[:2]] and (ledger["round"].iloc[8:] == 0).all()
    assert (ledger["sha256"].iloc[8:] == hashlib.sha256(good.read_bytes()).hexdigest()).all()
    assert len(read(aspirin["dir"] / "labelled.extxyz", index=":")) == 10
    assert main(["add", str(aspirin["dir"]), str(good)]) == 2  # the same labels twice: refused
    assert main(["next", str(aspirin["dir"]), "--batch", "3", "--strategy", "maxdet-gp-ll"]) == 0
    second = pd.read_csv(aspirin["dir"] / "round-01" / "to_label.csv")["pool_index"].tolist()
    assert not set(second) & set(picked)


def test_structures_campaign_with_a_model_file_and_a_committee(aspirin, offline, tmp_path):
    """``--model FILE``: the user's model (here the project's potential, saved whole) is fine-tuned
    from its own weights each round; QBC methods get a committee of seeded fine-tunes."""
    import torch

    from alhelpers.anymodel.train import TrainConfig
    from alhelpers.atomistic.train import fit_potential
    from alhelpers.campaign.structures import init_structures, next_structures
    from alhelpers.structures import StructureSet

    start = StructureSet("start", [offline.structures[i] for i in range(0, 1200, 150)],
                         offline.energy[list(range(0, 1200, 150))], [offline.forces[i] for i in range(0, 1200, 150)])
    model, _ = fit_potential(start, None, TrainConfig(max_epochs=3), seed=0)
    torch.save(model, tmp_path / "mine.pt")
    init_structures(aspirin["dir"], aspirin["pool"], aspirin["known"], model=str(tmp_path / "mine.pt"), epochs=3,
                    **QUIET)
    settings = (aspirin["dir"] / "campaign.json").read_text()
    assert '"model": "file"' in settings and hashlib.sha256((tmp_path / "mine.pt").read_bytes()).hexdigest() in settings
    (tmp_path / "mine.pt").unlink()  # the campaign keeps its own copy
    first = next_structures(aspirin["dir"], batch=3, strategy="maxdiag-qbc-f", oracle="pool", **QUIET)
    second = next_structures(aspirin["dir"], batch=3, strategy="maxdet-gp-ll", **QUIET)
    assert len(first) == len(second) == 3 and not set(first["pool_index"]) & set(second["pool_index"])
    with pytest.raises(CampaignError, match="or a model file"):
        init_structures(tmp_path / "other", aspirin["pool"], aspirin["known"], model="schnet", **QUIET)


@pytest.mark.parametrize("strategy", ["lcmd-feat-ll", "diversity", "hybrid"])
def test_every_strategy_of_the_studies_runs_in_a_materials_campaign(tio, strategy):
    init_materials(tio["dir"], tio["known"], target="Ef", candidates=tio["cands"], **QUIET)
    batch = next_materials(tio["dir"], batch=4, strategy=strategy, seed=0, **QUIET)
    assert len(batch) == 4 and batch["rank"].tolist() == [1, 2, 3, 4]


def test_any_ase_calculator_labels_a_structures_campaign(aspirin):
    """From Python the oracle may be any oracle object: here ASE's EMT through a CalculatorOracle
    (total energies; the campaign records which oracle labelled what)."""
    from ase.calculators.emt import EMT

    from alhelpers.atomistic.oracle import CalculatorOracle
    from alhelpers.campaign.structures import init_structures, next_structures

    init_structures(aspirin["dir"], aspirin["pool"], aspirin["known"], epochs=3, **QUIET)
    emt = CalculatorOracle(EMT, None, name="EMT")
    batch = next_structures(aspirin["dir"], batch=2, strategy="random", oracle=emt, **QUIET)
    ledger = pd.read_csv(aspirin["dir"] / "ledger.csv").iloc[8:]
    assert ledger["key"].tolist() == [str(i) for i in batch["pool_index"]] and (ledger["origin"] == "oracle:EMT").all()
    from ase.io import read

    pool = read(aspirin["pool"], index=":")
    expect = []
    for i in batch["pool_index"]:
        a = pool[int(i)].copy()
        a.calc = EMT()
        expect.append(a.get_potential_energy())
    np.testing.assert_allclose(ledger["label"], expect)
    with pytest.raises(CampaignError, match="unknown oracle 'dft'"):
        next_structures(aspirin["dir"], batch=2, oracle="dft", **QUIET)
