"""BMDAL methods: one grammar, one typed method, one adapter from method to selected positions.

A method name is ``random`` or ``<rule>-<kernel>`` (STUDY §7):

* rule ∈ :data:`RULES` (:mod:`alhelpers.select.rules`);
* kernel ∈ the feature kernels ``feat-ll``, ``feat-rp`` (FEAT(LL)/FEAT(RP) of the model),
  ``gp-ll``, ``gp-rp`` (their GP posterior, trace-rule σ²), or a diagonal score: ``qbc`` (Track A:
  ensemble standard deviation), ``qbc-e``/``qbc-f`` (Track B: ensemble spread of energies /
  forces), ``ae-e``/``ae-f`` (absolute error against known labels, an ORACLE bound) and ``rnd``
  (uniform scores). ``random`` is MAXDIAG on RND.

Diagonal scores go with MAXDIAG only, and LCMD runs on plain features (TP mode). A name is parsed
once, by :func:`parse_method`, into a :class:`Method`; :func:`bmdal_batch` turns a method into
positions, calling the model's own feature or score function. Every model — the Track A ensemble,
the Track B potential — supplies those two functions; nothing else differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from alhelpers.select import features as F
from alhelpers.select import rules as R

__all__ = [
    "DIAGONAL_KERNELS",
    "FEATURE_KERNELS",
    "KERNELS",
    "RULES",
    "Method",
    "bmdal_batch",
    "bmdal_select",
    "describe_method",
    "parse_method",
]

RULES: tuple[str, ...] = ("maxdiag", "maxdet", "maxdist", "lcmd")
FEATURE_KERNELS: tuple[str, ...] = ("feat-ll", "feat-rp", "gp-ll", "gp-rp")
DIAGONAL_KERNELS: tuple[str, ...] = ("qbc", "qbc-e", "qbc-f", "ae-e", "ae-f", "rnd")
KERNELS: tuple[str, ...] = FEATURE_KERNELS + DIAGONAL_KERNELS

#: ``diagonal(kernel, order)``: the scores of the candidates taken in ``order``.
DiagonalFn = Callable[[str, np.ndarray], np.ndarray]
#: ``features(base, order, seed)``: base features of the candidates in ``order`` and of the
#: labelled set, computed with one map (so FEAT(RP) uses the same matrices for both).
FeatureFn = Callable[[str, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Method:
    """A parsed method name: a rule on a kernel."""

    name: str
    rule: str
    kernel: str

    @property
    def diagonal(self) -> str | None:
        """The diagonal score (``"qbc-f"``, ``"rnd"``…), or None for a feature kernel."""
        return self.kernel if self.kernel in DIAGONAL_KERNELS else None

    @property
    def base(self) -> str | None:
        """The base feature map, ``"ll"`` or ``"rp"``, or None for a diagonal score."""
        return None if self.diagonal else self.kernel.split("-")[1]

    @property
    def gp(self) -> bool:
        """Whether the GP posterior transform is applied to the base features."""
        return self.kernel.startswith("gp-")


def parse_method(name: str, *, kernels: Sequence[str] = KERNELS) -> Method:
    """``"lcmd-feat-rp"`` → ``Method("lcmd-feat-rp", "lcmd", "feat-rp")``; ``"random"`` → MAXDIAG on RND.

    ``kernels`` are those the caller's model offers (e.g. no force kernels in Track A); any other
    name raises ``ValueError`` saying what is valid.
    """
    if not isinstance(name, str):
        raise ValueError(f"a method name must be a string, got {name!r}")
    if name == "random":
        return Method(name, "maxdiag", "rnd")
    rule, _, kernel = name.partition("-")
    if rule not in RULES or kernel not in kernels:
        raise ValueError(f"unknown method {name!r}: use 'random' or '<rule>-<kernel>' with rule in {RULES} "
                         f"and kernel in {tuple(kernels)}, e.g. 'lcmd-feat-ll'")
    if kernel in DIAGONAL_KERNELS and rule != "maxdiag":
        raise ValueError(f"{kernel!r} is a diagonal kernel: only maxdiag applies, got {name!r}")
    if rule == "lcmd" and kernel.startswith("gp-"):
        raise ValueError(f"LCMD runs on plain features (TP mode), got {name!r}; use 'lcmd-feat-…'")
    return Method(name, rule, kernel)


#: What each selection rule does, in words.
RULE_WORDS: dict[str, str] = {
    "maxdiag": "takes the candidates with the largest score, each on its own (no batch diversity)",
    "maxdet": "greedily builds a batch that is informative and diverse (the largest determinant of its "
              "covariance)",
    "maxdist": "greedily takes the candidate farthest from the labelled set and the batch so far",
    "lcmd": "largest-cluster maximum distance: clusters the pool around the labelled points and takes the "
            "farthest point of the largest cluster",
}
#: What each kernel measures, in words.
KERNEL_WORDS: dict[str, str] = {
    "feat-ll": "last-layer gradient features",
    "feat-rp": "random projections of the full parameter gradient",
    "gp-ll": "the GP posterior of last-layer gradient features",
    "gp-rp": "the GP posterior of random projections of the gradient",
    "qbc": "the ensemble variance (query by committee)",
    "qbc-e": "the committee's spread of energies",
    "qbc-f": "the committee's spread of forces",
    "ae-e": "the actual energy error (an oracle bound: needs the labels)",
    "ae-f": "the actual force error (an oracle bound: needs the labels)",
    "rnd": "random scores",
}


def describe_method(name: str) -> str:
    """One line of plain words for a method name, e.g. ``"lcmd-feat-ll"`` →
    ``"LCMD on last-layer gradient features: largest-cluster maximum distance: …"``."""
    if name == "random":
        return "uniformly at random from the pool: the baseline"
    m = parse_method(name)
    return f"{m.rule.upper()} on {KERNEL_WORDS[m.kernel]}: {RULE_WORDS[m.rule]}"


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


def bmdal_batch(
    method: Method,
    n_candidates: int,
    batch: int,
    rng: np.random.Generator,
    *,
    diagonal: DiagonalFn | None = None,
    features: FeatureFn | None = None,
    timings: dict | None = None,
) -> np.ndarray:
    """Positions of the next batch among ``n_candidates`` (selection order) for ``method``.

    Ties are broken at random: the candidates are taken in the order of ``rng.permutation``
    before the (lowest-position-wins) rule; RND scores and the FEAT(RP) seed are drawn from the
    same ``rng`` next. ``timings`` receives ``feature_s`` (features or scores) and ``query_s``
    (the rule).
    """
    n = int(n_candidates)
    batch = min(int(batch), n)
    order = rng.permutation(n)
    t0 = time.perf_counter()
    scores = phi_c = phi_l = None
    if method.kernel == "rnd":
        scores = F.rnd_scores(n, rng=rng)
    elif method.diagonal is not None:
        if diagonal is None:
            raise ValueError(f"{method.name}: this model offers no diagonal scores")
        scores = diagonal(method.kernel, order)
    else:
        if features is None:
            raise ValueError(f"{method.name}: this model offers no feature map")
        phi_c, phi_l = features(str(method.base), order, int(rng.integers(2**62)))
    t1 = time.perf_counter()
    if scores is not None:
        pos = R.maxdiag(scores, batch)
    else:
        pos = bmdal_select(method.rule, phi_c, phi_l, batch, gp=method.gp, device="cpu")
    if timings is not None:
        timings["feature_s"] = timings.get("feature_s", 0.0) + t1 - t0
        timings["query_s"] = timings.get("query_s", 0.0) + time.perf_counter() - t1
    return order[np.asarray(pos, dtype=np.int64)]
