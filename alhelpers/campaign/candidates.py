"""Candidate compositions of a chemical system: every charge-balanced formula up to N atoms.

A composition is *charge-balanced* when pymatgen finds oxidation states for it
(:meth:`pymatgen.core.Composition.oxi_state_guesses`, with the oxidation states seen in the ICSD;
an element may take several, so mixed valence such as Ti2+/Ti3+ in LiTi2O3 counts). Elements alone
are no candidates; every composition is reduced (Li2O, never Li4O2), with at most ``max_atoms``
atoms per formula unit.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence

__all__ = ["charge_balanced"]


def _counts(n_elements: int, max_atoms: int):
    """Atom counts per element (each ≥ 0, at least two elements present), total ≤ ``max_atoms``,
    with no common divisor."""
    for counts in itertools.product(range(max_atoms + 1), repeat=n_elements):
        present = [c for c in counts if c]
        if len(present) >= 2 and sum(counts) <= max_atoms and math.gcd(*present) == 1:
            yield counts


def charge_balanced(elements: Sequence[str], max_atoms: int) -> list[str]:
    """Reduced formulas of every charge-balanced compound of ``elements`` with at most ``max_atoms``
    atoms per formula unit, binaries included, sorted by number of atoms then formula.

    ``ValueError`` for an unknown element symbol, fewer than two elements or ``max_atoms`` < 2.
    """
    from pymatgen.core import Composition

    from alhelpers.data.systems import canonical_system, system_elements

    if isinstance(max_atoms, bool) or not isinstance(max_atoms, int) or max_atoms < 2:
        raise ValueError(f"--max-atoms must be a whole number >= 2 (atoms per formula unit), got {max_atoms!r}")
    els = list(system_elements(canonical_system("-".join(elements))))
    if len(els) < 2:
        raise ValueError(f"a chemical system needs at least two elements to have compounds, got {'-'.join(els)!r}")
    if len(els) > 5 or max_atoms > 20:
        raise ValueError(f"{len(els)} elements up to {max_atoms} atoms are too many compositions to enumerate; "
                         "use at most 5 elements and --max-atoms 20, or give --candidates TABLE")
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for counts in _counts(len(els), max_atoms):
            comp = Composition({e: c for e, c in zip(els, counts) if c})
            if comp.oxi_state_guesses():
                out.append((int(comp.num_atoms), comp.reduced_formula))
    return [f for _, f in sorted(set(out))]
