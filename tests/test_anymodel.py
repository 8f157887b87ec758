"""BMDAL for any PyTorch potential (alhelpers.anymodel): the generic features against the
specialised ones and against autograd, the committee kernels, and the extxyz command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read, write

from alhelpers.al.seeding import stream
from alhelpers.anymodel.adapter import AdapterBatch, PotentialAdapter, chunk_by_atoms
from alhelpers.anymodel.gradients import gradient_features, module_names
from alhelpers.anymodel.select import adapter_select, select_structures
from alhelpers.anymodel.train import TrainConfig
from alhelpers.atomistic.data import load_dataset
from alhelpers.atomistic.features import (
    full_gradient_features,
    ll_features,
    rp_features,
)
from alhelpers.atomistic.model import OwnPotentialAdapter
from alhelpers.atomistic.selection import select_batch
from alhelpers.atomistic.train import fit_potential


@pytest.fixture(scope="module")
def offline():
    return load_dataset("offline").subset(range(0, 1200, 20))  # 60 aspirin frames, 21 atoms each


@pytest.fixture(scope="module")
def own(offline):
    model, _ = fit_potential(offline.subset(range(12)), None, TrainConfig(max_epochs=3), hidden=(24, 16), seed=3)
    return model


# --------------------------------------------------------------------------- the project's potential


def test_generic_path_reproduces_the_own_potentials_features(offline, own):
    adapter = OwnPotentialAdapter(own)
    s = offline.structures
    assert np.array_equal(gradient_features(adapter, s, "ll"), ll_features(own, s))  # bit for bit
    np.testing.assert_allclose(gradient_features(adapter, s, "rp", p=64, seed=11), rp_features(own, s, p=64, seed=11),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gradient_features(adapter, s, "full"), full_gradient_features(own, s),
                               rtol=1e-12, atol=1e-14)
    assert isinstance(adapter, PotentialAdapter)


@pytest.mark.parametrize("method", ["lcmd-feat-rp", "lcmd-feat-ll", "maxdet-gp-ll", "maxdet-gp-rp",
                                    "maxdist-feat-ll", "maxdiag-gp-rp", "random"])
def test_generic_path_selects_the_own_potentials_batch(offline, own, method):
    cand, lab = offline.subset(range(12, 60)), offline.subset(range(12))
    want = select_batch(method, models=[own], candidates=cand, labelled=lab, batch=9, rng=stream(5, method, 2), rp_dim=96)
    got = adapter_select(method, OwnPotentialAdapter(own), cand.structures, lab.structures, 9, stream(5, method, 2),
                         rp_dim=96)
    assert got.tolist() == want.tolist() and len(set(got.tolist())) == 9


def test_batches_of_any_size_give_the_same_features(offline, own):
    adapter = OwnPotentialAdapter(own)
    whole = gradient_features(adapter, offline.structures, "full")
    np.testing.assert_allclose(gradient_features(adapter, offline.structures, "full", max_atoms=50), whole,
                               rtol=1e-12, atol=1e-14)
    assert [c.tolist() for c in chunk_by_atoms([3, 3, 5, 1], 6)] == [[0, 1], [2, 3]]


# --------------------------------------------------------------------------- any model: a toy one here


class PairModel(torch.nn.Module):
    """``E = Σ_i MLP([embedding(Z_i), Σ_j W·exp(−r_ij) + b])``: an embedding (the generic
    ``torch.func`` handler), a linear layer on edges and linear layers on atoms."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Embedding(10, 3, dtype=torch.float64)
        self.radial = torch.nn.Linear(1, 4, dtype=torch.float64)
        self.head = torch.nn.Sequential(torch.nn.Linear(7, 5, dtype=torch.float64), torch.nn.Tanh(),
                                        torch.nn.Linear(5, 1, dtype=torch.float64))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))

    def forward(self, numbers, positions, edges, centre_of_edge, n_atoms):
        d = (positions[edges[0]] - positions[edges[1]]).norm(dim=1, keepdim=True)
        pair = torch.zeros(n_atoms, 4, dtype=positions.dtype).index_add(0, centre_of_edge, self.radial(torch.exp(-d)))
        return self.head(torch.cat([self.embed(numbers), pair], dim=1)).squeeze(1)


class PairAdapter:
    """The whole adapter of PairModel: what a NequIP or SchNetPack adapter looks like."""

    readouts = ("head.2",)
    gradient_modules = None
    edge_modules = ("radial",)

    def __init__(self, model: PairModel) -> None:
        self.model = model

    def prepare(self, atoms: Atoms):
        i, j = np.triu_indices(len(atoms), 1)
        return atoms, np.concatenate([i, j]), np.concatenate([j, i])

    def collate(self, items) -> AdapterBatch:
        pos, num, src, dst, a_s, e_s, off = [], [], [], [], [], [], 0
        for k, (atoms, i, j) in enumerate(items):
            pos.append(atoms.positions), num.append(atoms.numbers)
            src.append(i + off), dst.append(j + off)
            a_s.append(np.full(len(atoms), k)), e_s.append(np.full(len(i), k))
            off += len(atoms)
        t = {"numbers": torch.as_tensor(np.concatenate(num)), "positions": torch.as_tensor(np.concatenate(pos)),
             "edges": torch.as_tensor(np.stack([np.concatenate(src), np.concatenate(dst)]))}
        return AdapterBatch(t, len(items), torch.as_tensor(np.concatenate(a_s)), torch.as_tensor(np.concatenate(e_s)))

    def energies(self, batch: AdapterBatch) -> torch.Tensor:
        d = batch.data
        atomic = self.model(d["numbers"], d["positions"], d["edges"], d["edges"][0], len(d["numbers"]))
        return torch.zeros(batch.n_structures, dtype=atomic.dtype).index_add(0, batch.atom_structure, atomic)

    def energy_and_forces(self, batch, *, create_graph=False):  # pragma: no cover - not used here
        raise NotImplementedError


def _molecules(n: int) -> list[Atoms]:
    rng = np.random.default_rng(0)
    return [Atoms(rng.choice([1, 6, 8], size=k), positions=rng.normal(size=(k, 3)) * 1.5)
            for k in rng.integers(2, 7, size=n)]


def test_any_model_full_gradient_and_readout_equal_autograd(autograd_gradient):
    adapter = PairAdapter(PairModel())
    mols = _molecules(7)
    names = module_names(adapter, "rp")
    assert names == ("embed", "radial", "head.0", "head.2")  # every module that owns parameters, model order
    np.testing.assert_allclose(gradient_features(adapter, mols, "full"), autograd_gradient(adapter, mols, names),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gradient_features(adapter, mols, "ll"), autograd_gradient(adapter, mols, ("head.2",)),
                               rtol=1e-12, atol=1e-12)


def test_rp_kernel_mean_over_seeds_converges_to_the_exact_kernel():
    adapter = PairAdapter(PairModel())
    mols = _molecules(6)
    exact = gradient_features(adapter, mols, "full")
    K = exact @ exact.T
    samples = np.stack([(lambda phi: phi @ phi.T)(gradient_features(adapter, mols, "rp", p=64, seed=k))
                        for k in range(128)])
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples))
    # unbiased: every entry of the mean kernel within 4 standard errors of the exact kernel …
    assert (np.abs(mean - K) < 4 * se).all(), np.abs(mean - K) / se
    # … and the error of the mean falls like 1/sqrt(seeds): within twice the Monte-Carlo error
    # sqrt(Σ var / m) that the samples' own spread predicts, for 8 and for 128 seeds
    spread = np.sqrt(samples.var(0, ddof=1).sum()) / np.linalg.norm(K)
    err = {m: np.linalg.norm(samples[:m].mean(0) - K) / np.linalg.norm(K) for m in (8, 128)}
    assert err[128] < err[8] and all(err[m] < 2 * spread / np.sqrt(m) for m in err), (err, spread)


def test_bad_module_names_and_frozen_models_are_refused():
    adapter = PairAdapter(PairModel())
    adapter.readouts = ("head.7",)
    with pytest.raises(ValueError, match="no module named"):
        gradient_features(adapter, _molecules(2), "ll")
    adapter.readouts = ("head", "head.2")
    with pytest.raises(ValueError, match="lies inside"):
        gradient_features(adapter, _molecules(2), "ll")
    adapter = PairAdapter(PairModel())
    adapter.edge_modules = ()
    with pytest.raises(ValueError, match="edge_modules"):
        gradient_features(adapter, _molecules(3), "full")
    adapter = PairAdapter(PairModel().requires_grad_(False))
    with pytest.raises(RuntimeError, match="requires grad"):
        gradient_features(adapter, _molecules(2), "ll")


# --------------------------------------------------------------------------- committees


def test_qbc_from_ase_calculators_selects_the_largest_force_spread():
    from ase.calculators.lj import LennardJones

    from alhelpers.anymodel.committee import force_spread

    mols = _molecules(12)
    calcs = [LennardJones(sigma=1.0, epsilon=1.0, rc=6.0), LennardJones(sigma=1.1, epsilon=0.8, rc=6.0)]
    forces = []
    for c in calcs:
        fs = []
        for a in mols:
            b = a.copy()
            b.calc = c
            fs.append(b.get_forces())
        forces.append(np.concatenate(fs))
    spread = force_spread(np.stack(forces), [len(a) for a in mols])
    by_hand = [np.sqrt(np.mean(((f1 - f2) / 2) ** 2)) for f1, f2 in
               zip(np.split(forces[0], np.cumsum([len(a) for a in mols])[:-1]),
                   np.split(forces[1], np.cumsum([len(a) for a in mols])[:-1]))]
    np.testing.assert_allclose(spread, by_hand, rtol=1e-12)
    sel = select_structures(PairAdapter(PairModel()), mols[:2], mols, method="maxdiag-qbc-f", batch=3, committee=calcs)
    assert sel.indices.tolist() == np.argsort(-spread, kind="stable")[:3].tolist()
    np.testing.assert_allclose(sel.scores, spread, rtol=1e-12)
    with pytest.raises(ValueError, match="committee"):
        select_structures(PairAdapter(PairModel()), mols[:2], mols, method="maxdiag-qbc-e", batch=3)


# --------------------------------------------------------------------------- the command


def test_extxyz_command_round_trips_and_selects_as_the_python_call(tmp_path, offline, own, capsys):
    from alhelpers.select.__main__ import main

    train, pool = offline.structures[:10], offline.structures[10:40]
    write(tmp_path / "train.extxyz", train, format="extxyz")
    write(tmp_path / "pool.extxyz", pool, format="extxyz")
    torch.save(own, tmp_path / "model.pt")
    out, csv = tmp_path / "sel.extxyz", tmp_path / "sel.csv"
    argv = [str(tmp_path / "model.pt"), str(tmp_path / "train.extxyz"), str(tmp_path / "pool.extxyz"),
            "--method", "lcmd-feat-rp", "--batch", "5", "--seed", "4", "--rp-dim", "64", "--out", str(out),
            "--csv", str(csv)]
    assert main(argv) == 0
    want = select_structures(own, tmp_path / "train.extxyz", tmp_path / "pool.extxyz", method="lcmd-feat-rp", batch=5,
                             rng=4, rp_dim=64)  # the same files (extxyz keeps 8 decimals of the positions)
    in_memory = select_structures(own, train, pool, method="lcmd-feat-rp", batch=5, rng=4, rp_dim=64)
    assert in_memory.indices.tolist() == want.indices.tolist()
    frames = read(out, index=":")
    assert [a.info["pool_index"] for a in frames] == want.indices.tolist()
    assert [a.info["rank"] for a in frames] == [1, 2, 3, 4, 5]
    for a in frames:
        ref = pool[a.info["pool_index"]]
        assert (a.numbers == ref.numbers).all() and np.allclose(a.positions, ref.positions, atol=1e-8)
    import pandas as pd

    table = pd.read_csv(csv)
    assert len(table) == 30 and table["selected"].sum() == 5
    assert table.sort_values("rank").query("selected")["pool_index"].tolist() == want.indices.tolist()
    np.testing.assert_allclose(table["score"], want.scores, rtol=1e-12)
    assert "lcmd-feat-rp: 5 of 30" in capsys.readouterr().out


def test_command_says_what_is_wrong_before_loading(tmp_path, capsys):
    from alhelpers.select.__main__ import main

    write(tmp_path / "pool.extxyz", _molecules(3), format="extxyz")
    assert main(["nope.pt", str(tmp_path / "pool.extxyz"), str(tmp_path / "pool.extxyz"), "--method", "lcmd-qbc-f"]) == 2
    assert "diagonal kernel" in capsys.readouterr().err
    assert main(["nope.pt", str(tmp_path / "missing.extxyz"), str(tmp_path / "pool.extxyz")]) == 2
    assert "missing.extxyz" in capsys.readouterr().err
    torch.save({"weight": torch.zeros(2)}, tmp_path / "state.pt")
    assert main([str(tmp_path / "state.pt"), str(tmp_path / "pool.extxyz"), str(tmp_path / "pool.extxyz"),
                 "--batch", "2"]) == 2
    assert "not a model" in capsys.readouterr().err


def _command_files(tmp_path, offline, own) -> dict:
    """A model, a training set of 10 and a pool of 30 aspirin frames, and a committee member, as files."""
    paths = {k: tmp_path / n for k, n in [("model", "model.pt"), ("train", "train.extxyz"),
                                          ("pool", "pool.extxyz"), ("member", "member.pt")]}
    write(paths["train"], offline.structures[:10], format="extxyz")
    write(paths["pool"], offline.structures[10:40], format="extxyz")
    torch.save(own, paths["model"])
    torch.save(own, paths["member"])
    return paths


def _sha256s(paths) -> dict:
    from alhelpers.files import sha256_file

    return {k: sha256_file(p) for k, p in paths.items()}


def test_command_never_writes_over_its_inputs(tmp_path, offline, own, capsys):
    """Before: ``--out pool.extxyz`` replaced the 30-frame pool by the 3 selected frames, rc 0."""
    from alhelpers.select.__main__ import main

    f = _command_files(tmp_path, offline, own)
    before = _sha256s(f)
    args = [str(f["model"]), str(f["train"]), str(f["pool"]), "--batch", "3", "--rp-dim", "16"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.extxyz").symlink_to(f["pool"])
    cases = [(["--out", str(f["pool"])], "--out", "the pool"),
             (["--out", str(tmp_path / "sub" / ".." / "pool.extxyz")], "--out", "the pool"),  # spelt otherwise
             (["--out", str(tmp_path / "link.extxyz")], "--out", "the pool"),  # a link to it
             (["--csv", str(f["train"])], "--csv", "the training set"),
             (["--out", str(f["model"])], "--out", "the model"),
             (["--method", "maxdiag-qbc-e", "--committee", str(f["member"]), str(f["model"]), "--csv",
               str(f["member"])], "--csv", "a --committee")]
    for extra, flag, role in cases:
        outputs = [] if "--out" in extra else ["--out", str(tmp_path / "sel.extxyz")]
        outputs += [] if "--csv" in extra else ["--csv", str(tmp_path / "sel.csv")]
        assert main(args + extra + outputs) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith(f"error: {flag} ") and f"is {role} file" in err, err
        assert _sha256s(f) == before and len(read(f["pool"], index=":")) == 30
        assert not (tmp_path / "sel.extxyz").exists() and not (tmp_path / "sel.csv").exists()
    # even with --overwrite
    assert main(args + ["--out", str(f["pool"]), "--csv", str(tmp_path / "sel.csv"), "--overwrite"]) == 2
    assert "is the pool file" in capsys.readouterr().err and _sha256s(f) == before
    # --out and --csv naming one file
    assert main(args + ["--out", str(tmp_path / "a.out"), "--csv", str(tmp_path / "a.out")]) == 2
    assert f"error: --out and --csv both name {tmp_path / 'a.out'}" in capsys.readouterr().err
    assert not (tmp_path / "a.out").exists()


def test_command_replaces_an_existing_file_only_with_overwrite(tmp_path, offline, own, capsys):
    from alhelpers.select.__main__ import main

    f = _command_files(tmp_path, offline, own)
    out, csv = tmp_path / "sel.extxyz", tmp_path / "sel.csv"
    out.write_text("the user's earlier batch\n")
    argv = [str(f["model"]), str(f["train"]), str(f["pool"]), "--batch", "3", "--rp-dim", "16", "--out", str(out),
            "--csv", str(csv)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --out {out} already exists; pass --overwrite to replace it, or choose another path\n")
    assert out.read_text() == "the user's earlier batch\n" and not csv.exists()
    assert main(argv + ["--overwrite"]) == 0
    assert [a.info["rank"] for a in read(out, index=":")] == [1, 2, 3] and len(read(f["pool"], index=":")) == 30
    assert main(argv) == 2  # the command's own output of the run before is not replaced either
    assert f"error: --out {out} already exists" in capsys.readouterr().err
    out.unlink()
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: --csv {csv} already exists; pass --overwrite")
    assert not out.exists()
    (tmp_path / "folder").mkdir()
    assert main(argv[:-4] + ["--out", str(tmp_path / "folder"), "--csv", str(tmp_path / "new.csv"),
                             "--overwrite"]) == 2
    assert f"error: --out {tmp_path / 'folder'} is a folder" in capsys.readouterr().err


def test_unreadable_model_files_are_named(tmp_path, offline, own, capsys):
    """Before: ``error: UnreadableFileError.__init__() missing 2 required positional arguments``."""
    from alhelpers.anymodel.io import load_model
    from alhelpers.files import UnreadableFileError
    from alhelpers.select.__main__ import main

    f = _command_files(tmp_path, offline, own)
    raw = f["model"].read_bytes()
    truncated, garbage = tmp_path / "truncated.pt", tmp_path / "garbage.pt"
    truncated.write_bytes(raw[: len(raw) // 2])
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    for bad in (truncated, garbage):
        with pytest.raises(UnreadableFileError, match=rf"^{bad} is unreadable \(") as err:
            load_model(bad)
        assert err.value.path == bad and "torch.save(model, path)" in str(err.value)
        outs = ["--out", str(tmp_path / "sel.extxyz"), "--csv", str(tmp_path / "sel.csv")]
        assert main([str(bad), str(f["train"]), str(f["pool"])] + outs) == 2
        msg = capsys.readouterr().err
        assert msg.startswith(f"error: {bad} is unreadable (the model file") and "torch.save(model, path)" in msg, msg
        assert main([str(f["model"]), str(f["train"]), str(f["pool"]), "--method", "maxdiag-qbc-e", "--committee",
                     str(f["member"]), str(bad)] + outs) == 2
        msg = capsys.readouterr().err
        assert msg.startswith(f"error: {bad} is unreadable (a --committee file") and "torch.save" in msg, msg
        assert not (tmp_path / "sel.extxyz").exists()
    with pytest.raises(UnreadableFileError, match="it is cut short: it starts as a torch.save archive but its end"):
        load_model(truncated)
    with pytest.raises(UnreadableFileError, match="torch.load cannot read it: UnpicklingError: invalid load key"):
        load_model(garbage)


@pytest.mark.parametrize("flag, value, message", [
    ("--rp-dim", "0", "--rp-dim must be >= 1, got 0"),
    ("--rp-dim", "-5", "--rp-dim must be >= 1, got -5"),
    ("--batch", "0", "--batch must be >= 1, got 0"),
    ("--batch", "-3", "--batch must be >= 1, got -3"),
    ("--seed", "-1", "--seed must be >= 0, got -1"),
])
def test_command_checks_numbers_before_loading_anything(tmp_path, capsys, flag, value, message):
    """Before: --rp-dim 0 selected a batch (rc 0), -5 raised a RuntimeError of torch, --seed -1 said
    'a stream key must be >= 0'. Here no input exists: the number is refused before any is read."""
    from alhelpers.select.__main__ import main

    assert main(["nope.pt", str(tmp_path / "train.extxyz"), str(tmp_path / "pool.extxyz"), flag, value]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_batch_larger_than_the_pool_is_refused(tmp_path, capsys):
    """Before: ``--batch 31`` on a pool of 30 selected all 30 without a word."""
    from alhelpers.select.__main__ import main

    pool = tmp_path / "pool.extxyz"
    write(pool, _molecules(30), format="extxyz")
    assert main(["nope.pt", str(pool), str(pool), "--batch", "31"]) == 2  # before the model is loaded
    assert capsys.readouterr().err == (f"error: --batch 31 is larger than the pool ({pool}: 30 structures); "
                                       "choose at most 30\n")
    mols = _molecules(30)
    with pytest.raises(ValueError, match=r"^batch 31 is larger than the pool \(30 structures\); choose at most 30$"):
        select_structures(PairAdapter(PairModel()), mols[:3], mols, method="random", batch=31)
    assert len(select_structures(PairAdapter(PairModel()), mols[:3], mols, method="random", batch=30).indices) == 30


@pytest.mark.parametrize("kwargs, message", [
    ({"rp_dim": 0}, r"rp_dim must be >= 1, got 0"),
    ({"rp_dim": -5}, r"rp_dim must be >= 1, got -5"),
    ({"batch": 0}, r"batch must be >= 1, got 0"),
    ({"rng": -1}, r"rng must be >= 0, got -1"),
])
def test_python_call_checks_its_numbers(kwargs, message):
    """Before: rp_dim=0 selected a batch from empty features, rp_dim=-5 raised torch's RuntimeError."""
    mols = _molecules(8)
    with pytest.raises(ValueError, match=rf"^{message}"):
        select_structures(PairAdapter(PairModel()), mols[:3], mols, method="lcmd-feat-rp", **{"batch": 2, **kwargs})
