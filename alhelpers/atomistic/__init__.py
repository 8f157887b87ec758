"""Track B: atomistic neural-network potentials with energies and forces, and BMDAL on them (STUDY §7–§8).

* :mod:`~alhelpers.structures` — :class:`StructureSet`, the labelled structures.
* :mod:`~alhelpers.atomistic.data` — the data sets, one module each: TiO2 / LMNTO DFT sets (with
  downloads), the offline GFN2-xTB aspirin MD set (recipe and loader), QM9; XSF readers and splits.
* :mod:`~alhelpers.atomistic.oracle` — labels on demand: known labels or any ASE calculator.
* :mod:`~alhelpers.neighbours`, :mod:`~alhelpers.atomistic.descriptor`,
  :mod:`~alhelpers.atomistic.frozen` (fixed positions, fast forces), :mod:`~alhelpers.atomistic.model`,
  :mod:`~alhelpers.atomistic.train` — the potential.
* :mod:`~alhelpers.atomistic.features` — FEAT(LL), FEAT(RP), QBC(E/F), AE(E/F) per structure.
* :mod:`~alhelpers.atomistic.selection` — the potential's side of BMDAL: its feature maps and
  diagonal scores for the one method adapter, and its uncertainty.
* :mod:`~alhelpers.atomistic.config` — :class:`PotentialsConfig`, one per run (seed included).
* :mod:`~alhelpers.atomistic.al` — the round body of the AL loop on the shared driver.
"""

from alhelpers.structures import StructureSet

__all__ = ["StructureSet"]
