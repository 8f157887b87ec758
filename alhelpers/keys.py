"""Column names used across the project, defined once.

Every tidy table in the project (entries, features, runs of both tracks, statistics) uses these
names, so that a typo is an ``AttributeError`` rather than a silently missing column, and a
quantity has one name in both tracks (``strategy``, ``n_labelled``, ``fit_s``, ``query_s``…).
"""

from __future__ import annotations

from enum import StrEnum


class Key(StrEnum):
    """Columns of the tidy tables: entries (one row per database entry, STUDY §1) and runs
    (one row per run and round, both tracks)."""

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

    # runs tables (Track A: system = chemical system; Track B: system = the structure data set)
    descriptor = "descriptor"  # Track A: the composition descriptor
    model = "model"  # Track B: the potential, "gm" (the project's), "mace" or "chgnet"
    batch = "batch"  # Track B: structures added per round
    direction = "direction"  # cross-database runs: "mp→oqmd" (pool from one database, test on the other)
    strategy = "strategy"  # query strategy or BMDAL method, e.g. "random", "lcmd-feat-ll"
    seed = "seed"
    round = "round"  # 0 = trained on the initial labelled set
    n_labelled = "n_labelled"  # labelled points the round's model was trained on
    fit_s = "fit_s"  # seconds training the evaluated model
    feature_s = "feature_s"  # seconds on selection features (gradients, GP transform, extra members)
    query_s = "query_s"  # seconds in the selection rule
    label_s = "label_s"  # seconds asking the oracle (Track B)
    note = "note"  # why a run stopped early ("pool exhausted …"), else ""
    config_id = "config_id"  # hash of the protocol the row was computed with (runs of one id compare)
    code_id = "code_id"  # hash of the alhelpers source that computed the row (alhelpers.provenance.code_id)

    # calibration of the uncertainty on the test set (alhelpers.calibration), both tracks
    nll = "nll"  # mean Gaussian negative log-likelihood of the errors under σ
    z2_mean = "z2_mean"  # mean squared z-score (1 when calibrated)
    miscal_area = "miscal_area"  # miscalibration area (0 perfect)
    ence = "ence"  # expected normalised calibration error (0 perfect)
    nll_cal = "nll_cal"  # the same for the recalibrated σ (sigma_scale · σ)
    z2_mean_cal = "z2_mean_cal"
    miscal_area_cal = "miscal_area_cal"
    ence_cal = "ence_cal"
    sigma_scale = "sigma_scale"  # σ factor fitted without the test set (Track A: CV on the labelled rows)
    sigma_floor = "sigma_floor"  # error floor of the recalibrated σ' = √((scale·σ)² + floor²)
    mae_pred = "mae_pred"  # test MAE predicted from the recalibrated σ of the unlabelled pool


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

#: Columns that name a learning curve's setting besides the strategy (those present are used).
SETTING_COLUMNS: tuple[str, ...] = (Key.system, Key.model, Key.descriptor, Key.direction, Key.batch)
#: Columns that measure time, so they differ between otherwise identical runs.
TIMING_COLUMNS: tuple[str, ...] = (Key.fit_s, Key.feature_s, Key.query_s, Key.label_s)


def setting_columns(columns) -> tuple[str, ...]:
    """The setting columns among ``columns`` (a runs table or its column names), in order."""
    present = set(columns)
    return tuple(str(c) for c in SETTING_COLUMNS if c in present)


#: Material systems of the study (STUDY §1) and the elements each must contain.
SYSTEMS: dict[str, tuple[str, ...]] = {
    "C": ("C",),
    "Si": ("Si",),
    "Fe": ("Fe",),
    "Ti-O": ("Ti", "O"),
}
