"""Batch active learning for any PyTorch potential: which structures to label next.

:func:`select_structures` is the entry point: a model (or an adapter), the labelled training
structures and the unlabelled pool (lists of :class:`ase.Atoms` or files ``ase.io`` reads) in;
a :class:`Selection` out — the pool indices of the batch in selection order, a score per pool
structure and the seconds spent on features and on the rule. The methods are
:mod:`alhelpers.select.methods`' (STUDY §7), applied through the one adapter
:func:`~alhelpers.select.methods.bmdal_batch` with the rules unchanged:

* ``<rule>-feat-ll``, ``<rule>-feat-rp``, ``<rule>-gp-ll``, ``<rule>-gp-rp`` with rule MAXDIAG,
  MAXDET, MAXDIST or LCMD (LCMD on plain features) — the gradient features of
  :mod:`alhelpers.anymodel.gradients`;
* ``maxdiag-qbc-e`` / ``maxdiag-qbc-f`` — a committee (``committee=``: adapters, models or ASE
  calculators; the model itself is not added);
* ``random``.

The score of a pool structure is what the method's rule looks at first: the QBC spread or RND
value for diagonal kernels, the GP posterior variance (``gp-*`` kernels and MAXDET), and for
MAXDIST/LCMD on plain features the squared feature distance to the nearest labelled structure.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from ase import Atoms

from alhelpers.al.seeding import stream
from alhelpers.anymodel.adapter import DEFAULT_MAX_ATOMS, PotentialAdapter
from alhelpers.anymodel.committee import (
    committee_predictions,
    energy_spread,
    force_spread,
)
from alhelpers.anymodel.gradients import gradient_features
from alhelpers.select.features import DEFAULT_RP_DIM, gp_posterior_matrix
from alhelpers.select.methods import Method, bmdal_batch, parse_method

__all__ = [
    "adapter_select",
    "adapter_uncertainty",
    "ANY_KERNELS",
    "as_adapter",
    "check_arguments",
    "check_label_free",
    "check_pool",
    "FLAGS",
    "initial_select",
    "LABEL_FREE_RULES",
    "ORACLE_KERNELS",
    "parse_any_method",
    "parse_potential_method",
    "POTENTIAL_KERNELS",
    "read_structures",
    "select_structures",
    "Selection",
]

#: Track B's kernels (STUDY §7), one registry for every potential: the committee spreads, the ORACLE
#: errors, RND, the gradient features and their GP posterior.
POTENTIAL_KERNELS: tuple[str, ...] = ("qbc-e", "qbc-f", "ae-e", "ae-f", "rnd", "feat-ll", "feat-rp", "gp-ll", "gp-rp")
#: Kernels that read the candidates' labels (an ORACLE upper bound): a study with a labelled pool only.
ORACLE_KERNELS: tuple[str, ...] = ("ae-e", "ae-f")
#: Kernels any potential offers on unlabelled candidates (a selection, a campaign).
ANY_KERNELS: tuple[str, ...] = tuple(k for k in POTENTIAL_KERNELS if k not in ORACLE_KERNELS)

#: How ``python -m alhelpers.select`` spells the arguments of :func:`select_structures`.
FLAGS: dict[str, str] = {"batch": "--batch", "rp_dim": "--rp-dim", "rng": "--seed"}


def parse_potential_method(name: str | Method, *, labelled_pool: bool = True) -> Method:
    """A Track B method name (``random`` or ``<rule>-<kernel>`` with a kernel of
    :data:`POTENTIAL_KERNELS`, e.g. ``"lcmd-feat-ll"``) as the typed :class:`Method`; a Method
    passes through. ``labelled_pool=False`` (unlabelled candidates) refuses the ORACLE kernels."""
    m = name if isinstance(name, Method) else parse_method(name, kernels=POTENTIAL_KERNELS)
    if not labelled_pool and m.kernel in ORACLE_KERNELS:
        raise ValueError(f"{m.name} reads the candidates' labels (an ORACLE upper bound for studies with a labelled "
                         f"pool); on unlabelled candidates use one of the kernels {', '.join(ANY_KERNELS)}")
    return m


#: Rules that can choose a batch with nothing labelled yet (on plain features of a pretrained model).
LABEL_FREE_RULES: tuple[str, ...] = ("maxdet", "maxdist", "lcmd")


def check_label_free(name: str | Method, what: str = "the first batch") -> Method:
    """A method that needs no labelled structure: ``random``, or MAXDET, MAXDIST or LCMD on plain
    features (FEAT(LL) / FEAT(RP) of a pretrained model; GP and committee kernels need labels)."""
    m = parse_any_method(name)
    if m.name != "random" and (m.rule not in LABEL_FREE_RULES or m.kernel not in ("feat-ll", "feat-rp")):
        raise ValueError(f"{m.name!r} cannot choose {what}: with nothing labelled yet, use random or MAXDET, MAXDIST "
                         "or LCMD on plain features of a pretrained model, e.g. 'maxdet-feat-ll' or 'lcmd-feat-rp'")
    return m


def initial_select(method: str | Method, model: Any, pool: Sequence[Atoms], batch: int, rng: np.random.Generator, *,
                   rp_dim: int = DEFAULT_RP_DIM) -> np.ndarray:
    """Positions in ``pool`` of a batch chosen before any label (selection order): ``method``
    (:func:`check_label_free`) on the gradient features of a pretrained ``model``, with the
    labelled structures an empty set (MAXDIST and LCMD then start from the pool alone)."""
    m = check_label_free(method)
    return adapter_select(m, as_adapter(model), list(pool), [], batch, rng, rp_dim=rp_dim)


def parse_any_method(name: str | Method) -> Method:
    """A method for unlabelled candidates: :func:`parse_potential_method` without the ORACLE kernels."""
    return parse_potential_method(name, labelled_pool=False)


def as_adapter(model: Any) -> PotentialAdapter:
    """``model`` as a :class:`PotentialAdapter`: adapters pass through; a model that knows its
    adapter gives it (``model.as_adapter()``: the project's
    :class:`~alhelpers.atomistic.model.AtomisticModel`); MACE and CHGNet models are wrapped."""
    if isinstance(model, PotentialAdapter):
        return model
    if callable(getattr(model, "as_adapter", None)):
        return model.as_adapter()
    if type(model).__module__.startswith("mace."):
        from alhelpers.anymodel.mace import MaceAdapter

        return MaceAdapter(model)
    if type(model).__module__.startswith("chgnet."):
        from alhelpers.anymodel.chgnet import ChgnetAdapter

        return ChgnetAdapter(model)
    raise TypeError(f"no adapter for a {type(model).__name__}: wrap it in a PotentialAdapter (see "
                    "alhelpers.anymodel.adapter; alhelpers/anymodel/mace.py is an example of 100 lines)")


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_arguments(batch: Any, rp_dim: Any, rng: Any, names: Mapping[str, str] | None = None) -> None:
    """Refuse a ``batch`` or ``rp_dim`` below 1 and a negative seed ``rng``, before anything is read
    or computed, naming each as ``names`` spells it (the command passes :data:`FLAGS`)."""
    name = {"batch": "batch", "rp_dim": "rp_dim", "rng": "rng", **(names or {})}
    for key, value in (("batch", batch), ("rp_dim", rp_dim)):
        if not _integer(value):
            raise TypeError(f"{name[key]} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name[key]} must be >= 1, got {value}")
    if isinstance(rng, np.random.Generator):
        return
    if not _integer(rng):
        raise TypeError(f"{name['rng']} must be a seed (an integer >= 0) or a numpy Generator, got {rng!r}")
    if rng < 0:
        raise ValueError(f"{name['rng']} must be >= 0, got {rng}")


def check_pool(batch: int, pool_size: int, name: str = "batch", source: str | os.PathLike | None = None) -> None:
    """Refuse an empty pool and a batch larger than the pool (``name``: how the batch is spelt;
    ``source``: the pool's file, named in the message)."""
    where = "" if source is None else f"{os.fspath(source)}: "
    if pool_size == 0:
        raise ValueError(f"the pool is empty{'' if source is None else f' ({os.fspath(source)})'}: give at least "
                         "one candidate structure")
    if batch > pool_size:
        raise ValueError(f"{name} {batch} is larger than the pool ({where}{pool_size} structures); choose at most "
                         f"{pool_size}")


def read_structures(source: str | os.PathLike | Sequence[Atoms], what: str = "structures") -> list[Atoms]:
    """A list of :class:`ase.Atoms`, or every frame of a file ``ase.io`` reads (extxyz, …)."""
    if isinstance(source, (str, os.PathLike)):
        from ase.io import read

        if not os.path.exists(source):
            raise FileNotFoundError(f"the {what} file {os.fspath(source)!r} does not exist")
        try:
            frames = read(source, index=":")
        except Exception as err:
            raise ValueError(f"the {what} file {os.fspath(source)!r} could not be read by ase.io ({err}); "
                             "give an extxyz file (or any format ase.io.read knows)") from err
        _check_frames(frames, os.fspath(source))
        return list(frames)
    out = list(source)
    bad = [k for k, a in enumerate(out) if not isinstance(a, Atoms)]
    if bad:
        raise TypeError(f"the {what} must be ase.Atoms; items {bad[:5]} are not")
    return out


def _check_frames(frames: Sequence[Atoms], source: str) -> None:
    """Refuse a frame with non-finite numbers or atoms too close, naming the file, the frame and
    (for the xyz family) the line it starts on."""
    from alhelpers.structures import frame_line, structure_problem

    for k, atoms in enumerate(frames):
        results = atoms.calc.results if atoms.calc is not None else {}
        problem = structure_problem(atoms, float(results.get("energy", np.nan)), results.get("forces"))
        if problem:
            raise ValueError(f"{frame_line(source, frames, k)}: frame {k}: {problem}")


@dataclass
class Selection:
    """The batch to label: pool indices in selection order, per-structure scores and timings."""

    method: str
    indices: np.ndarray
    scores: np.ndarray
    timings: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One row per pool structure: ``pool_index, score, selected, rank`` (rank 1 = first picked)."""
        rank = np.zeros(len(self.scores), dtype=np.int64)
        rank[self.indices] = np.arange(1, len(self.indices) + 1)
        return pd.DataFrame({"pool_index": np.arange(len(self.scores)), "score": self.scores,
                             "selected": rank > 0, "rank": rank})


def _score(method: Method, phi_c: np.ndarray, phi_l: np.ndarray) -> np.ndarray:
    if method.gp or method.rule in ("maxdet", "maxdiag"):
        A = gp_posterior_matrix(phi_l).numpy() if (method.gp or method.rule == "maxdet") else None
        psi = phi_c if A is None else phi_c @ A
        return (psi * psi).sum(1)
    from alhelpers.select.distances import nearest_train

    X, T = torch.as_tensor(phi_c), torch.as_tensor(phi_l)
    return nearest_train(X, (X * X).sum(1), T, 4096)[0].numpy()


def adapter_select(method: str | Method, adapter: PotentialAdapter, candidates: Sequence[Atoms],
                   labelled: Sequence[Atoms], batch: int, rng: np.random.Generator, *,
                   committee: Sequence[Any] = (), rp_dim: int = DEFAULT_RP_DIM, max_atoms: int = DEFAULT_MAX_ATOMS,
                   labels: tuple[np.ndarray, Sequence[np.ndarray]] | None = None, timings: dict | None = None,
                   scores: dict | None = None) -> np.ndarray:
    """Positions in ``candidates`` of the next batch (selection order): the loop's call.

    ``labels``: the candidates' energies and forces, for the ORACLE kernels ``ae-e``/``ae-f`` only.
    ``scores`` receives ``"scores"``, one per candidate (see the module docstring).
    """
    m = parse_potential_method(method)
    cand = list(candidates)

    def diagonal(kernel: str, order: np.ndarray) -> np.ndarray:
        sub = [cand[i] for i in order]
        n = np.array([len(a) for a in sub])
        if kernel.startswith("ae-"):
            if labels is None:
                raise ValueError(f"{m.name} needs the candidates' labels (an oracle upper bound)")
            from alhelpers.anymodel.train import predict_adapter

            E, F = predict_adapter(adapter, sub, forces=kernel == "ae-f", max_atoms=max_atoms)
            if kernel == "ae-e":
                return np.abs(E - labels[0][order]) / n
            true = np.concatenate([labels[1][i] for i in order])
            sq = ((np.concatenate(F) - true) ** 2).sum(1)
            return np.sqrt(np.add.reduceat(sq, np.concatenate([[0], np.cumsum(n)[:-1]])) / (3.0 * n))
        if len(committee) < 2:
            raise ValueError(f"{m.name} needs a committee of at least two models or ASE calculators (committee=...)")
        E, F = committee_predictions([as_adapter(c) if not hasattr(c, "calculate") else c for c in committee], sub,
                                     forces=kernel == "qbc-f")
        return energy_spread(E) / n if kernel == "qbc-e" else force_spread(F, n)

    def features(base: str, order: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        phi = gradient_features(adapter, [cand[i] for i in order] + list(labelled), base, p=rp_dim, seed=seed,
                                max_atoms=max_atoms)
        phi_c, phi_l = phi[: len(order)], phi[len(order):]
        if scores is not None:
            sc = np.empty(len(order))
            sc[order] = _score(m, phi_c, phi_l)
            scores["scores"] = sc
        return phi_c, phi_l

    def diagonal_scored(kernel: str, order: np.ndarray) -> np.ndarray:
        d = diagonal(kernel, order)
        if scores is not None:
            sc = np.empty(len(order))
            sc[order] = d
            scores["scores"] = sc
        return d

    pos = bmdal_batch(m, len(cand), batch, rng, diagonal=diagonal_scored, features=features, timings=timings)
    if scores is not None and "scores" not in scores:  # random: its RND values are not kept
        scores["scores"] = np.full(len(cand), np.nan)
    return pos


def adapter_uncertainty(method: Method, adapter: PotentialAdapter, test: Sequence[Atoms], labelled: Sequence[Atoms],
                        *, committee: Sequence[Any] = (), rp_dim: int, seed: int) -> np.ndarray:
    """The method's uncertainty on ``test``: the committee spread for QBC kernels (eV/Å for F,
    eV/atom for E), else the GP posterior standard deviation of its base features (FEAT(LL)
    for methods with neither)."""
    n = np.array([len(a) for a in test])
    if method.kernel in ("qbc-e", "qbc-f"):
        E, F = committee_predictions(list(committee), list(test), forces=method.kernel == "qbc-f")
        return energy_spread(E) / n if method.kernel == "qbc-e" else force_spread(F, n)
    phi = gradient_features(adapter, list(test) + list(labelled), method.base or "ll", p=rp_dim, seed=seed)
    psi = phi[: len(test)] @ gp_posterior_matrix(phi[len(test):]).numpy()
    return np.sqrt((psi * psi).sum(1))


def select_structures(model: Any, train: str | os.PathLike | Sequence[Atoms], pool: str | os.PathLike | Sequence[Atoms],
                      *, method: str = "lcmd-feat-rp", batch: int = 10, rng: np.random.Generator | int = 0,
                      committee: Sequence[Any] = (), rp_dim: int = DEFAULT_RP_DIM,
                      max_atoms: int = DEFAULT_MAX_ATOMS) -> Selection:
    """The ``batch`` pool structures to label next with ``method``, for any potential.

    Args:
        model: A :class:`~alhelpers.anymodel.adapter.PotentialAdapter`, or a model
            :func:`as_adapter` wraps (the project's potential, MACE).
        train: The labelled training structures (their labels are not needed).
        pool: The unlabelled candidates.
        method: ``random`` or ``<rule>-<kernel>`` (see the module docstring).
        batch: Structures to select: at least 1, at most the pool's size.
        rng: The selection's randomness (tie order, RND, FEAT(RP) matrices): a generator or a seed >= 0.
        committee: Members for QBC kernels (adapters, models or ASE calculators).
        rp_dim: Sketch dimension of FEAT(RP) (>= 1).
        max_atoms: Atoms per batch of the feature passes (memory bound).

    Raises:
        ValueError: An unknown method, ``batch`` or ``rp_dim`` below 1, a negative seed, an empty
            pool or a batch larger than it (each named), a bad structure (file, frame and line).
    """
    m = parse_any_method(method)
    check_arguments(batch, rp_dim, rng)
    adapter = as_adapter(model)
    train_atoms, pool_atoms = read_structures(train, "training set"), read_structures(pool, "pool")
    check_pool(int(batch), len(pool_atoms))
    if m.base is not None and not train_atoms and (m.gp or m.rule in ("maxdist", "lcmd")):
        raise ValueError(f"{m.name} compares the pool with the training set, which is empty")
    gen = rng if isinstance(rng, np.random.Generator) else stream(int(rng))
    timings: dict = {}
    scores: dict = {}
    idx = adapter_select(m, adapter, pool_atoms, train_atoms, int(batch), gen, committee=committee, rp_dim=rp_dim,
                         max_atoms=max_atoms, timings=timings, scores=scores)
    return Selection(m.name, np.asarray(idx, dtype=np.int64), scores["scores"], timings)
