"""The stability strategies' selection: candidates likely to lie below the convex hull (STUDY §4).

:class:`HullInputs` is what they read from a :class:`~alhelpers.select.strategies.QueryContext`;
:func:`select_stability` picks the batch (the scores are :mod:`alhelpers.formation.hull`'s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alhelpers.select.rules import maxdiag

__all__ = ["HullInputs", "select_stability"]

IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class HullInputs:
    """What the stability strategies read, one value per candidate (eV/atom): the predicted
    formation energy, its calibrated σ' and the labelled compounds' hull energy there."""

    mean: np.ndarray
    sigma: np.ndarray
    hull: np.ndarray
    #: (labelled formulas, their labels, candidate formulas): the batch is then built greedily,
    #: believing each pick (:func:`select_stability`); None: the top scores.
    formulas: tuple | None = None



def select_stability(mean: npt.ArrayLike, sigma: npt.ArrayLike, hull: npt.ArrayLike, batch_size: int, *,
                     rng: np.random.Generator, score: str = "probability",
                     formulas: tuple[Sequence[str], npt.ArrayLike, Sequence[str]] | None = None) -> IntArray:
    """``batch_size`` candidates by how likely (``score="probability"``: P(E < E_hull)) or how far
    (``"improvement"``: the expected drop below the hull, eV/atom) they lie below the convex hull
    of the labelled compounds (:mod:`alhelpers.formation.hull`), for predicted formation energies
    ``mean`` with calibrated ``sigma`` and the hull's energy ``hull`` at each candidate.

    Without ``formulas`` the top ``batch_size`` scores. With ``formulas`` = (labelled formulas,
    their labels, candidate formulas) the batch is built greedily: after each pick predicted
    below the hull, the pick is *believed* — added to the labelled compounds at its predicted
    energy — and the hull is recomputed for the candidates it can lower (those with all of its
    elements), so a batch does not spend its labels on rivals for one spot of the hull (the
    kriging believer of batch Bayesian optimisation, Ginsbourger, Le Riche & Carraro 2010).
    """
    from alhelpers.formation.hull import expected_hull_improvement, hull_energies, hull_z

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    # the probability Φ(z) is ranked by z itself: the same order, without Φ's rounding to 1; both
    # scores check their inputs are finite, so MAXDIAG (the top scores, ties by ``rng``) gets no NaN
    fn = {"probability": hull_z, "improvement": expected_hull_improvement}.get(score)
    if fn is None:
        raise ValueError(f"score must be 'probability' or 'improvement', got {score!r}")
    if formulas is None:
        return maxdiag(fn(mean, sigma, hull), batch_size, rng=rng)
    from alhelpers.data.formulas import elements_of

    labelled, labels, cands = formulas
    mu, h = np.asarray(mean, dtype=np.float64), np.array(hull, dtype=np.float64)
    if len(cands) != mu.size:
        raise ValueError(f"{len(cands)} candidate formulas for {mu.size} predictions")
    known_f, known_y = list(labelled), [float(v) for v in np.asarray(labels, dtype=np.float64)]
    els = [elements_of(f) for f in cands]
    free = np.ones(mu.size, dtype=bool)
    picks: list[int] = []
    for _ in range(min(batch_size, mu.size)):
        scores = np.where(free, fn(mu, sigma, h), -np.inf)
        j = int(maxdiag(scores, 1, rng=rng)[0])
        picks.append(j)
        free[j] = False
        if mu[j] < h[j]:  # believed below the hull: it becomes part of it
            known_f.append(cands[j])
            known_y.append(float(mu[j]))
            hit = np.flatnonzero(free & np.array([els[j] <= e for e in els]))
            if hit.size:
                h[hit] = hull_energies(known_f, np.array(known_y), [cands[i] for i in hit])
    return np.asarray(picks, dtype=np.intp)
