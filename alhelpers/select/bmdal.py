"""BMDAL methods as Track A strategies (STUDY §7, §4 item 5).

:data:`BMDAL_METHODS` lists the combinations of STUDY §7 that apply to a single-output regressor;
each is registered as a strategy of the same name, which selects through the one adapter
:func:`alhelpers.select.methods.bmdal_batch` with the ensemble's feature map
(:func:`~alhelpers.select.features.ll_features` / :func:`~alhelpers.select.features.rp_features`
of the ensemble mean). ``maxdiag-qbc`` is the ``uncertainty`` strategy under a second name
(ranking by σ or σ² is the same). AE(E) and the force kernels are not registered: AE needs the
candidates' labels (an oracle) and there are no forces in Track A.

Without a model in the context (``QueryContext.model is None``) the base feature map is the
identity on the standardised descriptors. The time spent on features (and the GP transform) goes
to ``QueryContext.timings["feature_s"]``.
"""

from __future__ import annotations

import numpy as np

from alhelpers.select import features as F
from alhelpers.select.methods import Method, bmdal_batch, parse_method
from alhelpers.select.strategies import QueryContext, register_alias, register_strategy

__all__ = ["BMDAL_METHODS", "TRACK_A_KERNELS", "candidate_features", "parse_track_a_method"]

#: Kernels a single-output regressor offers (no forces, no labels of the candidates).
TRACK_A_KERNELS: tuple[str, ...] = ("qbc", "rnd", "feat-ll", "feat-rp", "gp-ll", "gp-rp")

#: STUDY §7 combinations for a single-output regressor (Track A strategies).
BMDAL_METHODS: tuple[str, ...] = (
    "maxdiag-qbc", "maxdiag-rnd", "maxdiag-gp-ll", "maxdiag-gp-rp",
    "maxdet-gp-ll", "maxdet-gp-rp",
    "maxdist-gp-ll", "maxdist-gp-rp", "maxdist-feat-ll", "maxdist-feat-rp",
    "lcmd-feat-ll", "lcmd-feat-rp",
)


def parse_track_a_method(name: str) -> Method:
    """A BMDAL method name with the kernels Track A's ensemble offers."""
    return parse_method(name, kernels=TRACK_A_KERNELS)


def candidate_features(
    model: object, Z_candidates: np.ndarray, Z_labelled: np.ndarray, base: str, *, seed: int, p: int = F.DEFAULT_RP_DIM
) -> tuple[np.ndarray, np.ndarray]:
    """Base features (``"ll"`` or ``"rp"``) of candidates and labelled rows, from standardised inputs."""
    raw = model.scaler_.inverse_transform  # type: ignore[attr-defined]  # the loop's scaler is the model's fit
    Xc, Xl = raw(np.asarray(Z_candidates, dtype=np.float64)), raw(np.asarray(Z_labelled, dtype=np.float64))
    both = np.concatenate([Xc, Xl]) if len(Xl) else Xc
    if base == "ll":
        phi = F.ll_features(model, both)
    elif base == "rp":
        phi = F.rp_features(model, both, p=p, seed=seed)
    else:
        raise ValueError(f"base must be 'll' or 'rp', got {base!r}")
    return phi[: len(Xc)], phi[len(Xc):]


def _strategy(method: Method):
    def strategy(ctx: QueryContext) -> np.ndarray:
        def features(base: str, order: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
            Zc = np.asarray(ctx.X_candidates, dtype=np.float64)[order]
            if ctx.model is None:  # no network: the identity map on the standardised descriptors
                return Zc, np.asarray(ctx.X_labelled, dtype=np.float64)
            return candidate_features(ctx.model, Zc, ctx.X_labelled, base, seed=seed)

        return bmdal_batch(method, ctx.n_candidates, ctx.batch, ctx.rng, features=features, timings=ctx.timings)

    strategy.__name__ = f"select_{method.name.replace('-', '_')}"
    strategy.__doc__ = f"BMDAL {method.rule.upper()} on {method.kernel.upper()} (STUDY §7)."
    return strategy


def register_bmdal_strategies() -> None:
    """Register every name of :data:`BMDAL_METHODS` (``maxdiag-qbc`` = ``uncertainty``)."""
    for name in BMDAL_METHODS:
        method = parse_track_a_method(name)
        if method.kernel == "qbc":
            register_alias(name, "uncertainty", overwrite=True)
        else:
            register_strategy(name, _strategy(method), overwrite=True)


register_bmdal_strategies()
