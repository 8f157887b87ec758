"""The convex hull of formation energies, and how likely a candidate is to lie below it (STUDY §4).

A compound is *stable* (on the hull) when no mix of other compounds of its elements, the elements
themselves at 0 eV/atom, has a lower formation energy per atom at its composition. The hull is
pymatgen's :class:`~pymatgen.analysis.phase_diagram.PhaseDiagram`, built once per chemical system
(the element set of a query) from the labelled compounds of that system and its subsystems, so a
data set spanning 60 elements never needs a 60-dimensional hull.

For a candidate with predicted formation energy μ and calibrated σ' the hull gives two scores:

* :func:`below_hull_probability` — P(E < E_hull) = Φ((E_hull − μ)/σ'): how likely the candidate
  is stable against what is labelled so far (the *stability* strategy);
* :func:`expected_hull_improvement` — E[max(0, E_hull − E)] = (E_hull − μ)Φ(z) + σ'φ(z): how far
  below the hull it is expected to go (the *stability-ei* strategy; the expected improvement of
  Bayesian optimisation, with the hull as the incumbent).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["below_hull_probability", "expected_hull_improvement", "hull_diagram", "hull_distances", "hull_energies",
           "hull_z",
           "on_hull"]

#: eV/atom: a compound this close to the hull counts as on it (rounding of the labels).
ON_HULL_TOL = 1e-6


def _entries(formulas: Sequence[str], energies: np.ndarray):
    """One pymatgen entry per labelled compound (total energy = formation energy × atoms)."""
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition

    comps = [Composition(f) for f in formulas]
    return [PDEntry(c, float(e) * c.num_atoms, name=str(f)) for c, f, e in zip(comps, formulas, energies)], comps


class _Hulls:
    """Phase diagrams by element set, each from the labelled compounds inside that set."""

    def __init__(self, formulas: Sequence[str], energies: np.ndarray) -> None:
        e = np.asarray(energies, dtype=np.float64)
        if len(formulas) != e.size:
            raise ValueError(f"{len(formulas)} formulas but {e.size} formation energies")
        if not np.isfinite(e).all():
            raise ValueError("formation energies must be finite to build a convex hull")
        self.entries, comps = _entries(formulas, e)
        self.elements = [frozenset(el.symbol for el in c.elements) for c in comps]
        self._cache: dict[frozenset[str], object] = {}

    def diagram(self, elements: frozenset[str]):
        pd_ = self._cache.get(elements)
        if pd_ is None:
            from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
            from pymatgen.core import Composition

            inside = [en for en, els in zip(self.entries, self.elements) if els <= elements]
            refs = [PDEntry(Composition(el), 0.0, name=el) for el in sorted(elements)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pd_ = PhaseDiagram(inside + refs)
            self._cache[elements] = pd_
        return pd_


def hull_diagram(formulas: Sequence[str], energies: np.ndarray, elements: Sequence[str]):
    """pymatgen's :class:`~pymatgen.analysis.phase_diagram.PhaseDiagram` of ``elements`` from the
    compounds among ``formulas`` made of them (the elements at 0 eV/atom)."""
    return _Hulls(formulas, energies).diagram(frozenset(elements))


def hull_energies(labelled: Sequence[str], energies: np.ndarray, queries: Sequence[str]) -> np.ndarray:
    """Formation energy per atom (eV/atom, ≤ 0) of the labelled compounds' hull at each query
    composition: 0 where no labelled compound of the query's elements lies below the elements."""
    from pymatgen.core import Composition

    from alhelpers.data.formulas import elements_of

    hulls = _Hulls(labelled, energies)
    below = [els for els, en in zip(hulls.elements, hulls.entries) if en.energy < 0]  # only these lower the hull
    out = np.zeros(len(queries), dtype=np.float64)
    for i, f in enumerate(queries):
        elements = elements_of(f)  # parsed once per formula (cached)
        if any(els <= elements for els in below):  # else the hull is the elements' plane, 0
            out[i] = hulls.diagram(elements).get_hull_energy_per_atom(Composition(f))
    return out


def hull_distances(formulas: Sequence[str], energies: np.ndarray) -> np.ndarray:
    """Energy above the hull (eV/atom, ≥ 0) of every compound, the hull built from all of them."""
    e = np.asarray(energies, dtype=np.float64)
    hull = hull_energies(formulas, e, formulas)
    return np.maximum(e - hull, 0.0)


def on_hull(formulas: Sequence[str], energies: np.ndarray, *, tol: float = ON_HULL_TOL) -> np.ndarray:
    """Whether each compound is on the hull of all of them (below the elements: a formation
    energy above 0 is never stable)."""
    e = np.asarray(energies, dtype=np.float64)
    return (hull_distances(formulas, e) <= tol) & (e < 0)


def _checked(mean: np.ndarray, sigma: np.ndarray, hull: np.ndarray) -> tuple[np.ndarray, ...]:
    m, s, h = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (mean, sigma, hull))
    if not (m.shape == s.shape == h.shape):
        raise ValueError(f"mean, sigma and hull need one value per candidate, got {m.size}, {s.size}, {h.size}")
    if not (np.isfinite(m).all() and np.isfinite(h).all() and np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("mean and hull must be finite and sigma finite and > 0 (a calibrated σ')")
    return m, s, h


def hull_z(mean: np.ndarray, sigma: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """(hull − mean)/sigma: how many σ' a prediction lies below the hull. It orders candidates as
    :func:`below_hull_probability` does, without the probability's rounding to 1 far below it."""
    m, s, h = _checked(mean, sigma, hull)
    return (h - m) / s


def below_hull_probability(mean: np.ndarray, sigma: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """P(E < E_hull) for E ~ N(mean, sigma²): Φ((hull − mean)/sigma)."""
    return stats.norm.cdf(hull_z(mean, sigma, hull))


def expected_hull_improvement(mean: np.ndarray, sigma: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """E[max(0, hull − E)] for E ~ N(mean, sigma²) (eV/atom): (hull − mean)Φ(z) + sigma φ(z)."""
    m, s, h = _checked(mean, sigma, hull)
    z = (h - m) / s
    return (h - m) * stats.norm.cdf(z) + s * stats.norm.pdf(z)
