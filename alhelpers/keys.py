"""Column names used across the project, defined once.

Every tidy table in the project (entries, features, results) uses these names, so that a
typo is an ``AttributeError`` rather than a silently missing column.
"""

from __future__ import annotations

from enum import StrEnum


class Key(StrEnum):
    """Columns of the tidy *entries* table (one row per database entry, STUDY §1)."""

    source = "source"  # "mp" | "oqmd" | "file"
    dataset = "dataset"  # where the row came from, e.g. "flla_2015", "qmpy_legacy", "mp_api"
    entry_id = "entry_id"
    formula = "formula"  # reduced-or-full formula string readable by pymatgen Composition
    nsites = "nsites"  # atoms per cell (composition-only rows: atoms in the formula)
    target = "formation_energy_per_atom"  # eV/atom
    energy_per_atom = "energy_per_atom"
    band_gap = "band_gap"
    density = "density"
    volume = "volume"
    e_above_hull = "e_above_hull"
    is_stable = "is_stable"
    structure = "structure"  # pymatgen Structure as a JSON string (None when composition-only)
    system = "system"
    elements = "elements"  # sorted element symbols joined by spaces, e.g. "O Ti" (fast system selection)


#: Columns every entries table has, in this order (others may follow).
ENTRY_COLUMNS: tuple[str, ...] = (
    Key.source,
    Key.dataset,
    Key.entry_id,
    Key.formula,
    Key.nsites,
    Key.target,
)

#: Optional property columns; a source that lacks one reports it as missing.
PROPERTY_COLUMNS: tuple[str, ...] = (
    Key.energy_per_atom,
    Key.band_gap,
    Key.density,
    Key.volume,
    Key.e_above_hull,
    Key.is_stable,
    Key.structure,
)

#: Material systems of the study (STUDY §1) and the elements each must contain.
SYSTEMS: dict[str, tuple[str, ...]] = {
    "C": ("C",),
    "Si": ("Si",),
    "Fe": ("Fe",),
    "Ti-O": ("Ti", "O"),
}
