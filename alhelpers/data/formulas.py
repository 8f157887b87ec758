"""Chemical formulas: read once, checked, and written with whole-number amounts.

Every formula of the project (your own table, the snapshot, live Materials Project and OQMD rows)
is parsed by :func:`_composition_info`, which refuses text that pymatgen would read as something
else than written, e.g. ``"TIO2"`` (T is tritium to pymatgen, so H–I–O₂) or ``"NACL"`` (A and L
are no elements), saying which formula was probably meant (:func:`suggest_formulas`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: A formula's amounts, each multiplied by the same whole number, must lie within this many atoms
#: of whole numbers (and none may round to 0): ``Li0.33CoO2`` × 3 = Li0.99Co3O6 is read as
#: LiCo3O6, while ``Ba0.51Sr0.49TiO3`` is not read as 1/2 (× 2 gives Ba1.02) but needs × 49.
FRACTION_TOLERANCE = 0.01

#: The largest multiplier tried; a formula that needs more keeps no integer formula (its atom
#: count is unknown) and is removed, with an example, by the atoms-per-cell filter.
MAX_MULTIPLIER = 1000

#: Symbols pymatgen reads as isotopes of hydrogen (and then as H): a formula written in capitals,
#: ``"TIO2"``, would be read as H–I–O₂. A formula with either is refused (:class:`FormulaError`).
HYDROGEN_ISOTOPES: dict[str, str] = {"D": "deuterium", "T": "tritium"}

#: How many formulas (or spellings) a "did you mean" offers.
_N_SUGGESTIONS = 2


class FormulaError(ValueError):
    """A formula pymatgen cannot read as written as one of real elements.

    ``reason`` says why, with the formula probably meant where there is one, e.g. ``"T is
    tritium, an isotope of hydrogen, to pymatgen; did you mean 'TiO2'?"``.
    """

    def __init__(self, formula: str, reason: str) -> None:
        self.formula, self.reason = formula, reason
        super().__init__(f"{formula!r} is not a chemical formula pymatgen reads as written ({reason})")


def is_element_symbol(text: str) -> bool:
    """An element symbol as written (case-sensitive); not ``D`` or ``T`` (hydrogen isotopes)."""
    from pymatgen.core.periodic_table import Element

    return text not in HYDROGEN_ISOTOPES and Element.is_valid_symbol(text)


def _spellings(letters: str) -> list[list[str]]:
    """Every way to read ``letters`` (case aside) as element symbols, fewest symbols first:
    ``"tio"`` → ``[["Ti", "O"]]``, ``"co"`` → ``[["Co"], ["C", "O"]]``."""
    if not letters:
        return [[]]
    out = []
    for n in (2, 1):
        head = letters[:n].capitalize()
        if len(head) == n and is_element_symbol(head):
            out += [[head, *rest] for rest in _spellings(letters[n:])]
    return sorted(out, key=len)


def suggest_formulas(formula: str) -> list[str]:
    """Formulas of real elements ``formula`` probably meant, read with other capitals: ``"TIO2"``
    → ``["TiO2"]``, ``"NACL"`` → ``["NaCl"]``, ``"co"`` → ``["Co", "CO"]`` (fewest symbols
    first, at most two); ``[]`` when none (``"D2O"``, ``"Xq2"``)."""
    pieces = re.split(r"([A-Za-z]+)", formula)
    options = [[p] if i % 2 == 0 else ["".join(s) for s in _spellings(p)] for i, p in enumerate(pieces)]
    from pymatgen.core import Composition

    out = []
    for combo in itertools.islice(itertools.product(*options), 50):
        text = "".join(combo)
        if text != formula and text not in out:
            try:
                Composition(text)
            except Exception:  # noqa: BLE001  (other characters pymatgen cannot read)
                continue
            out.append(text)
    return sorted(out, key=lambda t: len(re.findall(r"[A-Z]", t)))[:_N_SUGGESTIONS]


def _did_you_mean(formula: str, otherwise: str = "") -> str:
    """``"; did you mean 'TiO2'?"`` (or ``'Co' or 'CO'``), else ``otherwise``."""
    meant = suggest_formulas(formula)
    return f"; did you mean {' or '.join(map(repr, meant))}?" if meant else otherwise


@lru_cache(maxsize=None)
def _composition_info(formula: str) -> tuple[frozenset[str], str, int, tuple[tuple[str, float], ...]]:
    """Elements, reduced formula, atom count and amount per element (in the formula's order) of a
    formula, every formula of the project parsed here; :class:`FormulaError` for text pymatgen cannot read, symbols that are no elements
    (``"NACL"``: A, L) and the hydrogen isotopes D and T (``"TIO2"``), with the formula meant."""
    from pymatgen.core import Composition

    isotopes = sorted({s for s in re.findall(r"[A-Z][a-z]*", formula) if s in HYDROGEN_ISOTOPES})
    if isotopes:
        what = " and ".join(f"{s} is {HYDROGEN_ISOTOPES[s]}" for s in isotopes)
        raise FormulaError(formula, f"{what}, an isotope of hydrogen, to pymatgen"
                           + _did_you_mean(formula, "; write H for hydrogen"))
    try:
        comp = Composition(formula)
    except Exception:  # noqa: BLE001  (pymatgen raises several types for bad formulas)
        raise FormulaError(formula, "pymatgen cannot read it" + _did_you_mean(formula)) from None
    not_elements = [e.symbol for e in comp.elements if type(e).__name__ != "Element"]
    if not_elements:
        verb = "is not an element" if len(not_elements) == 1 else "are not elements"
        raise FormulaError(formula, f"{', '.join(not_elements)} {verb}" + _did_you_mean(formula))
    if comp.num_atoms <= 0:
        raise FormulaError(formula, "it has no atoms")
    return (
        frozenset(el.symbol for el in comp.elements),
        comp.reduced_formula,
        int(round(comp.num_atoms)),
        tuple(comp.get_el_amt_dict().items()),
    )


def elements_of(formula: str) -> frozenset[str]:
    """Chemical elements in a formula (``"TiO2"`` → ``{"Ti", "O"}``)."""
    return _composition_info(formula)[0]


def reduced_formula(formula: str) -> str:
    return _composition_info(formula)[1]


def atoms_in_formula(formula: str) -> int:
    return _composition_info(formula)[2]


@lru_cache(maxsize=None)
def integer_formula(formula: str) -> tuple[str, int] | None:
    """The formula with whole-number amounts and its atom count.

    A formula whose amounts are whole numbers is returned as written (``"Ti2O4"`` → ``("Ti2O4",
    6)``). Otherwise the amounts are multiplied by the smallest whole number (up to
    :data:`MAX_MULTIPLIER`) that brings each within :data:`FRACTION_TOLERANCE` of a whole number
    of at least 1 and divided by their greatest common divisor, element order kept:
    ``"Fe0.5Ni0.5"`` → ``("FeNi", 2)``, ``"Li0.33CoO2"`` → ``("LiCo3O6", 10)``,
    ``"Ba0.51Sr0.49TiO3"`` → ``("Ba25Sr24Ti49O147", 245)`` (then removed by the 2–50 atoms
    filter). None when no multiplier works. :class:`FormulaError` (a ``ValueError``) for a
    formula that is not one of real elements (``"TIO2"``: T is tritium; did you mean ``TiO2``?).

    (pymatgen's ``Composition.get_integer_formula_and_factor`` is not used: its tolerance
    can round a minority element away — ``Li0.05CoO2`` → ``CoO2`` — and it groups
    polyanions, ``Li(CoO2)3``.)
    """
    amounts = dict(_composition_info(formula)[3])  # FormulaError for formulas that are not real elements
    if all(abs(a - round(a)) < 1e-9 for a in amounts.values()):
        return formula, int(round(sum(amounts.values())))
    for m in range(1, MAX_MULTIPLIER + 1):
        scaled = {el: a * m for el, a in amounts.items()}
        whole = {el: round(x) for el, x in scaled.items()}
        if all(w >= 1 and abs(x - w) <= FRACTION_TOLERANCE + 1e-9
               for x, w in zip(scaled.values(), whole.values(), strict=True)):
            divisor = math.gcd(*whole.values())
            counts = {el: w // divisor for el, w in whole.items()}
            text = "".join(f"{el}{n if n != 1 else ''}" for el, n in counts.items())
            return text, sum(counts.values())
    return None


def atom_counts(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Atom counts as int64, or as float when one is unknown (NaN) or not a whole number."""
    arr = np.asarray(values, dtype=float)
    whole = np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))
    return arr.astype(np.int64) if whole else arr
