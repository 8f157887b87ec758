"""What makes the BMDAL selection rules of :mod:`alhelpers.select.rules` fast.

This module holds the lazy greedy (:class:`LazyGreedy`) and the products over the whole pool
(:func:`sq_norms`, :func:`thin_mm`, :func:`chunked_matvec`); :mod:`alhelpers.select.distances`
holds the bf16 shadow and LCMD's distance columns. None of it changes a pick: it only decides
which values are computed, when, and by which product.

Speed comes from exact algorithmic shortcuts, not from approximations:

* **Lazy greedy** (MAXDIST, MAXDET; :class:`LazyGreedy`). A point's minimum distance to the chosen
  set and its residual posterior variance only ever decrease as points are added, so a stale
  value is an upper bound. Each step takes the current leaders by stale bound, brings just those
  up to date against the points chosen since their last update (a small matrix product), and
  stops as soon as the best up-to-date value beats every stale bound. The pick is the same as
  with all values up to date. MAXDET also brings every row up to date in one thin matrix product
  when rows outside the leaders' front start to compete, and every ``refresh_every`` picks at the
  latest (on flat landscapes such as isotropic features thousands of rows tie near the top, and
  stale bounds would send all of them through the lazy refresh). Those products take 32 picks at
  a time (the lazy refresh applies the rest) through oneDNN's fp32 kernel on a CPU, which runs
  thin products faster than MKL (:func:`thin_mm`).
* **Triangle-inequality pruning** (LCMD). When centre ``c`` is added, a point ``x`` whose nearest
  centre is ``a`` cannot move to ``c`` if ``2·d(x, a) ≤ d(a, c)``; only the others are recomputed.
* **bf16 shadow with rigorous bounds** (MAXDIST, LCMD; float32 pools of ≥ 2²² entries on a CPU
  with fast bf16, or ``bf16_bounds=True``). A bfloat16 copy of the pool (half the bytes; AMX
  matrix products) with each row's rounding error measured gives every product a tight, rigorous
  error bound (:class:`~alhelpers.select.distances.Bf16Shadow`). The distances to the training
  rows come from it: MAXDIST keeps upper bounds (its leaders are recomputed exactly); LCMD
  recomputes in full precision only the (point, training row) pairs the bounds cannot rule out as
  nearest (about 1.5 per point on 512-d N(0, 1) features). LCMD's distance columns come from it
  too (below). The selections are unchanged (tested against the full-precision path and
  bmdal_reg).
* **Speculative distance columns** (LCMD). A pass over the pool costs about the same for a few
  dozen centres as for one, so each pass also computes the columns of the centres LCMD would pick
  next if no point changed cluster; on isotropic features that is the actual sequence and one
  pass serves ~60 picks. See :class:`~alhelpers.select.distances.DistanceCache`.
* Everything over the pool is done in row chunks (``chunk_rows``), so no ``N × |T|`` matrix is
  ever held: a 1,000,000 × 512 float32 pool needs the pool, its bf16 shadow and a few O(N)
  vectors (measured peak 4.0 GB, features included).
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "FRONT_ROWS",
    "LazyGreedy",
    "chunked_matvec",
    "onednn_linear",
    "row_gatherer",
    "sq_norms",
    "thin_mm",
]

#: Rows in the lazy-greedy front (see :class:`LazyGreedy`).
FRONT_ROWS: int = 4096
_NEG_INF = float("-inf")


def sq_norms(X: torch.Tensor, chunk_rows: int, A: torch.Tensor | None = None) -> torch.Tensor:
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


def row_gatherer(*tensors: torch.Tensor):
    """``gather(rows)``: the given rows of each tensor, gathered again only when ``rows`` is not
    the tensor object of the last call (:class:`LazyGreedy` passes the same one while a step
    reuses the last step's leaders)."""
    last: list = [None, ()]

    def gather(rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if rows is not last[0]:
            last[:] = rows, tuple(t.index_select(0, rows) for t in tensors)
        return last[1]

    return gather


class LazyGreedy:
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


#: Rows per batch item when :func:`thin_mm` runs a product as a batch of small ones.
_THIN_BATCH = 32


@functools.lru_cache(maxsize=None)
def onednn_linear() -> bool:
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


def thin_mm(X: torch.Tensor, W: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``X @ W.T`` for a tall ``X`` and a few dozen rows ``W`` (contiguous), in ``out`` or a new
    tensor. On a CPU, float32: oneDNN's fp32 linear kernel, faster than MKL for thin products
    (2 cores, 100,000 × 512: 17 against 22 ms for 32 columns, 24 against 33 ms for 64). Else as
    a batch of ``32``-row products sharing ``W`` (a stride-0 batch, nothing copied), which MKL
    spreads over the threads better than one tall product (21 against 26 ms for 32 columns),
    and from 48 columns on as one product (as fast or faster)."""
    if X.device.type == "cpu" and X.dtype == torch.float32 and onednn_linear():
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


def chunked_matvec(X: torch.Tensor, v: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    """``X @ v``, by blocks of ``4 · chunk_rows`` rows when ``X`` is taller than one block."""
    if X.shape[0] <= 4 * chunk_rows:
        return X @ v
    out = X.new_empty(X.shape[0])
    for s in range(0, X.shape[0], 4 * chunk_rows):
        torch.mv(X[s:s + 4 * chunk_rows], v, out=out[s:s + 4 * chunk_rows])
    return out
