"""Distances of pool rows to training rows and to LCMD's centres, for :mod:`alhelpers.select.rules`.

* :func:`nearest_train`: the nearest training row in full precision, in row chunks.
* :class:`Bf16Shadow`, :func:`train_bounds_bf16`, :func:`use_bf16`: a bfloat16 copy of the pool
  whose products carry rigorous error bounds, and the nearest training rows decided from it.
* :class:`DistanceCache`, :func:`speculative_centres`: LCMD's distance columns over the pool,
  computed a few likely centres at a time.

Why these are exact shortcuts, and what they save, is told in :mod:`alhelpers.select.engine`.
"""

from __future__ import annotations

import torch

__all__ = [
    "SAFETY",
    "U_BF16",
    "Bf16Shadow",
    "DistanceCache",
    "nearest_train",
    "speculative_centres",
    "train_bounds_bf16",
    "use_bf16",
]

_NEG_INF = float("-inf")


def nearest_train(X: torch.Tensor, sqn: torch.Tensor, T: torch.Tensor, chunk_rows: int
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
U_BF16 = 2.0 ** -8
#: Factor on every rigorous error bound below, for the rounding in computing the bounds themselves.
SAFETY = 1.25
#: Bound on ``|fl_bf16(s) − s|`` per unit of the bf16 output, safety factor included.
_U_OUT = SAFETY * U_BF16 * (1 + 2 * U_BF16)
#: Entries of one (rows × training rows) block in the bf16 nearest-training-row search; larger
#: blocks fall out of cache and measured slower.
_TB_ELEMS = 1 << 20


def _gamma(d: int) -> float:
    """γ_d of fp32 summation: the sum of ``d`` products is off by at most ``γ_d · Σ|products|``."""
    return d * 2.0 ** -24 / (1 - d * 2.0 ** -24)


def use_bf16(bf16_bounds: bool | None, X: torch.Tensor) -> bool:
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


class Bf16Shadow:
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
    return (v - v.abs() * (2 * U_BF16) - 1e-30).to(torch.bfloat16)


def train_bounds_bf16(sh: Bf16Shadow, X: torch.Tensor, sqn: torch.Tensor, T: torch.Tensor, chunk_rows: int,
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
        E = SAFETY * (sh.norm[s:e] * beta_max + sh.err[s:e] * tn_max + const)
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


def speculative_centres(pick: int, closest: torch.Tensor, min_sq: torch.Tensor, selected: torch.Tensor,
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


class DistanceCache:
    """Distance columns ``‖x − c‖²`` over the whole pool for a few candidate centres at once.

    A pass over the pool costs about the same memory traffic for one centre as for a few dozen
    (a thin matrix product), so when LCMD needs a full column for its new centre it also computes
    the columns of the centres it is likely to pick next (:func:`speculative_centres`); a later
    pick found here costs no pass. In full precision the number of columns adapts to how often
    the guesses hit (a k-column f32 pass costs about 1 + k/6 single ones on a CPU). With a bf16
    shadow the columns are bf16 products with error bounds (their pass costs about one f32
    matrix–vector product for up to 64 columns, so the width stays at ``width``) and
    :meth:`movers` returns the rows the bounds cannot rule out. Nothing changes in the
    selection, only which product computed a value.
    """

    def __init__(self, X: torch.Tensor, sqn: torch.Tensor, chunk_rows: int, width: int,
                 shadow: Bf16Shadow | None = None) -> None:
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
            E = SAFETY * (sh.norm_max * beta + sh.err_max * cnorm) + _U_OUT * m_max
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

