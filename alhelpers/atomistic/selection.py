"""The potential's side of BMDAL: its feature map and diagonal scores, and its uncertainty.

A method (:mod:`alhelpers.select.methods`) is applied to the potential through the one adapter
:func:`~alhelpers.select.methods.bmdal_batch`; this module supplies what the potential offers:

* feature maps FEAT(LL)/FEAT(RP) of the potential (:mod:`alhelpers.atomistic.features`);
* diagonal scores ``qbc-e``/``qbc-f`` (ensemble spread of energies / forces of the given models)
  and ``ae-e``/``ae-f`` (the error against the candidates' labels — an ORACLE upper bound, only
  with a labelled pool).

MAXDIST and LCMD run in TP mode (the labelled structures are centres).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from alhelpers.anymodel.select import parse_potential_method
from alhelpers.atomistic.features import (
    ae_energy,
    ae_forces,
    ll_features,
    qbc_energy,
    qbc_forces,
    rp_features,
)
from alhelpers.neighbours import GraphCache
from alhelpers.select.features import DEFAULT_RP_DIM, gp_posterior_matrix
from alhelpers.select.methods import Method, bmdal_batch
from alhelpers.structures import StructureSet

__all__ = ["base_features", "select_batch", "uncertainty"]

def base_features(base: str, model, sets: Sequence[StructureSet], *, p: int, seed: int,
                  cache: GraphCache) -> list[np.ndarray]:
    """FEAT(LL) or FEAT(RP) of several sets with one map (one call, so RP uses the same matrices)."""
    sizes = [len(s) for s in sets]
    structures = [a for s in sets for a in s.structures]
    if base == "ll":
        phi = ll_features(model, structures, cache=cache)
    else:
        phi = rp_features(model, structures, p=p, seed=seed, cache=cache)
    return np.split(phi, np.cumsum(sizes)[:-1])


def _diagonal(method: Method, models: Sequence, candidates: StructureSet, cache: GraphCache):
    def scores(kernel: str, order: np.ndarray) -> np.ndarray:
        cand = candidates.subset(order)
        if kernel == "qbc-e":
            return qbc_energy(models, cand, cache=cache)
        if kernel == "qbc-f":
            return qbc_forces(models, cand, cache=cache)
        if not np.isfinite(cand.energy).all():
            raise ValueError(f"{method.name} needs the candidates' labels (an oracle upper bound): use a labelled pool")
        if kernel == "ae-f":
            return ae_forces(models[0], cand, cache=cache)
        return ae_energy(models[0], cand, per_atom=True, cache=cache)

    return scores


def select_batch(
    method: str | Method,
    *,
    models: Sequence,
    candidates: StructureSet,
    labelled: StructureSet,
    batch: int,
    rng: np.random.Generator,
    rp_dim: int = DEFAULT_RP_DIM,
    cache: GraphCache | None = None,
    timings: dict | None = None,
    known: dict | None = None,
) -> np.ndarray:
    """Positions in ``candidates`` of the next batch (selection order) for a potential.

    ``models[0]`` is the current potential; QBC kernels use all ``models``. AE kernels read the
    candidates' labels and raise if they are missing. ``timings`` receives ``feature_s`` and
    ``query_s``. ``known``: what :func:`uncertainty` already computed for these candidates with
    these models (``keep``, rows in the candidates' order), so it is not computed again:
    ``"ll"``: (FEAT(LL) of the candidates, of ``labelled``), ``"qbc-f"``/``"qbc-e"``: their scores.
    """
    m = parse_potential_method(method)
    cache = cache if cache is not None else GraphCache()
    known = known or {}

    def features(base: str, order: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if base in known:  # seed-free (FEAT(LL))
            phi_c, phi_l = known[base]
            return phi_c[order], phi_l
        phi_c, phi_l = base_features(base, models[0], [candidates.subset(order), labelled], p=rp_dim,
                                     seed=seed, cache=cache)
        return phi_c, phi_l  # one map for both, so FEAT(RP) uses the same matrices

    compute = _diagonal(m, models, candidates, cache)

    def diagonal(kernel: str, order: np.ndarray) -> np.ndarray:
        return known[kernel][order] if kernel in known else compute(kernel, order)

    return bmdal_batch(m, len(candidates), batch, rng, diagonal=diagonal, features=features, timings=timings)


def uncertainty(method: Method, models: Sequence, test: StructureSet, labelled: StructureSet, *,
                rp_dim: int, seed: int, cache: GraphCache, keep: dict | None = None) -> np.ndarray:
    """A method's uncertainty on the test structures: the ensemble spread for QBC kernels, else
    the GP posterior standard deviation of the method's base features (FEAT(LL) for methods with
    neither, e.g. ``random``). ``keep`` receives what :func:`select_batch` can reuse (its
    ``known``): the QBC(F) scores, or FEAT(LL) of ``test`` and of ``labelled``."""
    keep = keep if keep is not None else {}
    if method.kernel == "qbc-f":
        keep["qbc-f"] = qbc_forces(models, test, cache=cache)
        return keep["qbc-f"]
    if method.kernel == "qbc-e":
        return qbc_energy(models, test, per_atom=True, cache=cache)  # per atom: not the selection's score
    base = method.base or "ll"
    phi_t, phi_l = base_features(base, models[0], [test, labelled], p=rp_dim, seed=seed, cache=cache)
    if base == "ll":
        keep["ll"] = (phi_t, phi_l)
    A = gp_posterior_matrix(phi_l).numpy()
    psi = phi_t @ A
    return np.sqrt((psi * psi).sum(1))
