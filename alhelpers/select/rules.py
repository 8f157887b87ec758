"""Greedy batch selection rules of BMDAL (STUDY §7): MAXDIAG, MAXDET, MAXDIST, LCMD.

All rules take feature matrices (NumPy or torch, float32 or float64; kept in their dtype, moved
to ``device`` — CUDA when available by default) and return pool positions as ``np.intp`` in
selection order. They are exact: they select what bmdal_reg's ``select_batch`` selects on the same
kernel (TP mode for MAXDIST/LCMD, P mode for MAXDET), up to floating-point rounding.

With ``φ`` the pool features, ``T`` the training rows and ``S`` the picks so far:

* :func:`maxdiag`: the ``batch_size`` largest given ``k(x, x)``, largest first.
* :func:`maxdist`: repeatedly the unselected point with the largest
  ``min_{y ∈ T ∪ S} ‖φ(x) − φ(y)‖²``; with no training rows the first pick is the largest ``k(x, x)``.
* :func:`lcmd`: every point belongs to its nearest centre in ``T ∪ S`` (first centre on exact
  ties), a cluster's size is the sum of its members' squared distances, and the pick is the
  unselected member of the largest cluster (of any largest one, on exact ties) farthest from its
  centre. If every member of the largest clusters is selected (duplicate features can leave
  every unselected point on a centre), the unselected point farthest from its centre. With no
  training rows the first pick is the largest ``k(x, x)``.
* :func:`maxdet`: repeatedly the largest residual variance ``k(x, x | S)`` of the kernel
  ``ψ(x)·ψ(x')``, ``ψ = φ @ transform`` (greedy ``max det k(S, S)``); once no residual is > 0
  (batch larger than the kernel's rank) the rest by largest ``k(x, x)``.

Squared distances are ``k(x,x) + k(y,y) − 2k(x,y)`` as in bmdal_reg. The rules run under
``torch.inference_mode`` (no autograd bookkeeping: 2–4 % off their many small per-step operations).
Their speed comes from exact shortcuts (lazy greedy, triangle-inequality pruning, a bf16 shadow
with rigorous error bounds, speculative distance columns) that change no pick; they live in
:mod:`alhelpers.select.engine` (which explains them) and :mod:`alhelpers.select.distances`.

Ties: every argmax takes the lowest pool position among exactly equal values (as ``torch.argmax``
and bmdal_reg). To break ties at random, permute the pool with a generator before calling and map
the positions back (the Track A strategies do this with ``QueryContext.rng``); :func:`maxdiag`
also takes an ``rng`` to do it.
"""

from __future__ import annotations

import numpy as np
import torch

from alhelpers.select.distances import (
    Bf16Shadow,
    DistanceCache,
    nearest_train,
    speculative_centres,
    train_bounds_bf16,
    use_bf16,
)
from alhelpers.select.engine import (
    LazyGreedy,
    chunked_matvec,
    row_gatherer,
    sq_norms,
    thin_mm,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "default_device",
    "lcmd",
    "maxdet",
    "maxdiag",
    "maxdist",
]

#: Rows of the pool processed at once in the passes over the whole pool.
DEFAULT_CHUNK_ROWS: int = 8192
_NEG_INF = float("-inf")


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _as_tensor(x: object, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
    if t.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    return t.to(device=device, dtype=dtype or t.dtype)


def _prepare(pool: object, train: object | None, batch_size: int, device: torch.device | str | None
             ) -> tuple[torch.Tensor, torch.Tensor, int]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dev = torch.device(device) if device is not None else default_device()
    X = _as_tensor(pool, dev)
    T = _as_tensor(train, dev, X.dtype) if train is not None else X.new_zeros(0, X.shape[1])
    if T.shape[1] != X.shape[1]:
        raise ValueError(f"pool and train features differ in width: {X.shape[1]} vs {T.shape[1]}")
    return X, T, min(int(batch_size), X.shape[0])


def _first_argmax(values: torch.Tensor) -> int:
    """Position of the largest value, the lowest one on exact ties."""
    return int(torch.argmax(values))


# --------------------------------------------------------------------------- MAXDIAG


def maxdiag(diag: object, batch_size: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """The ``batch_size`` largest ``k(x, x)``, largest first (ties: random with ``rng``, else lowest
    position)."""
    d = np.asarray(torch.as_tensor(diag).detach().cpu().numpy(), dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"diag must be 1-D, got shape {d.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    perm = rng.permutation(d.size) if rng is not None else np.arange(d.size)
    order = perm[np.argsort(-d[perm], kind="stable")]
    return order[: min(int(batch_size), d.size)].astype(np.intp)


# --------------------------------------------------------------------------- MAXDIST


@torch.inference_mode()
def maxdist(
    pool: object,
    train: object | None,
    batch_size: int,
    *,
    device: torch.device | str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bf16_bounds: bool | None = None,
    stats: dict | None = None,
) -> np.ndarray:
    """MAXDIST in TP mode: repeatedly the pool point farthest from training ∪ selected.

    ``argmax_{x ∈ P∖S} min_{y ∈ T ∪ S} ‖φ(x) − φ(y)‖``; with no training rows the first pick is
    the largest ``k(x, x)`` (as bmdal_reg). Lazy greedy on the running minimum distances.
    ``stats`` (optional dict) receives ``n_refreshed``, the number of row updates done.
    """
    X, T, B = _prepare(pool, train, batch_size, device)
    N, n_t = X.shape[0], T.shape[0]
    sqn = sq_norms(X, chunk_rows)
    fast = n_t >= 32 and use_bf16(bf16_bounds, X)
    if fast:  # upper bounds only; the leaders are brought up to date against T lazily
        min_sq, _ = train_bounds_bf16(Bf16Shadow(X, chunk_rows), X, sqn, T, chunk_rows, exact=False)
    else:
        min_sq, _ = nearest_train(X, sqn, T, chunk_rows)
    C = X.new_empty(n_t + B, X.shape[1])  # centres: training rows, then picks
    C[:n_t] = T
    csq = X.new_empty(n_t + B)
    csq[:n_t] = (T * T).sum(1)
    picks: list[int] = []

    def new_sq(xr: torch.Tensor, sq: torch.Tensor, upto: torch.Tensor | None, lo: int) -> torch.Tensor:
        """Smallest squared distance to the centres ``lo …`` each row has not yet seen."""
        j1 = lazy.n_updates
        d2 = (sq[:, None] + csq[None, lo:j1]).sub_(2.0 * (xr @ C[lo:j1].T))
        if upto is not None:
            d2.masked_fill_(cols[None, lo:j1] < upto[:, None], float("inf"))
        return d2.amin(1)

    rows_of = row_gatherer(X, sqn)

    def update(rows: torch.Tensor, upto: torch.Tensor | None, lo: int, cur: torch.Tensor) -> torch.Tensor:
        xr, sq = rows_of(rows)
        return torch.minimum(cur, new_sq(xr, sq, upto, lo))

    def refresh_all(upto: int) -> None:
        for s in range(0, N, chunk_rows):
            sl = slice(s, s + chunk_rows)
            lo = int(lazy.upto[sl].min())
            if lo < lazy.n_updates:
                torch.minimum(lazy.value[sl], new_sq(X[sl], sqn[sl], lazy.upto[sl], lo), out=lazy.value[sl])

    cols = torch.arange(n_t + B, device=X.device)
    lazy = LazyGreedy(min_sq, update, refresh_all, n_updates=n_t, upto=0 if fast else n_t)
    for step in range(B):
        if step == 0 and n_t == 0:
            pick = _first_argmax(sqn)
        else:
            pick = lazy.argmax(N - step)
        picks.append(pick)
        C[n_t + step], csq[n_t + step] = X[pick], sqn[pick]
        lazy.take(pick)
    if stats is not None:
        stats.update(lazy.stats())
    return np.asarray(picks, dtype=np.intp)


# --------------------------------------------------------------------------- LCMD


@torch.inference_mode()
def lcmd(
    pool: object,
    train: object | None,
    batch_size: int,
    *,
    device: torch.device | str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    bf16_bounds: bool | None = None,
    speculate: int = 64,
    stats: dict | None = None,
) -> np.ndarray:
    """LCMD in TP mode: from the largest cluster, its member farthest from the centre.

    Every pool point belongs to its nearest centre in ``T ∪ S`` (first centre on exact ties); a
    cluster's size is the sum of its members' squared distances; the pick is the not yet selected
    member of the largest cluster (all clusters of maximal size, on exact ties) with the largest
    squared distance. With no training rows the first pick is the largest ``k(x, x)``.

    When a centre is added, only the points it captures change. Centres that cannot capture a
    point are skipped by the triangle inequality; otherwise the candidates come from a distance
    column of the new centre over the whole pool. Such a pass costs about the same for a few
    dozen centres as for one, so up to ``speculate`` columns of the centres LCMD is likely to pick
    next are computed with it (:class:`~alhelpers.select.distances.DistanceCache`;
    ``speculate=1``: one column per pass). With ``bf16_bounds`` (default: float32 pools of ≥ 2²²
    entries on a CPU with fast bf16) the nearest training rows and the columns come from a
    bfloat16 copy of the pool with rigorous error bounds
    (:class:`~alhelpers.select.distances.Bf16Shadow`) and only the points the bounds cannot rule
    out are recomputed in full precision; the picks are the same.
    ``stats`` receives ``n_recomputed`` (point–centre distances computed in full precision after
    the start), ``n_full_passes`` and ``n_cache_hits``.
    """
    X, T, B = _prepare(pool, train, batch_size, device)
    N, n_t = X.shape[0], T.shape[0]
    sqn = sq_norms(X, chunk_rows)
    shadow = Bf16Shadow(X, chunk_rows) if use_bf16(bf16_bounds, X) else None
    if n_t and shadow is not None:
        min_sq, arg = train_bounds_bf16(shadow, X, sqn, T, chunk_rows, exact=True)
    else:
        min_sq, arg = nearest_train(X, sqn, T, chunk_rows)
    closest = arg + 1 if n_t else torch.zeros(N, dtype=torch.long, device=X.device)  # bmdal's ids
    centres = X.new_empty(n_t + B, X.shape[1])  # centre id c + 1 <-> row c
    centres[:n_t] = T
    csq = X.new_empty(n_t + B)
    csq[:n_t] = (T * T).sum(1)
    selected = torch.zeros(N, dtype=torch.bool, device=X.device)
    neg_inf = torch.tensor(_NEG_INF, dtype=X.dtype, device=X.device)
    cache = DistanceCache(X, sqn, chunk_rows, speculate, shadow)
    picks: list[int] = []
    pick_rows = torch.zeros(B, dtype=torch.long, device=X.device)
    n_recomputed = 0
    for step in range(B):
        n_c = n_t + step
        if n_c == 0:
            pick = _first_argmax(sqn)
        else:
            sizes = torch.bincount(closest, weights=min_sq, minlength=n_c + 1)
            largest = torch.nonzero(sizes == sizes.max()).squeeze(1)
            if largest.numel() == 1:
                key = torch.where(closest == int(largest[0]), min_sq, neg_inf)
            else:  # clusters of exactly equal size: members of any of them
                is_max = torch.zeros(n_c + 1, dtype=torch.bool, device=X.device)
                is_max[largest] = True
                key = torch.where(is_max[closest], min_sq, neg_inf)
            key[pick_rows[:step]] = _NEG_INF
            pick = _first_argmax(key)
            if not bool(key[pick] > _NEG_INF):
                # every unselected point sits exactly on a centre (duplicate features): all
                # clusters have size 0, so take the first unselected point, never a repeat
                pick = _first_argmax(torch.where(selected, neg_inf, min_sq))
        picks.append(pick)
        pick_rows[step] = pick
        selected[pick] = True
        c, c_sq = X[pick], sqn[pick]
        centres[n_c], csq[n_c] = c, c_sq
        cid = n_c + 1
        if n_c == 0:
            min_sq = sqn + c_sq - 2.0 * chunked_matvec(X, c, chunk_rows)
            closest = torch.full((N,), cid, dtype=torch.long, device=X.device)
            n_recomputed += N
            min_sq[pick] = 0.0  # a centre is at distance 0 from itself, exactly
            continue
        if pick in cache:
            rows, d2 = cache.movers(pick, min_sq, None)
        else:
            # squared distances between the new centre and every old centre; x can move to c
            # only if d(x, c) < d(x, a), which needs d(a, c) < 2 d(x, a)
            dcc = csq[:n_c] + c_sq - 2.0 * (centres[:n_c] @ c)
            rows = torch.nonzero(4.0 * min_sq > dcc[closest - 1]).squeeze(1)
            if rows.numel() > N // 32:
                rows, d2 = cache.movers(
                    pick, min_sq, lambda k: speculative_centres(pick, closest, min_sq, selected, sizes, k))
            else:
                d2 = sqn[rows] + c_sq - 2.0 * (X[rows] @ c)
        n_recomputed += int(rows.numel())
        better = d2 < min_sq[rows]
        rows = rows[better]
        min_sq[rows] = d2[better]
        closest[rows] = cid
        min_sq[pick], closest[pick] = 0.0, cid  # a centre is at distance 0 from itself, exactly
    if stats is not None:
        stats.update(n_recomputed=n_recomputed, n_full_passes=cache.n_passes, n_cache_hits=cache.n_hits)
    return np.asarray(picks, dtype=np.intp)


# --------------------------------------------------------------------------- MAXDET


@torch.inference_mode()
def maxdet(
    pool: object,
    batch_size: int,
    *,
    transform: object | None = None,
    device: torch.device | str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    refresh_every: int | None = 64,
    pass_on_rebuild: int | None = 16,
    pass_multiple: int | None = 32,
    stats: dict | None = None,
) -> np.ndarray:
    """MAXDET in P mode: greedily maximise ``det k(S, S)`` — a pivoted, matrix-free Cholesky.

    The kernel is ``ψ(x)·ψ(x')`` with ``ψ = φ @ transform`` (e.g. the GP posterior matrix of
    :func:`~alhelpers.select.features.gp_posterior_matrix`, applied on the fly so ``ψ`` of the
    whole pool is never stored) or ``ψ = φ``. Each step picks the largest residual variance
    ``k(x, x | S)``; no noise term, so a point is never picked twice. The residual basis is kept
    as orthonormal vectors (Gram–Schmidt, a second time when the first lost over half the norm:
    the DGKS criterion), i.e. the Cholesky columns are ``ψ(x)·q_j``;
    lazy greedy keeps the cost per step to the leaders. If every remaining residual is ≤ 0 (batch
    larger than the kernel's rank) the rest of the batch is filled by largest ``k(x, x)``.
    A pass over the pool (a thin matrix product) brings every row up to date when the rows
    outside the lazy-greedy front start to compete (after at least ``pass_on_rebuild`` picks
    since the last pass; on isotropic features that is every ~32 picks, as stale bounds then tie
    near the top in thousands), and after ``refresh_every`` picks at the latest (on gradient
    features, where the front lasts, this caps what a lazy refresh applies). Those passes apply
    a multiple of ``pass_multiple`` picks and leave the rest to the lazy refresh (a product of
    32 columns runs faster than one of 34). All three are speed knobs only: the picks are the
    same (None turns a trigger or the rounding off).
    ``stats`` receives ``n_refreshed``, ``n_full_passes`` and ``n_fronts``.

    Cost on isotropic features (100,000 × 512 float32, B = 250, 2 cores): the exact prior
    variances ``‖φ A‖²`` (a triangular product, ≈ 16 GMAC) and the passes (≈ 7 × 32 columns,
    ≈ 11 GMAC) run at the float32 matrix-product rate of the machine and take about two thirds
    of the time; the lazy steps the rest. There the lazy greedy cannot skip rows (every row's
    residual falls at the same pace), and neither bfloat16 bounds nor bfloat16-split products
    (3 or 6 products on AMX) are cheaper than the float32 products at this accuracy.
    """
    X, _, B = _prepare(pool, None, batch_size, device)
    N = X.shape[0]
    A = None if transform is None else torch.as_tensor(transform).to(device=X.device, dtype=X.dtype)
    if A is not None and A.shape[0] != X.shape[1]:
        raise ValueError(f"transform must have {X.shape[1]} rows, got shape {tuple(A.shape)}")
    d_out = X.shape[1] if A is None else A.shape[1]
    diag0 = sq_norms(X, chunk_rows, A)
    Q = X.new_zeros(B, d_out)  # rows: orthonormal basis of span ψ(S)
    W = X.new_zeros(B, X.shape[1])  # rows: (A q_j)ᵀ, so the coefficients come straight from φ

    cols = torch.arange(B, device=X.device)

    rows_of = row_gatherer(X)

    def update(rows: torch.Tensor, upto: torch.Tensor | None, lo: int, cur: torch.Tensor) -> torch.Tensor:
        coef = rows_of(rows)[0] @ W[lo:lazy.n_updates].T
        if upto is not None:  # rows brought up to date at different times: only their new columns
            coef.masked_fill_(cols[None, lo:lazy.n_updates] < upto[:, None], 0.0)
        return cur - coef.square_().sum(1)

    base = diag0.clone()  # every row's exact value as of the last full pass (update lazy.last_full)

    def refresh_all(j1: int) -> None:
        j0 = lazy.last_full
        if j0 < j1:
            Wj = W[j0:j1]
            rows = 2 * chunk_rows
            buf = X.new_empty(min(rows, N), j1 - j0)  # reused: fresh big temporaries cost page faults
            for s in range(0, N, rows):
                coef = thin_mm(X[s:s + rows], Wj, buf[: min(rows, N - s)])
                base[s:s + rows] -= coef.square_().sum(1)
        lazy.value.copy_(base)
        if picks:
            lazy.value[torch.as_tensor(picks, device=X.device)] = _NEG_INF

    lazy = LazyGreedy(diag0.clone(), update, refresh_all, refresh_every=refresh_every,
                 pass_on_rebuild=pass_on_rebuild, pass_multiple=pass_multiple)
    picks: list[int] = []
    for step in range(B):
        pick = lazy.argmax(N - step)
        if not lazy.best > 0:
            break
        v = X[pick] if A is None else X[pick] @ A  # ψ(pick), then its residual
        v = torch.addmv(v, Q[:step].T, Q[:step] @ v, alpha=-1.0)
        norm = float(torch.linalg.vector_norm(v))
        if step and not norm * norm > 0.5 * float(diag0[pick]):  # lost over half: once more (DGKS)
            v = torch.addmv(v, Q[:step].T, Q[:step] @ v, alpha=-1.0)
            norm = float(torch.linalg.vector_norm(v))
        if not norm > 0:
            break
        torch.div(v, norm, out=Q[step])
        if A is None:
            W[step] = Q[step]
        else:
            torch.mv(A, Q[step], out=W[step])
        picks.append(pick)
        lazy.take(pick)
    if len(picks) < B:  # rank exhausted: fill by prior variance
        rest = diag0.clone()
        rest[torch.as_tensor(picks, dtype=torch.long, device=X.device)] = _NEG_INF
        order = torch.argsort(-rest.double(), stable=True)[: B - len(picks)]
        picks.extend(int(i) for i in order)
    if stats is not None:
        stats.update(lazy.stats())
    return np.asarray(picks, dtype=np.intp)
