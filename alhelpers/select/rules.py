"""Greedy batch selection rules of BMDAL (STUDY §7): MAXDIAG, MAXDET, MAXDIST, LCMD.

All rules take feature matrices (NumPy or torch, float32 or float64; kept in their dtype, moved
to ``device`` — CUDA when available by default) and return pool positions as ``np.intp`` in
selection order. They are exact: they select what bmdal_reg's ``select_batch`` selects on the same
kernel (TP mode for MAXDIST/LCMD, P mode for MAXDET), up to floating-point rounding.

Speed comes from exact algorithmic shortcuts, not from approximations:

* **Lazy greedy** (MAXDIST, MAXDET). A point's minimum distance to the chosen set and its residual
  posterior variance only ever decrease as points are added, so a stale value is an upper bound.
  Each step takes the current leaders by stale bound, brings just those up to date against the
  points chosen since their last update (a small matrix product), and stops as soon as the best
  up-to-date value beats every stale bound. The pick is the same as with all values up to date.
  MAXDET also brings every row up to date in one thin matrix product when rows outside the
  leaders' front start to compete, and every ``refresh_every`` picks at the latest (on flat
  landscapes such as isotropic features thousands of rows tie near the top, and stale bounds
  would send all of them through the lazy refresh). Those products take 32 picks at a time
  (the lazy refresh applies the rest) through oneDNN's fp32 kernel on a CPU, which runs thin
  products faster than MKL.
* **Triangle-inequality pruning** (LCMD). When centre ``c`` is added, a point ``x`` whose nearest
  centre is ``a`` cannot move to ``c`` if ``2·d(x, a) ≤ d(a, c)``; only the others are recomputed.
* **bf16 shadow with rigorous bounds** (MAXDIST, LCMD; float32 pools of ≥ 2²² entries on a CPU
  with fast bf16, or ``bf16_bounds=True``). A bfloat16 copy of the pool (half the bytes; AMX
  matrix products) with each row's rounding error measured gives every product a tight, rigorous
  error bound (:class:`_Bf16Shadow`). The distances to the training rows come from it: MAXDIST
  keeps upper bounds (its leaders are recomputed exactly); LCMD recomputes in full precision only
  the (point, training row) pairs the bounds cannot rule out as nearest (about 1.5 per point on
  512-d N(0, 1) features). LCMD's distance columns come from it too (below). The selections are
  unchanged (tested against the full-precision path and bmdal_reg).
* **Speculative distance columns** (LCMD). A pass over the pool costs about the same for a few
  dozen centres as for one, so each pass also computes the columns of the centres LCMD would pick
  next if no point changed cluster; on isotropic features that is the actual sequence and one
  pass serves ~60 picks. See :class:`_DistanceCache`.
* Everything over the pool is done in row chunks (``chunk_rows``), so no ``N × |T|`` matrix is
  ever held: a 1,000,000 × 512 float32 pool needs the pool, its bf16 shadow and a few O(N)
  vectors (measured peak 4.0 GB, features included).

Squared distances are ``k(x,x) + k(y,y) − 2k(x,y)`` as in bmdal_reg. The rules run under
``torch.inference_mode`` (no autograd bookkeeping: 2–4 % off their many small per-step operations).

Ties: every argmax takes the lowest pool position among exactly equal values (as ``torch.argmax``
and bmdal_reg). To break ties at random, permute the pool with a generator before calling and map
the positions back (the Track A strategies do this with ``QueryContext.rng``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

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
#: Rows in the lazy-greedy front (see :class:`_Lazy`).
FRONT_ROWS: int = 4096
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


def _sq_norms(X: torch.Tensor, chunk_rows: int, A: torch.Tensor | None = None) -> torch.Tensor:
    """``‖x‖²`` or ``‖x A‖²`` per row. An upper-triangular ``A`` (the GP posterior matrix is one)
    is applied by column blocks that skip its zero part: about 60 % of the full product's work."""
    out = torch.empty(X.shape[0], dtype=X.dtype, device=X.device)
    blocks, bs = None, 128
    if A is not None and A.shape[0] == A.shape[1] and A.shape[0] >= 2 * bs and torch.equal(A, A.triu()):
        blocks = [(min(b + bs, A.shape[1]), A[: min(b + bs, A.shape[1]), b:b + bs].contiguous())
                  for b in range(0, A.shape[1], bs)]
    buf = X.new_empty(min(chunk_rows, X.shape[0]), bs) if blocks is not None else None
    for s in range(0, X.shape[0], chunk_rows):
        xb = X[s:s + chunk_rows]
        if blocks is not None:
            acc = xb.new_zeros(xb.shape[0])
            for e, Ab in blocks:
                y = torch.mm(xb[:, :e], Ab, out=buf[: xb.shape[0], : Ab.shape[1]])
                acc += y.square_().sum(1)
            out[s:s + chunk_rows] = acc
            continue
        if A is not None:
            xb = xb @ A
        out[s:s + chunk_rows] = (xb * xb).sum(1)
    return out


def _nearest_train(X: torch.Tensor, sqn: torch.Tensor, T: torch.Tensor, chunk_rows: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance to, and index of, the nearest training row (first index on ties)."""
    N = X.shape[0]
    min_sq = torch.full((N,), float("inf"), dtype=X.dtype, device=X.device)
    arg = torch.zeros(N, dtype=torch.long, device=X.device)
    if T.shape[0] == 0:
        return min_sq, arg
    sqt = (T * T).sum(1)
    rows = max(1, min(chunk_rows, (1 << 23) // max(T.shape[0], 1)))
    for s in range(0, N, rows):
        d2 = sqn[s:s + rows, None] + sqt[None, :] - 2.0 * (X[s:s + rows] @ T.T)
        v, i = d2.min(dim=1)
        min_sq[s:s + rows], arg[s:s + rows] = v, i
    return min_sq, arg


#: Unit roundoff of bfloat16 (8 significant bits, round to nearest).
_U_BF16 = 2.0 ** -8
#: Factor on every rigorous error bound below, for the rounding in computing the bounds themselves.
_SAFETY = 1.25
#: Bound on ``|fl_bf16(s) − s|`` per unit of the bf16 output, safety factor included.
_U_OUT = _SAFETY * _U_BF16 * (1 + 2 * _U_BF16)
#: Entries of one (rows × training rows) block in the bf16 nearest-training-row search; larger
#: blocks fall out of cache and measured slower.
_TB_ELEMS = 1 << 20


def _gamma(d: int) -> float:
    """γ_d of fp32 summation: the sum of ``d`` products is off by at most ``γ_d · Σ|products|``."""
    return d * 2.0 ** -24 / (1 - d * 2.0 ** -24)


def _use_bf16(bf16_bounds: bool | None, X: torch.Tensor) -> bool:
    """bf16 shadow products: on request, else for float32 pools of ≥ 2²² entries on a CPU whose
    oneDNN has fast bf16 (AMX / AVX512-BF16). Not on CUDA by default: cuBLAS may reduce bf16
    products in reduced precision, which the error bounds do not cover."""
    if bf16_bounds is not None:
        return bool(bf16_bounds)
    if X.dtype != torch.float32 or X.device.type != "cpu" or X.shape[0] * X.shape[1] < (1 << 22):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - builds without oneDNN
        return False


class _Bf16Shadow:
    """A bfloat16 copy of the pool, with what bounds the error of products taken from it.

    For a row ``x`` with bf16 copy ``x̃`` and a vector ``c`` with bf16 copy ``c̃``, the product
    computed in bf16 with fp32 accumulation and bf16 output, ``m̃``, satisfies

        |x·c − m̃| ≤ 1.25 · (‖x̃‖·β_c + ‖x − x̃‖·‖c‖ + u(1 + 2u)·|m̃|),   β_c = ‖c − c̃‖ + γ_d‖c̃‖,

    because ``x·c − x̃·c̃ = (x − x̃)·c + x̃·(c − c̃)``, products of bf16 numbers are exact in fp32
    and their fp32 sum is off by at most ``γ_d Σ|x̃_i c̃_i| ≤ γ_d ‖x̃‖‖c̃‖``, and rounding the output
    adds at most ``u|s| ≤ u(1 + 2u)|m̃|`` (u = 2⁻⁸). ``‖x̃‖`` and ``‖x − x̃‖`` are measured per row,
    so the bound is tight (≈ 1–2 in ``x·c`` on 512-d N(0, 1) rows, against ``|x·c|`` ≈ 100 at
    the decisions that matter). The rules use these bounds to decide most comparisons from the
    half-size copy and recompute in full precision only the undecided ones.
    """

    def __init__(self, X: torch.Tensor, chunk_rows: int) -> None:
        N, d = X.shape
        self.Xb = torch.empty((N, d), dtype=torch.bfloat16, device=X.device)
        self.norm = X.new_empty(N)  # ‖x̃‖
        self.err = X.new_empty(N)  # ‖x − x̃‖
        rows = max(1, min(chunk_rows, 2048))
        buf = X.new_empty(min(rows, N), d)  # reused, converted in place: no fresh temporaries
        for s in range(0, N, rows):
            e = min(s + rows, N)
            self.Xb[s:e].copy_(X[s:e])
            xr = buf[: e - s].copy_(self.Xb[s:e])
            torch.linalg.vector_norm(xr, dim=1, out=self.norm[s:e])
            torch.linalg.vector_norm(xr.sub_(X[s:e]), dim=1, out=self.err[s:e])
        self.gamma = _gamma(d)
        self.norm_max = float(self.norm.max()) if N else 0.0
        self.err_max = float(self.err.max()) if N else 0.0

    def columns(self, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """bf16 copy of the rows of ``C`` as a contiguous ``(d, k)`` matrix, their norms ``‖c‖``
        and ``β_c``."""
        Cb = C.to(torch.bfloat16)
        Cr = Cb.to(C.dtype)
        beta = torch.linalg.vector_norm(C - Cr, dim=1) + self.gamma * torch.linalg.vector_norm(Cr, dim=1)
        return Cb.T.contiguous(), torch.linalg.vector_norm(C, dim=1), beta


def _round_down_bf16(v: torch.Tensor) -> torch.Tensor:
    """A bf16 value ≤ ``v`` (lowered by 2u relative before rounding to nearest)."""
    return (v - v.abs() * (2 * _U_BF16) - 1e-30).to(torch.bfloat16)


def _train_bounds_bf16(sh: _Bf16Shadow, X: torch.Tensor, sqn: torch.Tensor, T: torch.Tensor, chunk_rows: int,
                       *, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances to the training rows from the bf16 shadow, with rigorous error bounds.

    The bf16 product of ``[x̃, 1, 1]`` and ``[t̃, h, l]`` (``h + l = −‖t‖²/2`` split into two bf16
    numbers, so the constant costs no precision) is ``g̃ ≈ x·t − ‖t‖²/2 = (‖x‖² − ‖x − t‖²)/2``.
    ``exact=False``: an upper bound on each row's minimum squared distance (indices unset).
    ``exact=True``: the exact minimum and its first index: a training row can be the nearest only
    if its upper bound on ``g`` reaches the best lower bound, and only such pairs are recomputed.
    """
    N, n_t, d = X.shape[0], T.shape[0], X.shape[1]
    sqt = (T * T).sum(1)
    Tb, tn, beta = sh.columns(T)
    h = -0.5 * sqt
    hi = h.to(torch.bfloat16)
    lo = (h - hi.to(h.dtype)).to(torch.bfloat16)
    split_err = float((h - hi.to(h.dtype) - lo.to(h.dtype)).abs().max())
    Ta = torch.cat([Tb, hi[None], lo[None]], dim=0)  # (d + 2, n_t)
    g_d2 = _gamma(d + 2)
    const = split_err + g_d2 * float((hi.to(h.dtype).abs() + lo.to(h.dtype).abs()).max())
    beta_max, tn_max = float(beta.max()), float(tn.max())
    u_out = _U_OUT
    out = torch.empty(N, dtype=X.dtype, device=X.device)
    arg = torch.zeros(N, dtype=torch.long, device=X.device)
    rows = max(1, min(chunk_rows, _TB_ELEMS // max(n_t, 1)))
    # buffers reused across chunks: fresh multi-MB temporaries cost page faults every time
    xa = torch.ones(rows, d + 2, dtype=torch.bfloat16, device=X.device)
    gbuf = torch.empty(rows, n_t, dtype=torch.bfloat16, device=X.device)
    mbuf = torch.empty(rows, n_t, dtype=torch.bool, device=X.device)
    px = X.new_empty(2 * rows, d)
    pt = X.new_empty(2 * rows, d)
    for s in range(0, N, rows):
        e = min(s + rows, N)
        xa[: e - s, :d] = sh.Xb[s:e]
        g = torch.mm(xa[: e - s], Ta, out=gbuf[: e - s])  # ≈ x·t − ‖t‖²/2, bf16
        best = g.amax(dim=1).to(X.dtype)
        # |g − g̃| ≤ E + u_out·|g̃| for every training row of this x
        E = _SAFETY * (sh.norm[s:e] * beta_max + sh.err[s:e] * tn_max + const)
        lb_best = best - E - u_out * best.abs()  # ≤ max_t g
        if not exact:
            out[s:e] = sqn[s:e] - 2.0 * lb_best
            continue
        # t can be the nearest only if g̃_t + E + u_out|g̃_t| ≥ lb_best; every such pair is
        # recomputed in full precision (about 1.5 per row on 512-d N(0, 1) features)
        need = lb_best - E
        thr = torch.minimum(need / (1 - u_out), need / (1 + u_out))
        r, t = torch.nonzero(torch.ge(g, _round_down_bf16(thr)[:, None], out=mbuf[: e - s]), as_tuple=True)
        if r.numel() > px.shape[0]:
            px, pt = X.new_empty(r.numel(), d), X.new_empty(r.numel(), d)
        xr = torch.index_select(X, 0, r + s, out=px[: r.numel()])
        xr.mul_(torch.index_select(T, 0, t, out=pt[: r.numel()]))
        d2 = sqn[s:e][r] + sqt[t] - 2.0 * xr.sum(1)
        v = torch.full((e - s,), float("inf"), dtype=X.dtype, device=X.device).scatter_reduce(0, r, d2, reduce="amin")
        ti = torch.where(d2 == v[r], t, torch.full_like(t, n_t))
        i = torch.full((e - s,), n_t, dtype=torch.long, device=X.device).scatter_reduce(0, r, ti, reduce="amin")
        out[s:e], arg[s:e] = v, i
    return out, arg


def _row_gatherer(*tensors: torch.Tensor):
    """``gather(rows)``: the given rows of each tensor, gathered again only when ``rows`` is not
    the tensor object of the last call (:class:`_Lazy` passes the same one while a step reuses the
    last step's leaders)."""
    last: list = [None, ()]

    def gather(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if rows is not last[0]:
            last[:] = rows, tuple(t.index_select(0, rows) for t in tensors)
        return last[1]

    return gather


def _first_argmax(values: torch.Tensor) -> int:
    return int(torch.argmax(values))


class _Lazy:
    """Lazy greedy over values that only decrease.

    ``value`` holds upper bounds, exact where ``upto == n_updates`` (taken rows hold -inf).
    ``update(rows, upto, lo, cur)`` returns the given rows' values brought up to date (``cur``
    their bounds, ``upto`` how many updates each has had or None if all had ``lo``, ``lo`` the
    smallest of those);
    ``refresh_all(upto)`` brings every row of ``value`` up to date through update ``upto`` in one
    contiguous pass, used once the leaders to check exceed ``full_fraction`` of the pool (then
    ``upto = n_updates``), every ``refresh_every`` updates if given (which caps how many updates a
    lazy refresh must apply), and, if ``pass_on_rebuild`` is given, in place of a front rebuild
    (below) once that many updates have passed since the last pass (stale bounds then compete: on
    flat landscapes, every row). With ``pass_multiple`` those two passes apply a multiple of that
    many updates (the rest is left to the lazy refresh): matrix products of 32 or 48 columns run
    faster than of 34 or 40.

    The leaders are looked for in a *front*: the rows whose bound was among the largest
    ``front_rows`` when the front was last built, with ``tau`` the smallest of those bounds. A row
    outside the front has a bound ≤ ``tau`` for good (bounds only decrease), so a step needs a
    ``topk`` over the front only; the front is rebuilt (twice as large) when its best exact value
    can no longer be shown to beat ``tau``. The front keeps its own copy of its rows' values and
    update counts (written back when it is rebuilt), so a step costs a couple of dozen small
    tensor operations whatever the pool size. While the front stands, a step first tries the
    last step's leaders alone (one update each, the same ``rows`` tensor, no ``topk``): their best
    is the pick if it still beats the bound on every other row.
    """

    def __init__(self, value: torch.Tensor, update, refresh_all, *, k0: int = 64,
                 full_fraction: float = 0.125, front_rows: int | None = None,
                 refresh_every: int | None = None, pass_on_rebuild: int | None = None,
                 pass_multiple: int | None = None, n_updates: int = 0, upto: int = 0) -> None:
        self.value = value
        self.upto = torch.full((value.shape[0],), upto, dtype=torch.long, device=value.device)
        self.n_updates = n_updates
        self.update = update
        self.refresh_all = refresh_all
        self.k0 = k0
        self.full_rows = max(k0, int(full_fraction * value.shape[0]))
        self.front_rows = max(k0, FRONT_ROWS if front_rows is None else front_rows)
        self.refresh_every = refresh_every
        self.pass_on_rebuild = pass_on_rebuild
        self.pass_multiple = pass_multiple
        self.last_full = n_updates
        self.front: torch.Tensor | None = None
        self.front_value = self.front_upto = value[:0]
        self.tau = _NEG_INF
        self.best = _NEG_INF  # exact value of the row the last argmax returned
        self._pos: int | None = None  # its position in the front
        # the leaders the last argmax brought up to date (positions, rows, bound on all others):
        # while the front stands, the next argmax starts from them (see argmax)
        self._blk: tuple[torch.Tensor, torch.Tensor, float, int] | None = None
        self.n_refreshed = 0
        self.n_full = 0
        self.n_fronts = 0

    def _write_back(self) -> None:
        if self.front is not None:
            self.value[self.front] = self.front_value
            self.upto[self.front] = self.front_upto
            self.front = None

    def _build_front(self, rows: int) -> None:
        self._write_back()
        self._blk = None
        n = self.value.shape[0]
        if rows >= n:
            self.front = torch.arange(n, device=self.value.device)
            self.tau = _NEG_INF
        else:
            vals, self.front = torch.topk(self.value, rows, sorted=False)
            self.tau = float(vals.min())
        self.front_value = self.value[self.front]
        self.front_upto = self.upto[self.front]
        self.n_fronts += 1

    def _refresh_all(self, complete: bool = False) -> None:
        self._write_back()
        upto = self.n_updates
        if not complete and self.pass_multiple:
            upto = self.last_full + (upto - self.last_full) // self.pass_multiple * self.pass_multiple
            if upto == self.last_full:
                upto = self.n_updates
        self.refresh_all(upto)
        self.upto.fill_(upto)
        self.n_refreshed += self.value.shape[0]
        self.n_full += 1
        self.last_full = upto
        self._build_front(self.front_rows)

    def stats(self) -> dict[str, int]:
        """Row refreshes done, full passes, fronts built."""
        return {"n_refreshed": self.n_refreshed, "n_full_passes": self.n_full, "n_fronts": self.n_fronts}

    def take(self, pick: int) -> None:
        """Record that ``pick`` is taken (the row argmax just returned, or any row before the
        first argmax): one more update."""
        self.n_updates += 1
        if self._pos is not None:
            self.front_value[self._pos] = _NEG_INF
            self.front_upto[self._pos] = self.n_updates
            self._pos = None
        else:  # a row outside the front (none is built yet, or a tie wider than the front)
            self.value[pick] = _NEG_INF
            self.upto[pick] = self.n_updates

    def _win(self, exact: torch.Tensor, top: list, at: list, pos: torch.Tensor, rows: torch.Tensor,
             rest: float) -> int:
        """Return the best of the up-to-date leaders ``pos`` (rows ``rows``, values ``exact``;
        every other row's bound ≤ ``rest`` or ``tau``) and keep them for the next argmax."""
        i = at[0]
        if len(top) > 1 and top[1] == top[0]:  # exact tie: lowest pool position
            i = int(torch.nonzero(exact == top[0])[rows[exact == top[0]].argmin(), 0])
        self._pos = int(pos[i])
        self.best = top[0]
        pick = int(rows[i])
        if pos.numel() > 2 * self.k0:  # keep the best k0 (the others' exact values ≤ the k0-th)
            vals, keep = torch.topk(exact, self.k0, sorted=True)
            pos, rows, rest = pos[keep], rows[keep], max(rest, float(vals[-1]))
        self._blk = (pos, rows, rest, self.n_updates)
        return pick

    def argmax(self, n_left: int) -> int:
        if self.refresh_every and self.n_updates - self.last_full >= self.refresh_every:
            self._refresh_all()
        if self.front is None:
            self._build_front(self.front_rows)
        n = self.n_updates
        k = min(self.k0, n_left)
        if self._blk is not None and self._blk[3] == n - 1:
            # the last step's leaders: one update each, no topk (``rows`` is the same tensor,
            # so ``update`` may reuse what it gathered for it)
            pos, rows, rest, _ = self._blk
            self._blk = None
            exact = self.update(rows, None, n - 1, self.front_value[pos])  # taken rows stay -inf
            self.front_value[pos] = exact
            self.front_upto[pos] = n
            self.n_refreshed += pos.numel()
            top, at = torch.topk(exact, min(2, pos.numel()))
            top, at = top.tolist(), at.tolist()
            if top[0] > max(rest, self.tau):
                return self._win(exact, top, at, pos, rows, rest)
        while True:
            if k > self.full_rows:
                self._refresh_all(complete=True)
                pick = int(torch.argmax(self.value))
                self.best = float(self.value[pick])
                at = torch.nonzero(self.front == pick)
                self._pos = int(at[0, 0]) if at.numel() else None
                return pick
            f = self.front_value.shape[0]
            kk = min(k, f)
            bound, pos = torch.topk(self.front_value, kk, sorted=True)
            u = self.front_upto[pos]
            lo_hi = torch.aminmax(u)
            lo, hi = int(lo_hi.min), int(lo_hi.max)
            rows = self.front[pos]
            if lo < n:
                exact = self.update(rows, None if lo == hi else u, lo, bound)
                self.front_value[pos] = exact
                self.front_upto[pos] = n
                self.n_refreshed += kk
            else:
                exact = bound
            top, at = torch.topk(exact, min(2, kk))
            top, at = top.tolist(), at.tolist()
            # rows of the front outside pos have bounds <= bound[-1], rows outside it <= tau;
            # a strict win over both is final, and so is the best of all rows not yet taken
            # (tau = -inf: every row outside the front is taken)
            rest = float(bound[-1]) if kk < f else _NEG_INF
            if top[0] > max(rest, self.tau) or (k >= n_left and self.tau == _NEG_INF):
                return self._win(exact, top, at, pos, rows, rest)
            if kk < f and rest > self.tau and k < n_left:
                k = min(2 * k, n_left)
            elif self.pass_on_rebuild and n - self.last_full >= self.pass_on_rebuild:
                self._refresh_all()  # rows outside the front compete: all up to date, new front
                k = min(self.k0, n_left)
            else:  # rows outside the front compete: rebuild it from the current bounds
                if lo >= n:  # the leaders were all exact already: ties, so look at more of them
                    k = min(2 * k, n_left)
                self._build_front(max(self.front_rows, 2 * k))


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
    sqn = _sq_norms(X, chunk_rows)
    fast = n_t >= 32 and _use_bf16(bf16_bounds, X)
    if fast:  # upper bounds only; the leaders are brought up to date against T lazily
        min_sq, _ = _train_bounds_bf16(_Bf16Shadow(X, chunk_rows), X, sqn, T, chunk_rows, exact=False)
    else:
        min_sq, _ = _nearest_train(X, sqn, T, chunk_rows)
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

    rows_of = _row_gatherer(X, sqn)

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
    lazy = _Lazy(min_sq, update, refresh_all, n_updates=n_t, upto=0 if fast else n_t)
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
    next are computed with it (:class:`_DistanceCache`; ``speculate=1``: one column per pass).
    With ``bf16_bounds`` (default: float32 pools of ≥ 2²² entries on a CPU with fast bf16) the
    nearest training rows and the columns come from a bfloat16 copy of the pool with rigorous
    error bounds (:class:`_Bf16Shadow`) and only the points the bounds cannot rule out are
    recomputed in full precision; the picks are the same.
    ``stats`` receives ``n_recomputed`` (point–centre distances computed in full precision after
    the start), ``n_full_passes`` and ``n_cache_hits``.
    """
    X, T, B = _prepare(pool, train, batch_size, device)
    N, n_t = X.shape[0], T.shape[0]
    sqn = _sq_norms(X, chunk_rows)
    shadow = _Bf16Shadow(X, chunk_rows) if _use_bf16(bf16_bounds, X) else None
    if n_t and shadow is not None:
        min_sq, arg = _train_bounds_bf16(shadow, X, sqn, T, chunk_rows, exact=True)
    else:
        min_sq, arg = _nearest_train(X, sqn, T, chunk_rows)
    closest = arg + 1 if n_t else torch.zeros(N, dtype=torch.long, device=X.device)  # bmdal's ids
    centres = X.new_empty(n_t + B, X.shape[1])  # centre id c + 1 <-> row c
    centres[:n_t] = T
    csq = X.new_empty(n_t + B)
    csq[:n_t] = (T * T).sum(1)
    selected = torch.zeros(N, dtype=torch.bool, device=X.device)
    neg_inf = torch.tensor(_NEG_INF, dtype=X.dtype, device=X.device)
    cache = _DistanceCache(X, sqn, chunk_rows, speculate, shadow)
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
            min_sq = sqn + c_sq - 2.0 * _chunked_matvec(X, c, chunk_rows)
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
                    pick, min_sq, lambda k: _speculative_centres(pick, closest, min_sq, selected, sizes, k))
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


def _speculative_centres(pick: int, closest: torch.Tensor, min_sq: torch.Tensor, selected: torch.Tensor,
                         sizes: torch.Tensor, k: int) -> torch.Tensor:
    """``pick`` and up to ``k − 1`` likely next LCMD picks.

    First the picks LCMD would make if no point changed cluster (each pick only leaves its cluster,
    which shrinks by the pick's squared distance) — on isotropic features new centres capture
    almost nothing and this is the actual sequence — then further far members of the largest
    clusters, round robin. ``sizes`` are the cluster sizes before ``pick`` is added.
    """
    dev = min_sq.device
    if k <= 1:
        return torch.tensor([pick], device=dev)
    n_c = sizes.numel() - 1
    m = min(n_c + 1, k)
    top_sizes, top = torch.topk(sizes, min(m + 1, n_c + 1))
    floor = float(top_sizes[m]) if top_sizes.numel() > m else _NEG_INF  # largest size outside the top
    top_sizes, top = top_sizes[:m], top[:m]
    in_top = torch.zeros(n_c + 1, dtype=torch.bool, device=dev)
    in_top[top] = True
    avail = in_top[closest] & ~selected
    avail[pick] = False
    rows = torch.nonzero(avail).squeeze(1)
    rows = rows[torch.argsort(min_sq[rows], descending=True, stable=True)]
    rows = rows[torch.argsort(closest[rows], stable=True)]  # by cluster, farthest first
    _, counts = torch.unique_consecutive(closest[rows], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(rows.numel(), device=dev) - torch.repeat_interleave(starts, counts)
    rows = rows[rank < k]  # no cluster gives more than k guesses
    members: dict[int, list[tuple[int, float]]] = {}
    for cl, r, v in zip(closest[rows].tolist(), rows.tolist(), min_sq[rows].tolist()):
        members.setdefault(cl, []).append((r, v))
    size = dict(zip(top.tolist(), top_sizes.tolist()))
    ptr = dict.fromkeys(size, 0)
    a0 = int(closest[pick])
    if a0 in size:
        size[a0] -= float(min_sq[pick])
    out = [pick]
    while len(out) < k and size:
        a = max(size, key=size.__getitem__)
        if size[a] < floor:
            break
        lst = members.get(a, [])
        if ptr[a] >= len(lst):
            del size[a]
            continue
        r, v = lst[ptr[a]]
        ptr[a] += 1
        out.append(r)
        size[a] -= v
    order = top.tolist()
    while len(out) < k:
        added = False
        for a in order:
            lst = members.get(a, [])
            if ptr[a] < len(lst) and len(out) < k:
                out.append(lst[ptr[a]][0])
                ptr[a] += 1
                added = True
        if not added:
            break
    return torch.tensor(out, device=dev)


class _DistanceCache:
    """Distance columns ``‖x − c‖²`` over the whole pool for a few candidate centres at once.

    A pass over the pool costs about the same memory traffic for one centre as for a few dozen
    (a thin matrix product), so when LCMD needs a full column for its new centre it also computes
    the columns of the centres it is likely to pick next (:func:`_speculative_centres`); a later
    pick found here costs no pass. In full precision the number of columns adapts to how often
    the guesses hit (a k-column f32 pass costs about 1 + k/6 single ones on a CPU). With a bf16
    shadow the columns are bf16 products with error bounds (their pass costs about one f32
    matrix–vector product for up to 64 columns, so the width stays at ``width``) and
    :meth:`movers` returns the rows the bounds cannot rule out. Nothing changes in the
    selection, only which product computed a value.
    """

    def __init__(self, X: torch.Tensor, sqn: torch.Tensor, chunk_rows: int, width: int,
                 shadow: _Bf16Shadow | None = None) -> None:
        self.X, self.sqn, self.chunk_rows, self.shadow = X, sqn, chunk_rows, shadow
        self.max_width = max(1, int(width))
        self.width = self.max_width if shadow is not None else min(16, self.max_width)
        self._hits_since = 0
        self.cols: dict[int, int] = {}
        self.D: torch.Tensor | None = None  # (k, N): squared distances, or bf16 products
        self.kappa: list[float] = []
        self.sqn_max = float(sqn.max()) if sqn.numel() else 0.0
        self.n_passes = 0
        self.n_hits = 0

    def __contains__(self, pick: int) -> bool:
        return pick in self.cols

    def _pass(self, pick: int, candidates) -> None:
        if self.shadow is None and self.n_passes:  # adapt the width to the hits
            if self._hits_since + 1 < 1 + self.width / 6:
                self.width = max(1, self.width // 2)
            elif self._hits_since >= self.width // 4:
                self.width = min(self.max_width, 2 * self.width)
        self._hits_since = 0
        dev = self.X.device
        ids = candidates(self.width) if self.width > 1 else torch.tensor([pick], device=dev)
        C = self.X[ids]
        N = self.X.shape[0]
        D = self.X.new_empty(len(ids), N)
        rows = 4 * self.chunk_rows
        if self.shadow is None:
            Ct = C.T.contiguous()
            for s in range(0, N, rows):
                D[:, s:s + rows] = (self.X[s:s + rows] @ Ct).T
            D.mul_(-2.0).add_(self.sqn[None, :]).add_(self.sqn[ids][:, None])
        else:
            sh = self.shadow
            Cb, cnorm, beta = sh.columns(C)
            m_max = torch.zeros(len(ids), dtype=self.X.dtype, device=dev)
            for s in range(0, N, self.chunk_rows):
                G = sh.Xb[s:s + self.chunk_rows] @ Cb
                m_max = torch.maximum(m_max, G.abs().amax(0).to(m_max.dtype))
                D[:, s:s + self.chunk_rows] = G.T
            # one bound per column: |x·c − m̃| ≤ E_c for every row, from the largest row norms
            # and |m̃| of the column; and the rounding of the full-precision distances, ≤ s_c
            E = _SAFETY * (sh.norm_max * beta + sh.err_max * cnorm) + _U_OUT * m_max
            csq = self.sqn[ids]
            slack = 8 * sh.gamma * (self.sqn_max + csq)
            # x may be captured by c only if m̃ > (‖x‖² − min_sq)/2 + κ_c
            self.kappa = ((csq - slack) / 2 - E).tolist()
        self.D = D
        self.cols = {int(i): j for j, i in enumerate(ids.tolist())}
        self.n_passes += 1

    def movers(self, pick: int, min_sq: torch.Tensor, candidates) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows that may be closer to ``pick`` than ``min_sq`` says, and their exact squared
        distances to it (every other row is farther). ``candidates(k)`` proposes the centres of
        a new pass when ``pick`` is not cached."""
        j = self.cols.get(pick)
        if j is None:
            self._pass(pick, candidates)
            j = 0
        else:
            self.n_hits += 1
            self._hits_since += 1
        col = self.D[j]
        if self.shadow is None:
            rows = torch.nonzero(col < min_sq).squeeze(1)
            return rows, col[rows]
        h = torch.sub(self.sqn, min_sq).mul_(0.5).add_(self.kappa[j])
        rows = torch.nonzero(col > h).squeeze(1)
        d2 = self.sqn[rows] + self.sqn[pick] - 2.0 * (self.X[rows] @ self.X[pick])
        return rows, d2


#: Rows per batch item when :func:`_thin_mm` runs a product as a batch of small ones.
_THIN_BATCH = 32


@functools.lru_cache(maxsize=None)
def _onednn_linear() -> bool:
    """Whether this torch has oneDNN's fp32 linear kernel (``torch.ops.mkldnn._linear_pointwise``)
    and it computes a product to fp32 accuracy (not in reduced precision)."""
    try:
        g = torch.Generator().manual_seed(0)
        x, w = torch.randn(64, 256, generator=g), torch.randn(24, 256, generator=g)
        y = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
        ref = x.double() @ w.double().T
        return bool((y.double() - ref).abs().max() <= 1e-4 * ref.abs().max())
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):  # pragma: no cover - no oneDNN
        return False


def _thin_mm(X: torch.Tensor, W: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``X @ W.T`` for a tall ``X`` and a few dozen rows ``W`` (contiguous), in ``out`` or a new
    tensor. On a CPU, float32: oneDNN's fp32 linear kernel, faster than MKL for thin products
    (2 cores, 100,000 × 512: 17 against 22 ms for 32 columns, 24 against 33 ms for 64). Else as
    a batch of ``32``-row products sharing ``W`` (a stride-0 batch, nothing copied), which MKL
    spreads over the threads better than one tall product (21 against 26 ms for 32 columns),
    and from 48 columns on as one product (as fast or faster)."""
    if X.device.type == "cpu" and X.dtype == torch.float32 and _onednn_linear():
        return torch.ops.mkldnn._linear_pointwise(X, W, None, "none", [], "")
    Wt = W.T
    n = X.shape[0] - X.shape[0] % _THIN_BATCH
    if X.device.type != "cpu" or n == 0 or not X.is_contiguous() or Wt.shape[1] > 40:
        return torch.mm(X, Wt, out=out)
    b = n // _THIN_BATCH
    torch.bmm(X[:n].view(b, _THIN_BATCH, X.shape[1]), Wt.expand(b, *Wt.shape),
              out=out[:n].view(b, _THIN_BATCH, Wt.shape[1]))
    if n < X.shape[0]:
        torch.mm(X[n:], Wt, out=out[n:])
    return out


def _chunked_matvec(X: torch.Tensor, v: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    if X.shape[0] <= 4 * chunk_rows:
        return X @ v
    out = X.new_empty(X.shape[0])
    for s in range(0, X.shape[0], 4 * chunk_rows):
        torch.mv(X[s:s + 4 * chunk_rows], v, out=out[s:s + 4 * chunk_rows])
    return out


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
    diag0 = _sq_norms(X, chunk_rows, A)
    Q = X.new_zeros(B, d_out)  # rows: orthonormal basis of span ψ(S)
    W = X.new_zeros(B, X.shape[1])  # rows: (A q_j)ᵀ, so the coefficients come straight from φ

    cols = torch.arange(B, device=X.device)

    rows_of = _row_gatherer(X)

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
                coef = _thin_mm(X[s:s + rows], Wj, buf[: min(rows, N - s)])
                base[s:s + rows] -= coef.square_().sum(1)
        lazy.value.copy_(base)
        if picks:
            lazy.value[torch.as_tensor(picks, device=X.device)] = _NEG_INF

    lazy = _Lazy(diag0.clone(), update, refresh_all, refresh_every=refresh_every,
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
