"""Query strategies for pool-based active learning (STUDY §4).

Every strategy is a small, pure function that returns POSITIONS into the candidate
arrays: an ``np.ndarray`` of ``np.intp``, unique, in ``0 .. n_candidates - 1``, of
length ``min(batch_size, n_candidates)``. Randomness always comes from a
``numpy.random.Generator`` passed in by the caller; ties are broken with it, never with
global NumPy or torch state.

Scoring helpers (:func:`minmax`, :func:`nearest_distance`) are kept separate from the
selection step (:func:`top_k`), as in modAL's ``multi_argmax``.

The registry (:data:`STRATEGIES`, :func:`get_strategy`, :func:`register_strategy`) lets
the AL loop call any strategy by name with one :class:`QueryContext`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from alhelpers.select.rules import maxdiag
from alhelpers.select.stability import HullInputs, select_stability

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]

#: Default largest number of entries in one block of pairwise distances (32 MiB of float64).
DEFAULT_MAX_BLOCK_ELEMENTS: int = 1 << 22

__all__ = [
    "DEFAULT_MAX_BLOCK_ELEMENTS",
    "STRATEGIES",
    "QueryContext",
    "Strategy",
    "STRATEGY_WORDS",
    "describe_strategy",
    "get_strategy",
    "strategy_table",
    "minmax",
    "nearest_distance",
    "needs_hull",
    "needs_variance",
    "HullInputs",
    "register_alias",
    "register_strategy",
    "select_diversity",
    "select_hybrid",
    "select_random",
    "select_stability",
    "select_uncertainty",
    "top_k",
]


# --------------------------------------------------------------------------- validation


def _check_batch_size(batch_size: int, *, name: str = "batch_size") -> int:
    """Return ``batch_size`` as an ``int`` after checking that it is a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{name} must be >= 1, got {batch_size}")
    return int(batch_size)


def _as_vector(x: npt.ArrayLike, *, name: str) -> FloatArray:
    """Return ``x`` as a 1-D float array, or raise naming its shape."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _as_matrix(x: npt.ArrayLike, *, name: str) -> FloatArray:
    """Return ``x`` as a 2-D float array ``(n, d)``, or raise naming its shape."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {arr.shape}")
    return arr


def _check_same_width(a: FloatArray, b: FloatArray, *, names: tuple[str, str]) -> None:
    """Raise unless two descriptor matrices have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same number of columns, "
            f"got shapes {a.shape} and {b.shape}"
        )


def _check_variance(variance: npt.ArrayLike, n_candidates: int) -> FloatArray:
    """Return the variance as a finite 1-D array of length ``n_candidates``."""
    var = _as_vector(variance, name="variance")
    if var.shape != (n_candidates,):
        raise ValueError(
            f"variance must have shape ({n_candidates},) to match the candidates, "
            f"got shape {var.shape}"
        )
    if not np.all(np.isfinite(var)):
        raise ValueError("variance contains NaN or infinite values")
    return var


# --------------------------------------------------------------------------- scoring helpers


def minmax(x: npt.ArrayLike) -> FloatArray:
    """Min–max normalise a 1-D array to ``[0, 1]``; a constant (or empty) vector maps to zeros.

    Raises ``ValueError`` on NaN or infinite entries, which have no meaningful scale.
    """
    arr = _as_vector(x, name="x")
    if arr.size == 0:
        return arr.copy()
    if not np.all(np.isfinite(arr)):
        raise ValueError("minmax needs finite values; got NaN or infinite entries")
    lo, hi = arr.min(), arr.max()
    if hi == lo:
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)


def _nearest(
    X_from: FloatArray, X_to: FloatArray, *, max_block_elements: int
) -> tuple[FloatArray, IntArray]:
    """Distance to, and index of, the nearest row of ``X_to`` for each row of ``X_from``.

    Works in blocks of at most ``max_block_elements`` pairwise distances. ``X_to`` must
    have at least one row.
    """
    n_from, n_to = X_from.shape[0], X_to.shape[0]
    dist = np.empty(n_from, dtype=np.float64)
    idx = np.empty(n_from, dtype=np.intp)
    rows = max(1, max_block_elements // max(n_to, 1))
    for start in range(0, n_from, rows):
        block = cdist(X_from[start : start + rows], X_to)
        arg = np.argmin(block, axis=1)
        idx[start : start + rows] = arg
        dist[start : start + rows] = block[np.arange(block.shape[0]), arg]
    return dist, idx


def nearest_distance(
    X_from: npt.ArrayLike,
    X_to: npt.ArrayLike,
    *,
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> FloatArray:
    """Euclidean distance from each row of ``X_from`` to its nearest row of ``X_to``.

    Returns ``inf`` for every row when ``X_to`` has no rows. Memory-safe: the pairwise
    distances are computed in blocks of at most ``max_block_elements`` entries.
    """
    A = _as_matrix(X_from, name="X_from")
    B = _as_matrix(X_to, name="X_to")
    _check_same_width(A, B, names=("X_from", "X_to"))
    _check_batch_size(max_block_elements, name="max_block_elements")
    if B.shape[0] == 0:
        return np.full(A.shape[0], np.inf)
    dist, _ = _nearest(A, B, max_block_elements=max_block_elements)
    return dist


# --------------------------------------------------------------------------- selection


def top_k(scores: npt.ArrayLike, k: int, *, rng: np.random.Generator) -> IntArray:
    """Positions of the ``min(k, len(scores))`` largest scores, largest first.

    Ties are broken at random with ``rng`` (a random permutation followed by a stable
    sort of the negated scores), like modAL's ``multi_argmax``. ``+inf`` and ``-inf``
    are allowed; NaN is not.
    """
    s = _as_vector(scores, name="scores")
    k = _check_batch_size(k, name="k")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; cannot rank them")
    return maxdiag(s, k, rng=rng)


def select_random(n_candidates: int, batch_size: int, *, rng: np.random.Generator) -> IntArray:
    """``min(batch_size, n_candidates)`` distinct positions drawn uniformly at random."""
    batch_size = _check_batch_size(batch_size)
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)):
        raise ValueError(f"n_candidates must be a non-negative integer, got {n_candidates!r}")
    if n_candidates < 0:
        raise ValueError(f"n_candidates must be >= 0, got {n_candidates}")
    size = min(batch_size, int(n_candidates))
    return rng.choice(int(n_candidates), size=size, replace=False).astype(np.intp)


def select_uncertainty(
    variance: npt.ArrayLike, batch_size: int, *, rng: np.random.Generator
) -> IntArray:
    """Query-by-committee: the positions with the largest ensemble variance (random ties)."""
    batch_size = _check_batch_size(batch_size)
    var = _as_vector(variance, name="variance")
    var = _check_variance(var, var.shape[0])
    return top_k(var, batch_size, rng=rng)


def _row_distances(X: FloatArray, x: FloatArray) -> FloatArray:
    """Euclidean distance of every row of ``X`` to the single point ``x``."""
    return np.sqrt(np.sum((X - x) ** 2, axis=1))


def _farthest_point_refinement(
    X_candidates: FloatArray,
    X_labelled: FloatArray,
    picks: npt.ArrayLike,
    *,
    tol: float,
    rng: np.random.Generator,
) -> IntArray:
    """Replace invalid initial picks by farthest points, greedily (STUDY §4, diversity).

    Pass 1 keeps, in order, each initial pick that is not a repeat of a kept pick and is
    at least ``tol`` away from every labelled point and every kept pick (so a duplicate
    descriptor row counts as "the same point"). Pass 2 fills each rejected slot, in
    order, with the candidate farthest from labelled ∪ picked, updating the running
    minimum distances after each pick; ties are broken with ``rng``.
    Returns the picks in slot order.
    """
    initial = np.asarray(picks, dtype=np.intp)
    min_dist = nearest_distance(X_candidates, X_labelled)
    chosen = np.zeros(X_candidates.shape[0], dtype=bool)
    result = initial.copy()
    rejected: list[int] = []
    for slot, pos in enumerate(initial):
        if chosen[pos] or min_dist[pos] < tol:
            rejected.append(slot)
            continue
        chosen[pos] = True
        np.minimum(min_dist, _row_distances(X_candidates, X_candidates[pos]), out=min_dist)
    for slot in rejected:
        score = np.where(chosen, -np.inf, min_dist)
        pos = int(top_k(score, 1, rng=rng)[0])
        result[slot] = pos
        chosen[pos] = True
        np.minimum(min_dist, _row_distances(X_candidates, X_candidates[pos]), out=min_dist)
    return result


def select_diversity(
    X_candidates: npt.ArrayLike,
    X_labelled: npt.ArrayLike,
    batch_size: int,
    *,
    rng: np.random.Generator,
    tol: float = 1e-6,
    n_init: int = 10,
) -> IntArray:
    """k-means diversity sampling with farthest-point refinement (STUDY §4).

    Runs k-means with ``k = batch_size`` on the (already standardised) candidate
    descriptors, seeded with an integer drawn from ``rng`` (so the result is
    deterministic for a given generator state), and takes the candidate nearest each
    centre. A pick that repeats another pick, or lies closer than ``tol`` to a labelled
    point (or to a point already picked), is replaced by the candidate farthest from
    labelled ∪ picked. If ``n_candidates <= batch_size`` every position is returned.
    """
    batch_size = _check_batch_size(batch_size)
    n_init = _check_batch_size(n_init, name="n_init")
    Xc = _as_matrix(X_candidates, name="X_candidates")
    Xl = _as_matrix(X_labelled, name="X_labelled")
    _check_same_width(Xc, Xl, names=("X_candidates", "X_labelled"))
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    n_c = Xc.shape[0]
    if n_c <= batch_size:
        return np.arange(n_c, dtype=np.intp)
    seed = int(rng.integers(0, 2**31 - 1))
    kmeans = KMeans(n_clusters=batch_size, n_init=n_init, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters: the refinement below handles the repeats.
        warnings.simplefilter("ignore", ConvergenceWarning)
        kmeans.fit(Xc)
    _, nearest = _nearest(
        kmeans.cluster_centers_, Xc, max_block_elements=DEFAULT_MAX_BLOCK_ELEMENTS
    )
    return _farthest_point_refinement(Xc, Xl, nearest, tol=tol, rng=rng)


def select_hybrid(
    X_candidates: npt.ArrayLike,
    X_labelled: npt.ArrayLike,
    variance: npt.ArrayLike,
    batch_size: int,
    *,
    rng: np.random.Generator,
    alpha: float = 0.6,
) -> IntArray:
    """Top ``batch_size`` by ``alpha * U_norm + (1 - alpha) * D_norm`` (STUDY §4).

    ``U_norm`` is the min–max normalised variance over the candidates and ``D_norm`` the
    min–max normalised distance of each candidate to its nearest labelled point. With no
    labelled points every candidate is equally far, so ``D_norm`` is zero.
    """
    batch_size = _check_batch_size(batch_size)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    Xc = _as_matrix(X_candidates, name="X_candidates")
    Xl = _as_matrix(X_labelled, name="X_labelled")
    _check_same_width(Xc, Xl, names=("X_candidates", "X_labelled"))
    var = _check_variance(variance, Xc.shape[0])
    u_norm = minmax(var)
    if Xl.shape[0] == 0:
        d_norm = np.zeros(Xc.shape[0])
    else:
        d_norm = minmax(nearest_distance(Xc, Xl))
    return top_k(alpha * u_norm + (1.0 - alpha) * d_norm, batch_size, rng=rng)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class QueryContext:
    """Everything a strategy may use to pick the next batch, validated on construction."""

    X_candidates: np.ndarray  # (n_c, d) standardised descriptors of the unlabelled pool points
    X_labelled: np.ndarray  # (n_l, d) standardised descriptors of the labelled points
    variance: np.ndarray | None  # (n_c,) ensemble variance at the candidates; None if no model
    batch: int  # points to select (the AL batch)
    rng: np.random.Generator
    model: object | None = None  # the fitted ensemble (for gradient-feature strategies)
    #: Filled by strategies that compute features (seconds under ``"feature_s"``); read by the loop.
    timings: dict = field(default_factory=dict, compare=False)
    hybrid_alpha: float = 0.6  # weight of the uncertainty term of the hybrid strategy
    hull: HullInputs | None = None  # for the stability strategies (Track A with formulas)

    def __post_init__(self) -> None:
        _check_batch_size(self.batch, name="batch")
        Xc = _as_matrix(self.X_candidates, name="X_candidates")
        Xl = _as_matrix(self.X_labelled, name="X_labelled")
        _check_same_width(Xc, Xl, names=("X_candidates", "X_labelled"))
        if self.variance is not None:
            _check_variance(self.variance, Xc.shape[0])
        if self.hull is not None and any(np.shape(a) != (Xc.shape[0],) for a in
                                         (self.hull.mean, self.hull.sigma, self.hull.hull)):
            raise ValueError(f"hull inputs need one value per candidate ({Xc.shape[0]})")
        if not isinstance(self.rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator, got {type(self.rng).__name__}")

    @property
    def n_candidates(self) -> int:
        """Number of candidate (unlabelled pool) points."""
        return int(np.shape(self.X_candidates)[0])


Strategy = Callable[[QueryContext], np.ndarray]

#: Registered strategies by name; each value checks its context and its output.
STRATEGIES: dict[str, Strategy] = {}
_NEEDS_VARIANCE: set[str] = set()
_NEEDS_HULL: set[str] = set()


def _check_positions(name: str, positions: np.ndarray, ctx: QueryContext) -> IntArray:
    """Raise unless a strategy kept its contract: unique in-range positions, right length."""
    pos = np.asarray(positions)
    expected = min(ctx.batch, ctx.n_candidates)
    if pos.shape != (expected,) or (pos.size and not np.issubdtype(pos.dtype, np.integer)):
        raise RuntimeError(
            f"strategy {name!r} returned shape {pos.shape} dtype {pos.dtype}; "
            f"expected ({expected},) integers"
        )
    if pos.size and (pos.min() < 0 or pos.max() >= ctx.n_candidates):
        raise RuntimeError(
            f"strategy {name!r} returned positions outside 0..{ctx.n_candidates - 1}"
        )
    if np.unique(pos).size != pos.size:
        raise RuntimeError(f"strategy {name!r} returned repeated positions")
    return pos.astype(np.intp, copy=False)


def register_strategy(
    name: str, fn: Strategy, *, needs_variance: bool = False, needs_hull: bool = False, overwrite: bool = False
) -> None:
    """Register ``fn`` under ``name`` so that :func:`get_strategy` can find it.

    The stored callable checks, before calling ``fn``, that the context has a variance
    when ``needs_variance`` is true (the hull inputs when ``needs_hull`` is), and afterwards that ``fn`` returned unique,
    in-range positions of length ``min(batch_size, n_candidates)``. Registering an
    existing name raises ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"strategy name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"strategy {name!r} must be callable, got {type(fn).__name__}")
    if name in STRATEGIES and not overwrite:
        raise ValueError(f"strategy {name!r} is already registered; pass overwrite=True")

    @functools.wraps(fn)
    def checked(ctx: QueryContext) -> IntArray:
        if needs_variance and ctx.variance is None:
            raise ValueError(
                f"strategy {name!r} needs the ensemble variance, but QueryContext.variance is None"
            )
        if needs_hull and ctx.hull is None:
            raise ValueError(f"strategy {name!r} needs the convex hull of the labelled compounds "
                             "(QueryContext.hull): it needs the formulas of the materials")
        return _check_positions(name, fn(ctx), ctx)

    STRATEGIES[name] = checked
    for flag, names in ((needs_variance, _NEEDS_VARIANCE), (needs_hull, _NEEDS_HULL)):
        if flag:
            names.add(name)
        else:
            names.discard(name)


def register_alias(name: str, existing: str, *, overwrite: bool = False) -> None:
    """Register ``existing``'s strategy under a second ``name`` (the same callable)."""
    fn = get_strategy(existing)
    if name in STRATEGIES and not overwrite:
        raise ValueError(f"strategy {name!r} is already registered; pass overwrite=True")
    STRATEGIES[name] = fn
    for names in (_NEEDS_VARIANCE, _NEEDS_HULL):
        if existing in names:
            names.add(name)
        else:
            names.discard(name)


def _unknown(name: str) -> ValueError:
    valid = ", ".join(repr(n) for n in sorted(STRATEGIES))
    return ValueError(f"unknown strategy {name!r}; valid names: {valid}")


#: Track A's named strategies in words (the BMDAL names are described by their grammar).
STRATEGY_WORDS: dict[str, str] = {
    "random": "uniformly at random from the pool: the baseline",
    "uncertainty": "the materials the ensemble members disagree on most (largest ensemble variance; "
                   "= maxdiag-qbc)",
    "diversity": "k-means on the descriptors with k = batch, the material nearest each centre, refined "
                 "by farthest-point steps: covers the descriptor space",
    "hybrid": "α × normalised ensemble variance + (1 − α) × normalised distance to the labelled set "
              "(α = 0.6 by default)",
    "stability": "the materials most likely to lie below the convex hull of the labelled compounds "
                 "(P(E < E_hull) from the prediction and its calibrated σ'), each pick believed into the hull "
                 "before the next: the likely stable ones",
    "stability-ei": "the materials expected to lie farthest below the convex hull of the labelled compounds "
                    "(expected improvement of the hull, from the prediction and its calibrated σ'), each pick "
                    "believed into the hull before the next",
}


def describe_strategy(name: str) -> str:
    """One line of plain words for any strategy or method name of either track."""
    if name in STRATEGY_WORDS:
        return STRATEGY_WORDS[name]
    from alhelpers.select.methods import describe_method

    if name == "maxdiag-qbc":
        return STRATEGY_WORDS["uncertainty"].replace("= maxdiag-qbc", "= uncertainty")
    return describe_method(name)


def strategy_table(names: Sequence[str]) -> str:
    """A Markdown table of strategy names and what each labels next (:func:`describe_strategy`);
    a name nobody can describe (a user's own registered strategy) says so."""
    rows = []
    for name in names:
        try:
            words = describe_strategy(name)
        except ValueError:
            words = "a strategy registered in this session (no description)"
        rows.append(f"| `{name}` | {words} |")
    return "\n".join(["| strategy | what it labels next |", "|---|---|", *rows])


def get_strategy(name: str) -> Strategy:
    """The registered strategy called ``name``; unknown names raise listing the valid ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise _unknown(name) from None


def needs_variance(name: str) -> bool:
    """Whether the strategy called ``name`` needs ``QueryContext.variance``."""
    if name not in STRATEGIES:
        raise _unknown(name)
    return name in _NEEDS_VARIANCE


def needs_hull(name: str) -> bool:
    """Whether the strategy called ``name`` needs ``QueryContext.hull`` (the materials' formulas)."""
    if name not in STRATEGIES:
        raise _unknown(name)
    return name in _NEEDS_HULL


def _random(ctx: QueryContext) -> IntArray:
    return select_random(ctx.n_candidates, ctx.batch, rng=ctx.rng)


def _uncertainty(ctx: QueryContext) -> IntArray:
    assert ctx.variance is not None  # guaranteed by the registry wrapper
    return select_uncertainty(ctx.variance, ctx.batch, rng=ctx.rng)


def _diversity(ctx: QueryContext) -> IntArray:
    return select_diversity(ctx.X_candidates, ctx.X_labelled, ctx.batch, rng=ctx.rng)


def _hybrid(ctx: QueryContext) -> IntArray:
    assert ctx.variance is not None  # guaranteed by the registry wrapper
    return select_hybrid(
        ctx.X_candidates, ctx.X_labelled, ctx.variance, ctx.batch, rng=ctx.rng,
        alpha=ctx.hybrid_alpha,
    )


register_strategy("random", _random)
register_strategy("uncertainty", _uncertainty, needs_variance=True)
register_strategy("diversity", _diversity)
register_strategy("hybrid", _hybrid, needs_variance=True)


def _stability(score: str) -> Strategy:
    def pick(ctx: QueryContext) -> IntArray:
        assert ctx.hull is not None  # guaranteed by the registry wrapper
        return select_stability(ctx.hull.mean, ctx.hull.sigma, ctx.hull.hull, ctx.batch, rng=ctx.rng, score=score,
                                formulas=ctx.hull.formulas)

    return pick


register_strategy("stability", _stability("probability"), needs_hull=True)
register_strategy("stability-ei", _stability("improvement"), needs_hull=True)
