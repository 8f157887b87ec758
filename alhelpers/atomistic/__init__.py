"""Track B: atomistic neural-network potentials with energies and forces, and BMDAL on them (STUDY §7–§8).

* :mod:`~alhelpers.atomistic.structures` — :class:`StructureSet`, the labelled structures.
* :mod:`~alhelpers.atomistic.data` — XSF readers, the TiO2 / LMNTO DFT sets (with downloads), QM9.
* :mod:`~alhelpers.atomistic.mdset` — the offline GFN2-xTB aspirin MD set (recipe and loader).
* :mod:`~alhelpers.atomistic.oracle` — labels on demand: known labels or any ASE calculator.
* :mod:`~alhelpers.atomistic.neighbours`, :mod:`~alhelpers.atomistic.descriptor`,
  :mod:`~alhelpers.atomistic.model`, :mod:`~alhelpers.atomistic.train` — the potential.
* :mod:`~alhelpers.atomistic.features` — FEAT(LL), FEAT(RP), QBC(E/F), AE(E/F) per structure.
* :mod:`~alhelpers.atomistic.al` — the active-learning loop and its methods.
"""

from alhelpers.atomistic.structures import StructureSet

__all__ = ["StructureSet"]
