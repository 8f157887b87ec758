"""Query strategies and their registry (STUDY §4) and the BMDAL methods of §7.

``strategies`` (Track A's registry and its four strategies), ``methods`` (the one BMDAL grammar
and adapter, both tracks), ``bmdal`` (BMDAL methods registered as Track A strategies),
``features`` (gradient feature maps, GP transform, diagonal scores) and ``rules`` (the selection
rules, made fast by ``engine``).
"""

from __future__ import annotations

from alhelpers.select.strategies import (
    STRATEGIES,
    QueryContext,
    Strategy,
    get_strategy,
    minmax,
    nearest_distance,
    needs_variance,
    register_alias,
    register_strategy,
    select_diversity,
    select_hybrid,
    select_random,
    select_uncertainty,
    top_k,
)
from alhelpers.select.bmdal import BMDAL_METHODS, candidate_features, parse_track_a_method
from alhelpers.select.methods import Method, bmdal_batch, bmdal_select, parse_method
from alhelpers.select.features import (
    GradientSketch,
    gp_posterior_matrix,
    ll_features,
    rp_features,
)
from alhelpers.select.rules import lcmd, maxdet, maxdiag, maxdist

__all__ = [
    "BMDAL_METHODS",
    "Method",
    "bmdal_batch",
    "parse_track_a_method",
    "register_alias",
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
