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

__all__ = [
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
