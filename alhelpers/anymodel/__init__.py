"""Batch active learning for any PyTorch potential (STUDY §7 on MACE, NequIP, your own model).

* :mod:`~alhelpers.anymodel.adapter` — the small interface a model needs (:class:`PotentialAdapter`).
* :mod:`~alhelpers.anymodel.gradients` — FEAT(LL), FEAT(RP) and the exact gradient of any adapted
  model, from forward hooks and one backward pass per batch.
* :mod:`~alhelpers.anymodel.select` — :func:`select_structures`, the entry point: model, training
  set and pool in; the batch to label, per-structure scores and timings out.
* :mod:`~alhelpers.anymodel.committee` — QBC(E)/QBC(F) of models or ASE calculators.
* :mod:`~alhelpers.anymodel.train` — training and prediction of any adapted model.
* :mod:`~alhelpers.anymodel.io` — model files in, the selection out (extxyz, CSV).
* :mod:`~alhelpers.anymodel.mace` — MACE (optional extra ``alhelpers[mace]``).

The command ``python -m alhelpers.select MODEL TRAIN POOL`` wraps :func:`select_structures`.
"""
