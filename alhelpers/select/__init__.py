"""Query strategies and their registry (STUDY §4, and later the BMDAL rules of §7)."""

from __future__ import annotations

from alhelpers.select.strategies import (
    STRATEGIES,
    QueryContext,
    Strategy,
    get_strategy,
    minmax,
    nearest_distance,
    needs_variance,
    register_strategy,
    select_diversity,
    select_hybrid,
    select_random,
    select_uncertainty,
    top_k,
)
from alhelpers.select.bmdal import BMDAL_METHODS, bmdal_select, candidate_features, parse_method
from alhelpers.select.features import (
    GradientSketch,
    gp_posterior_matrix,
    ll_features,
    rp_features,
)
from alhelpers.select.rules import lcmd, maxdet, maxdiag, maxdist

__all__ = [
    "BMDAL_METHODS",
    "GradientSketch",
    "bmdal_select",
    "candidate_features",
    "gp_posterior_matrix",
    "lcmd",
    "ll_features",
    "maxdet",
    "maxdiag",
    "maxdist",
    "parse_method",
    "rp_features",
    "STRATEGIES",
    "QueryContext",
    "Strategy",
    "get_strategy",
    "minmax",
    "nearest_distance",
    "needs_variance",
    "register_strategy",
    "select_diversity",
    "select_hybrid",
    "select_random",
    "select_uncertainty",
    "top_k",
]
