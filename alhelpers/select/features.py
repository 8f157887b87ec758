"""Feature maps, the GP posterior transform and diagonal kernels of BMDAL (STUDY §7).

A BMDAL method is *base feature map φ → optional transform → selection rule*; this module
holds the first two parts (the rules live in :mod:`alhelpers.select.rules`). The kernel is
always ``k(x, x') = φ(x)·φ(x')``.

Feature maps
------------
* :func:`identity_features` — the given descriptors themselves (bmdal_reg's ``'linear'``).
* :func:`ll_features` — FEAT(LL): the gradient of the output with respect to the last linear
  layer's weights and bias, i.e. ``[h, 1]`` with ``h`` the last hidden activations.
* :class:`GradientSketch` / :func:`rp_features` — FEAT(RP): random projections of the full
  parameter gradient. Per layer ``l`` the exact gradient block is ``g⁽ˡ⁾ ⊗ x̃⁽ˡ⁻¹⁾``
  (output sensitivity ⊗ layer input with a bias entry); its sketch is
  ``(U_out g) ⊙ (U_in x̃) / √p`` summed over layers, with independent standard Gaussian
  ``U_out⁽ˡ⁾ (p × d_l)`` and ``U_in⁽ˡ⁾ (p × d_{l−1}+1)`` drawn from a seeded
  :class:`torch.Generator`. ``E[sketch(x)·sketch(x')]`` is exactly the full-gradient kernel.

Both gradient maps take the rows of a *segment* (an atom) and optionally sum them per structure
(``segments``/``n_segments``), with the same projection matrices for every atom, so a model whose
output is a sum over atoms (Track B) uses the same code as the Track A MLP (one row = one
structure). For an :class:`~alhelpers.formation.models.EnsembleRegressor` the features are those of the
ensemble *mean*: the members' blocks side by side (LL) or their sketches summed (RP; each member
has its own matrices), divided by ``M``. (The 1/M scale changes no selection: MAXDIST, LCMD and
MAXDET are scale-invariant, and so is the GP transform with the default σ².)

Transform
---------
* :func:`gp_posterior_matrix` — ``φ_GP(x) = σ·C^{-1/2}·φ(x)`` with ``C = Φ_TᵀΦ_T + σ²I`` and by
  default ``σ² = trace(Φ_TᵀΦ_T)/(N_T·d)``. Any square root of ``C⁻¹`` gives the same kernel; the
  Cholesky one (``σ·L^{-T}`` with ``LLᵀ = C``, as bmdal_reg) is used because it is cheaper. The
  result is a ``(d, d)`` matrix ``A`` with ``φ_GP = φ @ A``; rules can apply it on the fly.

Diagonal kernels
----------------
:func:`qbc_scores` (ensemble standard deviation), :func:`ae_scores` (absolute error against
known labels — an *oracle*, benchmarks only), :func:`rnd_scores` (i.i.d. uniform).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from alhelpers.al.seeding import seed_int

__all__ = [
    "DEFAULT_RP_DIM",
    "GradientSketch",
    "ae_scores",
    "default_sigma2",
    "full_gradient_features",
    "gp_posterior_matrix",
    "identity_features",
    "kronecker_pair",
    "last_layer_gradient",
    "ll_features",
    "mlp_layer_terms",
    "qbc_scores",
    "rnd_scores",
    "rp_features",
    "segment_sum",
    "with_bias",
]

#: Default sketch dimension p of FEAT(RP) (STUDY §7).
DEFAULT_RP_DIM: int = 512


def segment_sum(rows: torch.Tensor, segments: torch.Tensor | None, n_segments: int | None) -> torch.Tensor:
    """Sum rows per segment (structure); identity when ``segments`` is None."""
    if segments is None:
        return rows
    if n_segments is None:
        n_segments = int(segments.max()) + 1 if segments.numel() else 0
    out = torch.zeros(n_segments, rows.shape[1], dtype=rows.dtype, device=rows.device)
    return out.index_add_(0, segments.to(rows.device, torch.long), rows)


def with_bias(x: torch.Tensor) -> torch.Tensor:
    """``[x, 1]``: the rows with a constant 1 appended (the bias entry of a layer input)."""
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)], dim=1)


def last_layer_gradient(
    hidden: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
    n_segments: int | None = None,
) -> torch.Tensor:
    """FEAT(LL) rows: the gradient of the output with respect to the last linear layer.

    For ``out = h·w + b`` it is ``[h, 1]``. ``weight`` multiplies each row (a per-atom factor such
    as ``c·s_Z`` when the output is scaled) and ``segments`` sums rows per structure (a model whose
    output is a sum over atoms). The one implementation behind both tracks' FEAT(LL).
    """
    rows = with_bias(hidden)
    if weight is not None:
        rows = rows * weight.unsqueeze(1)
    return segment_sum(rows, segments, n_segments)


# --------------------------------------------------------------------------- feature maps


def identity_features(X: np.ndarray) -> np.ndarray:
    """The descriptors themselves as features (bmdal_reg's ``'linear'`` base kernel)."""
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {arr.shape}")
    return arr


def mlp_layer_terms(
    x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Layer inputs ``x⁽ˡ⁻¹⁾`` (without bias entry) and output sensitivities ``g⁽ˡ⁾ = ∂out/∂z⁽ˡ⁾``.

    For one ReLU MLP with weights ``(d_in, d_out)`` per layer (``z = x @ W + b``) and a single
    output, rows ``x`` of shape ``(n, d_0)``. The gradient of the output with respect to layer
    ``l``'s weights is ``outer(x⁽ˡ⁻¹⁾, g⁽ˡ⁾)`` and with respect to its bias ``g⁽ˡ⁾``.
    """
    inputs, pre = [], []
    h = x
    last = len(weights) - 1
    for layer, (w, b) in enumerate(zip(weights, biases)):
        inputs.append(h)
        z = h @ w + b.reshape(1, -1)
        pre.append(z)
        if layer < last:
            h = torch.relu(z)
    if weights[-1].shape[1] != 1:
        raise ValueError("mlp_layer_terms needs a single-output network")
    g = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    sens = [g]
    for layer in range(last, 0, -1):
        g = (g @ weights[layer].T) * (pre[layer - 1] > 0).to(x.dtype)
        sens.append(g)
    return inputs, sens[::-1]


def kronecker_pair(gen: torch.Generator, p: int, d_out: int, d_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard Gaussian ``U_out (p × d_out)`` then ``U_in (p × d_in)`` from ``gen``, float64 on the
    CPU: the matrices of one gradient block ``g ⊗ x``, sketched as ``(U_out g) ⊙ (U_in x)``."""
    u_out = torch.randn(int(p), int(d_out), generator=gen, dtype=torch.float64)
    return u_out, torch.randn(int(p), int(d_in), generator=gen, dtype=torch.float64)


class GradientSketch:
    """Seeded random projections of per-layer gradient blocks (FEAT(RP), STUDY §7).

    Args:
        layer_dims: ``[d_0, d_1, ..., d_L]``: layer ``l`` maps ``d_{l-1}`` inputs to ``d_l``
            outputs. One set of matrices per layer; make one sketch per independent parameter
            block (e.g. per ensemble member).
        p: Sketch dimension.
        seed: Seed of the :class:`torch.Generator` the Gaussian matrices come from.
        dtype, device: Of the matrices (drawn in float64 on the CPU, then cast and moved, so a
            seed gives the same matrices everywhere).
    """

    def __init__(
        self,
        layer_dims: Sequence[int],
        *,
        p: int = DEFAULT_RP_DIM,
        seed: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        if p < 1:
            raise ValueError(f"p must be >= 1, got {p}")
        self.p = int(p)
        self.layer_dims = [int(d) for d in layer_dims]
        g = torch.Generator(device="cpu")
        g.manual_seed(int(seed))
        self.u_in: list[torch.Tensor] = []
        self.u_out: list[torch.Tensor] = []
        for d_prev, d_out in zip(self.layer_dims[:-1], self.layer_dims[1:]):
            u_out, u_in = kronecker_pair(g, self.p, d_out, d_prev + 1)
            self.u_out.append(u_out.to(device=device, dtype=dtype))
            self.u_in.append(u_in.to(device=device, dtype=dtype))

    def sketch(
        self,
        inputs: Sequence[torch.Tensor],
        sensitivities: Sequence[torch.Tensor],
        *,
        segments: torch.Tensor | None = None,
        n_segments: int | None = None,
    ) -> torch.Tensor:
        """``Σ_l (g⁽ˡ⁾ U_outᵀ) ⊙ ([x⁽ˡ⁻¹⁾, 1] U_inᵀ) / √p``, summed per segment; ``(n or n_segments, p)``.

        ``inputs[l]`` is ``(n_rows, d_l)`` without bias entry, ``sensitivities[l]`` is
        ``(n_rows, d_{l+1})``. Rows are atoms when ``segments`` (structure index per row) is
        given: each atom is sketched with the same matrices and the sketches are summed, which is
        the sketch of the structure's gradient because the projection is linear.
        """
        if len(inputs) != len(self.u_in) or len(sensitivities) != len(self.u_out):
            raise ValueError(f"expected {len(self.u_in)} layers, got {len(inputs)} inputs and {len(sensitivities)} sensitivities")
        out = None
        for x, gl, u_in, u_out in zip(inputs, sensitivities, self.u_in, self.u_out):
            term = (gl.to(u_out.dtype) @ u_out.T) * (with_bias(x.to(u_in.dtype)) @ u_in.T)
            out = term if out is None else out + term
        assert out is not None
        return segment_sum(out / math.sqrt(self.p), segments, n_segments)


def _model_parameters(model: object) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    weights, biases = getattr(model, "weights_", None), getattr(model, "biases_", None)
    if weights is None or biases is None:
        raise RuntimeError("the model is not fitted (weights_/biases_ are None)")
    return weights, biases


def _network_input(model: object, X: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    xs = model.transform_inputs(X)  # type: ignore[attr-defined]
    return torch.as_tensor(xs, dtype=dtype, device=model.weights_[0].device)  # type: ignore[attr-defined]


def _members(model: object, member: int | None) -> list[int]:
    M = int(model.weights_[0].shape[0])  # type: ignore[attr-defined]
    if member is None:
        return list(range(M))
    if not 0 <= int(member) < M:
        raise ValueError(f"member must be in [0, {M}), got {member}")
    return [int(member)]


def ll_features(
    model: object, X: np.ndarray, *, member: int | None = None, dtype: torch.dtype = torch.float64
) -> np.ndarray:
    """FEAT(LL) of an :class:`~alhelpers.formation.models.EnsembleRegressor` at raw descriptors ``X``.

    ``member=k``: that member's ``[h, 1]`` (the gradient of its standardised output with respect
    to its last layer's weights and bias), shape ``(n, H + 1)``. ``member=None``: the gradient of
    the ensemble mean, i.e. all members' blocks side by side divided by ``M``, ``(n, M·(H+1))``.
    For a model summed over atoms, sum each atom's ``[h, 1]`` per structure instead.
    """
    weights, biases = _model_parameters(model)
    x = _network_input(model, X, dtype)
    members = _members(model, member)
    blocks = []
    with torch.no_grad():
        for k in members:
            inputs, _ = mlp_layer_terms(x, [w[k].to(dtype) for w in weights], [b[k].to(dtype) for b in biases])
            blocks.append(last_layer_gradient(inputs[-1]))
    out = torch.cat(blocks, dim=1)
    if member is None:
        out = out / len(members)
    return out.cpu().numpy()


def rp_features(
    model: object,
    X: np.ndarray,
    *,
    p: int = DEFAULT_RP_DIM,
    seed: int,
    member: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """FEAT(RP) of an :class:`~alhelpers.formation.models.EnsembleRegressor` at raw descriptors ``X``, ``(n, p)``.

    ``member=None`` sketches the gradient of the ensemble mean: each member's sketch (with its
    own matrices, seeded from ``(seed, member)``) summed and divided by ``M``.
    """
    weights, biases = _model_parameters(model)
    x = _network_input(model, X, dtype)
    members = _members(model, member)
    dims = [weights[0].shape[1], *(w.shape[2] for w in weights)]
    out = torch.zeros(x.shape[0], p, dtype=dtype, device=x.device)
    with torch.no_grad():
        for k in members:
            seed_k = seed_int(int(seed), k, bits=63)
            sk = GradientSketch(dims, p=p, seed=seed_k, dtype=dtype, device=x.device)
            inputs, sens = mlp_layer_terms(x, [w[k].to(dtype) for w in weights], [b[k].to(dtype) for b in biases])
            out += sk.sketch(inputs, sens)
    if member is None:
        out = out / len(members)
    return out.cpu().numpy()


def full_gradient_features(model: object, X: np.ndarray, *, member: int) -> np.ndarray:
    """The exact full parameter gradient of one member, layer blocks ``[W_l (row-major), b_l]``.

    Shape ``(n, n_params)``; for tests and tiny networks only (it is the map FEAT(RP) sketches).
    """
    weights, biases = _model_parameters(model)
    x = _network_input(model, X, torch.float64)
    inputs, sens = mlp_layer_terms(x, [w[member].double() for w in weights], [b[member].double() for b in biases])
    blocks = []
    for xi, gl in zip(inputs, sens):
        blocks.append(torch.einsum("ni,no->nio", xi, gl).reshape(x.shape[0], -1))
        blocks.append(gl)
    return torch.cat(blocks, dim=1).cpu().numpy()


# --------------------------------------------------------------------------- GP transform


def default_sigma2(train_features: np.ndarray | torch.Tensor) -> float:
    """``σ² = trace(Φ_TᵀΦ_T)/(N_T·d)`` (the mean squared feature entry); 1.0 when there is no data."""
    phi = torch.as_tensor(train_features)
    n, d = phi.shape
    if n == 0 or d == 0:
        return 1.0
    s2 = float((phi.double() ** 2).sum()) / (n * d)
    return s2 if s2 > 0 else 1.0


def gp_posterior_matrix(
    train_features: np.ndarray | torch.Tensor, *, sigma2: float | None = None
) -> torch.Tensor:
    """The ``(d, d)`` matrix ``A`` with ``φ_GP(x) = φ(x) @ A`` (STUDY §7), in float64.

    ``A = σ·L^{-T}`` with ``LLᵀ = Φ_TᵀΦ_T + σ²I``, so ``φ_GP(x)·φ_GP(x') = σ²φ(x)ᵀC⁻¹φ(x')``: the
    GP posterior covariance after observing the training rows with noise variance σ²; its
    diagonal is the posterior variance. ``sigma2`` defaults to :func:`default_sigma2`.
    """
    phi = torch.as_tensor(train_features).double()
    if phi.ndim != 2:
        raise ValueError(f"train_features must be 2-D, got shape {tuple(phi.shape)}")
    s2 = default_sigma2(phi) if sigma2 is None else float(sigma2)
    if not s2 > 0:
        raise ValueError(f"sigma2 must be > 0, got {s2}")
    d = phi.shape[1]
    cov = phi.T @ phi + s2 * torch.eye(d, dtype=torch.float64, device=phi.device)
    L = torch.linalg.cholesky(cov)
    eye = torch.eye(d, dtype=torch.float64, device=phi.device)
    L_inv = torch.linalg.solve_triangular(L, eye, upper=False)
    return math.sqrt(s2) * L_inv.T


# --------------------------------------------------------------------------- diagonal kernels


def qbc_scores(variance: np.ndarray) -> np.ndarray:
    """QBC(E): the ensemble standard deviation from its (population) variance."""
    return np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))


def ae_scores(prediction: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """AE(E): absolute error against known labels — an ORACLE upper bound, benchmarks only."""
    return np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(y_true, dtype=np.float64))


def rnd_scores(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """RND: i.i.d. uniform scores from ``rng``."""
    return rng.random(int(n))
