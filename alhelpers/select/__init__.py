"""Query strategies and their registry (STUDY §4) and the BMDAL methods of §7.

``strategies`` (Track A's registry and its four strategies), ``methods`` (the one BMDAL grammar
and adapter, both tracks), ``bmdal`` (BMDAL methods registered as Track A strategies),
``features`` (gradient feature maps, GP transform, diagonal scores) and ``rules`` (the selection
rules, made fast by ``engine``).
"""

from __future__ import annotations

from alhelpers.select import bmdal, methods, strategies
from alhelpers.select.bmdal import *  # noqa: F403  (BMDAL methods registered as Track A strategies)
from alhelpers.select.features import GradientSketch, gp_posterior_matrix, ll_features, rp_features
from alhelpers.select.methods import *  # noqa: F403  (the one BMDAL grammar and adapter)
from alhelpers.select.rules import lcmd, maxdet, maxdiag, maxdist
from alhelpers.select.strategies import *  # noqa: F403  (Track A's registry and strategies)

#: The public names of ``strategies``, ``methods`` and ``bmdal``, and the feature maps and rules.
__all__ = [*strategies.__all__, *methods.__all__, *bmdal.__all__, "GradientSketch", "gp_posterior_matrix",
           "ll_features", "rp_features", "lcmd", "maxdet", "maxdiag", "maxdist"]
