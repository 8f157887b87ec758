"""Leakage audit of Track A's descriptors (STUDY §6): can a plain linear model alone predict the target?

A near-perfect linear fit of the formation energy from one descriptor set suggests the descriptors
contain the target (or something computed from it). This is a model fit on the descriptors of
:mod:`alhelpers.formation.features`, not a statistic of the runs (those are in :mod:`alhelpers.stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["leakage_audit", "leakage_table"]


def leakage_audit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    feature_names: Sequence[str],
    cv: int = 5,
    rng_seed: int = 0,
    threshold: float = 0.99,
) -> dict:
    """How well a plain linear model alone predicts the target from one descriptor set (STUDY §6).

    Standardised features → :class:`sklearn.linear_model.RidgeCV` (a linear model whose ridge
    penalty, chosen by internal CV from 1e-6…1e3, only matters when descriptors outnumber rows,
    e.g. 132 Magpie features on 118 Ti–O rows), out-of-fold predictions
    from a shuffled :class:`sklearn.model_selection.KFold` (``cv`` folds, ``random_state=rng_seed``);
    ``r2`` and ``mae`` are computed once over all out-of-fold predictions. ``leaks`` is
    ``r2 >= threshold``: a near-perfect linear fit suggests the descriptors contain the target (or
    something computed from it). ``top_feature``/``top_r``: the single feature with the largest
    |Pearson r| with the target (constant features are skipped; None/NaN if all are constant).

    Returns a dict with ``n_samples, n_features, r2, mae, target_std, leaks, threshold,
    top_feature, top_r``.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must be 1-D with {X.shape[0]} entries (rows of X), got shape {y.shape}")
    names = list(feature_names)
    if len(names) != X.shape[1]:
        raise ValueError(f"feature_names has {len(names)} names for {X.shape[1]} columns of X")
    if not 2 <= int(cv) <= X.shape[0]:
        raise ValueError(f"cv must be between 2 and the number of samples ({X.shape[0]}), got {cv}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-6, 3, 10)))
    folds = KFold(n_splits=int(cv), shuffle=True, random_state=rng_seed)
    pred = cross_val_predict(model, X, y, cv=folds)
    r2 = float(r2_score(y, pred))
    xc = X - X.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((xc**2).sum(axis=0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (xc * yc[:, None]).sum(axis=0) / denom, np.nan)
    if np.isfinite(r).any():
        j = int(np.nanargmax(np.abs(r)))
        top_feature, top_r = names[j], float(sps.pearsonr(X[:, j], y).statistic)
    else:
        top_feature, top_r = None, float("nan")
    return {
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "r2": r2,
        "mae": float(mean_absolute_error(y, pred)),
        "target_std": float(np.std(y, ddof=1)) if len(y) > 1 else float("nan"),
        "leaks": bool(r2 >= threshold),
        "threshold": float(threshold),
        "top_feature": top_feature,
        "top_r": top_r,
    }


def leakage_table(
    feature_sets: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]],
    *,
    cv: int = 5,
    rng_seed: int = 0,
    threshold: float = 0.99,
) -> pd.DataFrame:
    """:func:`leakage_audit` of every descriptor set: one row per ``descriptor`` (the mapping key),
    in the mapping's order. Values are ``(X, y, feature_names)``."""
    if not feature_sets:
        raise ValueError("feature_sets is empty")
    rows = []
    for name, value in feature_sets.items():
        if len(value) != 3:
            raise ValueError(f"feature_sets[{name!r}] must be (X, y, feature_names)")
        X, y, names = value
        rows.append({"descriptor": name, **leakage_audit(X, y, feature_names=names, cv=cv,
                                                          rng_seed=rng_seed, threshold=threshold)})
    return pd.DataFrame(rows)
