"""BMDAL methods by name and as Track A strategies (STUDY §7, §4 item 5).

A method name is ``<rule>-<kernel>``: rule ∈ ``maxdiag``, ``maxdet``, ``maxdist``, ``lcmd``;
kernel ∈ ``qbc`` (ensemble standard deviation), ``rnd`` (uniform scores), ``feat-ll``,
``feat-rp`` (FEAT(LL)/FEAT(RP) of the ensemble mean), ``gp-ll``, ``gp-rp`` (their GP posterior
with the trace-rule σ²). :data:`BMDAL_METHODS` lists the combinations of STUDY §7 that apply to a
single-output regressor; each is registered as a strategy of the same name. ``maxdiag-qbc`` is the
existing ``uncertainty`` strategy under a second name (ranking by σ or σ² is the same).
AE(E) and the force kernels QBC(F)/AE(F) are not registered: AE needs the candidates' labels (an
oracle, see :func:`~alhelpers.select.features.ae_scores`) and there are no forces in Track A.

Without a model in the context (``QueryContext.model is None``) the base feature map is the
identity on the standardised descriptors. Every strategy permutes the candidates with ``QueryContext.rng`` before the (deterministic,
lowest-position-wins) rule, so exact ties are broken at random with the passed generator; the RP
matrices are seeded from the same generator. The time spent on features (and the GP transform)
goes to ``QueryContext.timings["feature_s"]``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from alhelpers.select import features as F
from alhelpers.select import rules as R
from alhelpers.select.strategies import (
    STRATEGIES,
    QueryContext,
    register_strategy,
)

__all__ = ["BMDAL_METHODS", "bmdal_select", "candidate_features", "parse_method"]

RULES = ("maxdiag", "maxdet", "maxdist", "lcmd")
KERNELS = ("qbc", "rnd", "feat-ll", "feat-rp", "gp-ll", "gp-rp")

#: STUDY §7 combinations for a single-output regressor (Track A strategies).
BMDAL_METHODS: tuple[str, ...] = (
    "maxdiag-qbc", "maxdiag-rnd", "maxdiag-gp-ll", "maxdiag-gp-rp",
    "maxdet-gp-ll", "maxdet-gp-rp",
    "maxdist-gp-ll", "maxdist-gp-rp", "maxdist-feat-ll", "maxdist-feat-rp",
    "lcmd-feat-ll", "lcmd-feat-rp",
)


def parse_method(name: str) -> tuple[str, str]:
    """``"lcmd-feat-ll"`` → ``("lcmd", "feat-ll")``; raises ``ValueError`` on unknown parts."""
    rule, _, kernel = name.partition("-")
    if rule not in RULES or kernel not in KERNELS:
        raise ValueError(f"unknown BMDAL method {name!r}: rules {RULES}, kernels {KERNELS}")
    if kernel in ("qbc", "rnd") and rule != "maxdiag":
        raise ValueError(f"{kernel!r} is a diagonal kernel; only maxdiag applies, got {name!r}")
    return rule, kernel


def _raw(model: object, Z: np.ndarray) -> np.ndarray:
    """Raw descriptors from the loop's standardised ones (same scaler fit as the model's)."""
    return model.scaler_.inverse_transform(np.asarray(Z, dtype=np.float64))  # type: ignore[attr-defined]


def candidate_features(
    model: object, Z_candidates: np.ndarray, Z_labelled: np.ndarray, base: str, *, seed: int, p: int = F.DEFAULT_RP_DIM
) -> tuple[np.ndarray, np.ndarray]:
    """Base features (``"ll"`` or ``"rp"``) of candidates and labelled rows, from standardised inputs."""
    Xc, Xl = _raw(model, Z_candidates), _raw(model, Z_labelled)
    both = np.concatenate([Xc, Xl]) if len(Xl) else Xc
    if base == "ll":
        phi = F.ll_features(model, both)
    elif base == "rp":
        phi = F.rp_features(model, both, p=p, seed=seed)
    else:
        raise ValueError(f"base must be 'll' or 'rp', got {base!r}")
    return phi[: len(Xc)], phi[len(Xc):]


def bmdal_select(
    rule: str,
    pool_features: np.ndarray,
    train_features: np.ndarray,
    batch_size: int,
    *,
    gp: bool,
    sigma2: float | None = None,
    device: torch.device | str | None = None,
) -> np.ndarray:
    """Apply ``rule`` to a kernel given by features, optionally its GP posterior given the training rows.

    MAXDIST and LCMD run in TP mode (training rows as centres), MAXDET in P mode on the posterior,
    MAXDIAG takes the largest (posterior) variance. Returns pool positions in selection order.
    """
    A = F.gp_posterior_matrix(train_features, sigma2=sigma2) if gp else None
    if rule == "maxdet":
        return R.maxdet(pool_features, batch_size, transform=A, device=device)
    pool = torch.as_tensor(pool_features).double()
    train = torch.as_tensor(train_features).double()
    if A is not None:
        pool, train = pool @ A, train @ A
    if rule == "maxdiag":
        return R.maxdiag((pool * pool).sum(1), batch_size)
    if rule == "maxdist":
        return R.maxdist(pool, train, batch_size, device=device)
    if rule == "lcmd":
        return R.lcmd(pool, train, batch_size, device=device)
    raise ValueError(f"unknown rule {rule!r}")


def _strategy(name: str):
    rule, kernel = parse_method(name)

    def strategy(ctx: QueryContext) -> np.ndarray:
        perm = ctx.rng.permutation(ctx.n_candidates)
        if kernel == "rnd":
            return perm[R.maxdiag(F.rnd_scores(ctx.n_candidates, rng=ctx.rng)[perm], ctx.batch_size)]
        seed = int(ctx.rng.integers(2**62))
        t0 = time.perf_counter()
        if ctx.model is None:  # no network: the identity map on the standardised descriptors
            phi_c, phi_l = np.asarray(ctx.X_candidates, dtype=np.float64)[perm], np.asarray(ctx.X_labelled, dtype=np.float64)
        else:
            phi_c, phi_l = candidate_features(ctx.model, np.asarray(ctx.X_candidates)[perm], ctx.X_labelled,
                                              kernel.split("-")[1], seed=seed)
        ctx.timings["feature_s"] = ctx.timings.get("feature_s", 0.0) + time.perf_counter() - t0
        pos = bmdal_select(rule, phi_c, phi_l, ctx.batch_size, gp=kernel.startswith("gp"), device="cpu")
        return perm[pos]

    strategy.__name__ = f"select_{name.replace('-', '_')}"
    strategy.__doc__ = f"BMDAL {rule.upper()} on {kernel.upper()} (STUDY §7)."
    return strategy


def register_bmdal_strategies() -> None:
    """Register every name of :data:`BMDAL_METHODS` (``maxdiag-qbc`` = ``uncertainty``)."""
    for name in BMDAL_METHODS:
        if name in STRATEGIES:
            continue
        if name == "maxdiag-qbc":
            STRATEGIES[name] = STRATEGIES["uncertainty"]
            from alhelpers.select.strategies import _NEEDS_VARIANCE

            _NEEDS_VARIANCE.add(name)
        else:
            register_strategy(name, _strategy(name))


register_bmdal_strategies()
