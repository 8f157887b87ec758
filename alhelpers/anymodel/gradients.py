"""Gradient features of any potential behind a :class:`~alhelpers.anymodel.adapter.PotentialAdapter`.

The structure energy ``E_s = Σ_{i∈s} E_i`` of a potential is a sum over atoms, and every
parametrised module of the model acts row by row (a row is an atom, or an edge of a
message-passing model, and belongs to one structure). So for a module with parameters ``θ``,
``∂E_s/∂θ = Σ_{rows r ∈ s} J_r(θ)ᵀ g_r`` where ``g_r = ∂(Σ_s E_s)/∂out_r`` is row ``r``'s output
sensitivity — and one backward pass of the batch's summed energy gives every row's ``g_r`` at once
(rows of different structures never interact). The module's inputs and output come from forward
hooks; nothing is differentiated per structure.

Per module type the row gradient is turned into features by a *handler*:

* :class:`torch.nn.Linear` — the row gradient of ``[W | b]`` is ``g ⊗ [x, 1]``: exact blocks, and
  the sketch ``(U_out g) ⊙ (U_in [x, 1])`` of :class:`~alhelpers.select.features.GradientSketch`
  with its matrices drawn in its order (so the project's own potential gets today's FEAT(RP)).
* ``e3nn.nn.FullyConnectedNet`` layers (the radial networks of MACE, NequIP, Allegro): ``z = x·W·α``
  then an elementwise activation, so the row gradient is ``α·x ⊗ (g ⊙ act'(z))``; the same sketch.
* any other module — exact per-row gradients with ``torch.func`` (``vmap`` of ``grad`` over rows),
  summed per structure, then projected with Gaussian matrices ``u ⊗ v`` per parameter tensor
  (the tensor seen as an ``a × b`` matrix, ``a·b`` its size): ``E[sketch·sketch']`` is the exact
  kernel for every handler, so FEAT(RP) is unbiased for the full-gradient kernel.

A model whose modules act on rows of several kinds (atoms, bonds, angles: CHGNet) sets the
adapter's ``one_structure_per_batch``: its feature batches then hold one structure each, so every
row of a batch is that structure's, whatever its kind (one backward pass per structure).

Feature maps (rows are structures, float64 NumPy): FEAT(LL) = the exact gradient of ``E_s`` with
respect to the adapter's readout modules, FEAT(RP) = the ``p``-dimensional sketch of the gradient
with respect to all its gradient modules, and the exact full gradient (tests, tiny models).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from alhelpers.anymodel.adapter import DEFAULT_MAX_ATOMS, AdapterBatch, PotentialAdapter, batches
from alhelpers.select.features import DEFAULT_RP_DIM, kronecker_pair, segment_sum, with_bias

__all__ = ["feature_map", "gradient_features", "module_names", "parameter_count"]


# --------------------------------------------------------------------------- which modules


def _owners(model: nn.Module) -> list[str]:
    """Names of the modules that own trainable parameters directly (a ``ParameterList`` or
    ``ParameterDict`` is never called: its parameters count for the module holding it)."""
    out: list[str] = []
    for name, mod in model.named_modules():
        if not any(p.requires_grad for p in mod.parameters(recurse=False)):
            continue
        if isinstance(mod, (nn.ParameterList, nn.ParameterDict)):
            name = name.rsplit(".", 1)[0] if "." in name else ""
        if name not in out:
            out.append(name)
    return out


def module_names(adapter: PotentialAdapter, which: str) -> tuple[str, ...]:
    """The modules of ``"ll"`` (the readouts) or ``"rp"``/``"full"`` (the gradient modules), in
    the model's module order."""
    if which == "ll":
        names = tuple(adapter.readouts)
    elif adapter.gradient_modules is not None:
        names = tuple(adapter.gradient_modules)
    else:
        names = tuple(n for n in _owners(adapter.model) if n != "")
    known = dict(adapter.model.named_modules())
    missing = [n for n in names if n not in known]
    if missing or not names:
        raise ValueError(f"the model has no module named {missing or '(none given)'}; name modules of "
                         f"model.named_modules(), e.g. {list(known)[1:6]}")
    nested = [(a, b) for a in names for b in names if b.startswith(a + ".") or (a == "" and b != "")]
    if nested:
        raise ValueError(f"module {nested[0][1]!r} lies inside {nested[0][0] or '(the model)'!r}: name either "
                         "the module or its parts, not both")
    order = {n: k for k, n in enumerate(known)}
    return tuple(sorted(names, key=order.__getitem__))


def _params(mod: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in mod.named_parameters() if p.requires_grad]


def parameter_count(adapter: PotentialAdapter, which: str = "rp") -> int:
    """Number of parameters in the features' modules (the width of the exact gradient)."""
    mods = dict(adapter.model.named_modules())
    return sum(p.numel() for n in module_names(adapter, which) for _, p in _params(mods[n]))


# --------------------------------------------------------------------------- capture


@dataclass
class _Call:
    """One forward call of a hooked module: its inputs, output and output sensitivity."""

    name: str
    args: tuple
    kwargs: dict
    output: torch.Tensor
    grad: torch.Tensor | None = None


def _capture(adapter: PotentialAdapter, batch: AdapterBatch, names: Sequence[str]) -> list[_Call]:
    """Every call of the named modules in one energy evaluation, with ``g = ∂ΣE/∂output``."""
    mods = dict(adapter.model.named_modules())
    calls: list[_Call] = []
    handles = []

    def hook(name: str):
        def fn(module, args, kwargs, output):
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"module {name!r} returns {type(output).__name__}, not one tensor: name its "
                                "tensor-valued submodules in the adapter instead")
            calls.append(_Call(name, tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args),
                               dict(kwargs), output))
        return fn

    for n in names:
        handles.append(mods[n].register_forward_hook(hook(n), with_kwargs=True))
    try:
        with torch.enable_grad():
            energy = adapter.energies(batch)
            live = [c for c in calls if c.output.requires_grad]
            if calls and not live:
                raise RuntimeError(f"the outputs of {sorted({c.name for c in calls})} do not depend on any parameter "
                                   "that requires grad: unfreeze them (param.requires_grad_(True)) for gradient features")
            grads = torch.autograd.grad(energy.sum(), [c.output for c in live], allow_unused=True) if live else []
    finally:
        for h in handles:
            h.remove()
    for c, g in zip(live, grads):
        c.grad = torch.zeros_like(c.output) if g is None else g.detach()
    for c in calls:
        c.output = c.output.detach()
        if c.grad is None:
            c.grad = torch.zeros_like(c.output)
    return calls


def _segments(adapter: PotentialAdapter, batch: AdapterBatch, call: _Call) -> torch.Tensor:
    rows = call.output.shape[0]
    if getattr(adapter, "one_structure_per_batch", False):  # every row is the batch's one structure's
        if batch.n_structures != 1:
            raise ValueError("an adapter with one_structure_per_batch needs batches of one structure")
        return torch.zeros(rows, dtype=torch.long, device=call.output.device)
    edge = any(call.name == e or call.name.startswith(e + ".") for e in adapter.edge_modules)
    seg = batch.edge_structure if edge else batch.atom_structure
    if seg is None or seg.shape[0] != rows:
        n_edges = None if batch.edge_structure is None else batch.edge_structure.shape[0]
        raise ValueError(f"module {call.name!r} has {rows} rows, but the batch has {batch.atom_structure.shape[0]} "
                         f"atoms and {n_edges} edges: list it in the adapter's edge_modules if its rows are "
                         "edges, or leave it out of gradient_modules")
    return seg


# --------------------------------------------------------------------------- handlers


def _is_fc_layer(mod: nn.Module) -> bool:
    return type(mod).__name__ == "_Layer" and type(mod).__module__.startswith("e3nn.nn")


def _factor_rows(mod: nn.Module, call: _Call) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """``(x, g, α)`` with row gradient ``α·g ⊗ x`` for factorised modules (None: generic)."""
    if isinstance(mod, nn.Linear):
        x = call.args[0]
        return (with_bias(x) if mod.bias is not None else x), call.grad, 1.0
    if _is_fc_layer(mod):
        x, g = call.args[0], call.grad
        if mod.act is None:
            return x, g, 1.0 / math.sqrt(mod.h_in * mod.var_in / mod.var_out)
        alpha = 1.0 / math.sqrt(mod.h_in * mod.var_in)
        with torch.enable_grad():
            z = (x @ (mod.weight.detach() * alpha)).requires_grad_(True)
            (dz,) = torch.autograd.grad(mod.act(z), z, grad_outputs=g * math.sqrt(mod.var_out))
        return x, dz, alpha
    return None


def _exact_rows_factored(mod: nn.Module, x: torch.Tensor, g: torch.Tensor, alpha: float) -> torch.Tensor:
    """Row gradients in ``mod.parameters()`` order, ``(rows, n_θ)``."""
    if isinstance(mod, nn.Linear):
        n, has_bias = x.shape[0], mod.bias is not None
        xs = x[:, :-1] if has_bias else x
        blocks = [(g.unsqueeze(2) * xs.unsqueeze(1)).reshape(n, -1)]
        return torch.cat(blocks + [g], dim=1) if has_bias else blocks[0]
    return alpha * (x.unsqueeze(2) * g.unsqueeze(1)).reshape(x.shape[0], -1)  # weight (h_in, h_out)


def _exact_generic(mod: nn.Module, call: _Call, seg: torch.Tensor, n_structures: int, *, chunk_rows: int = 2048
                   ) -> torch.Tensor:
    """Per-structure exact gradient of any row-wise module, ``(S, n_θ)``, via ``torch.func``."""
    from torch.func import functional_call, grad, vmap

    names = [n for n, _ in _params(mod)]
    params = {n: p.detach() for n, p in _params(mod)}
    tensor_pos = [k for k, a in enumerate(call.args) if isinstance(a, torch.Tensor) and a.shape[:1] == call.output.shape[:1]]

    def row_value(par: dict, g_row: torch.Tensor, *rows: torch.Tensor) -> torch.Tensor:
        args = list(call.args)
        for k, r in zip(tensor_pos, rows):
            args[k] = r.unsqueeze(0)
        out = functional_call(mod, par, tuple(args), call.kwargs)
        return (out * g_row.unsqueeze(0)).sum()

    per_row = vmap(grad(row_value), in_dims=(None, 0, *([0] * len(tensor_pos))))
    total = torch.zeros(n_structures, sum(params[n].numel() for n in names), dtype=call.grad.dtype,
                        device=call.grad.device)
    rows = call.output.shape[0]
    for start in range(0, rows, chunk_rows):
        sl = slice(start, start + chunk_rows)
        try:
            gr = per_row(params, call.grad[sl], *(call.args[k][sl] for k in tensor_pos))
        except Exception as err:  # e.g. TorchScript, or an op without a batching rule
            raise RuntimeError(f"module {call.name!r} ({type(mod).__name__}) could not be differentiated row by row "
                               f"with torch.func ({type(err).__name__}: {err}); leave it out of the adapter's "
                               "gradient_modules") from err
        flat = torch.cat([gr[n].reshape(gr[n].shape[0], -1) for n in names], dim=1)
        total += segment_sum(flat, seg[sl], n_structures)
    return total


def _matrix_shape(n: int) -> tuple[int, int]:
    a = int(math.isqrt(n))
    while n % a:
        a -= 1
    return a, n // a


@dataclass
class _Sketch:
    """The projection matrices of FEAT(RP), one pair per factorised module or parameter tensor."""

    p: int
    mats: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)

    @classmethod
    def draw(cls, model: nn.Module, names: Sequence[str], *, p: int, seed: int) -> _Sketch:
        """Matrices for ``names`` in order from one seeded generator (``nn.Linear``: ``U_out`` then
        ``U_in`` as :class:`~alhelpers.select.features.GradientSketch`)."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        mods = dict(model.named_modules())
        out = cls(p=int(p))
        for n in names:
            mod = mods[n]
            if isinstance(mod, nn.Linear):
                out.mats[n] = [kronecker_pair(gen, p, mod.out_features, mod.in_features + (mod.bias is not None))]
            elif _is_fc_layer(mod):
                u_out, u_in = kronecker_pair(gen, p, mod.weight.shape[1], mod.weight.shape[0])
                out.mats[n] = [(u_out, u_in)]
            else:
                out.mats[n] = [kronecker_pair(gen, p, *_matrix_shape(q.numel())) for _, q in _params(mod)]
        return out

    def project(self, name: str, mod: nn.Module, exact: torch.Tensor) -> torch.Tensor:
        """Sketch of per-structure exact gradients ``(S, n_θ)`` of a generic module, ``(S, p)``."""
        out, start = None, 0
        for (u, v), (_, q) in zip(self.mats[name], _params(mod)):
            a, b = u.shape[1], v.shape[1]
            G = exact[:, start:start + q.numel()].reshape(-1, a, b).to(u.dtype)
            term = torch.einsum("sab,pb,pa->sp", G, v, u)
            out = term if out is None else out + term
            start += q.numel()
        return out


def _sketch_summed(x: torch.Tensor, g: torch.Tensor, seg: torch.Tensor, n_structures: int, u_out: torch.Tensor,
                   u_in: torch.Tensor, *, chunk_rows: int = 16384) -> torch.Tensor:
    """``u_outᵀ G_s u_in`` per structure with ``G_s = Σ_{r∈s} g_r ⊗ x_r`` summed exactly first: the
    same sketch as per row, cheaper when rows (edges) far outnumber structures."""
    G = torch.zeros(n_structures, g.shape[1] * x.shape[1], dtype=u_out.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk_rows):
        sl = slice(start, start + chunk_rows)
        outer = (g[sl].to(u_out.dtype).unsqueeze(2) * x[sl].to(u_out.dtype).unsqueeze(1)).reshape(-1, G.shape[1])
        G.index_add_(0, seg[sl].to(torch.long), outer)
    G = G.reshape(n_structures, g.shape[1], x.shape[1])
    return torch.einsum("soi,po,pi->sp", G, u_out, u_in)


# --------------------------------------------------------------------------- features


def _batch_features(adapter: PotentialAdapter, batch: AdapterBatch, names: Sequence[str], kind: str,
                    sketch: _Sketch | None) -> torch.Tensor:
    mods = dict(adapter.model.named_modules())
    S = batch.n_structures
    calls = _capture(adapter, batch, names)
    if kind != "rp":
        blocks = []
        for n in names:
            total = None
            for c in (c for c in calls if c.name == n):
                seg = _segments(adapter, batch, c)
                fac = _factor_rows(mods[n], c)
                part = (segment_sum(_exact_rows_factored(mods[n], *fac), seg, S) if fac is not None
                        else _exact_generic(mods[n], c, seg, S))
                total = part if total is None else total + part
            if total is None:
                total = torch.zeros(S, sum(q.numel() for _, q in _params(mods[n])), dtype=torch.float64,
                                    device=batch.atom_structure.device)
            blocks.append(total.double())
        return torch.cat(blocks, dim=1)
    assert sketch is not None
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # per segment vector: (segments, summed row sketches)
    direct = torch.zeros(S, sketch.p, dtype=torch.float64, device=batch.atom_structure.device)
    for n in names:
        for c in (c for c in calls if c.name == n):
            seg = _segments(adapter, batch, c)
            fac = _factor_rows(mods[n], c)
            if fac is None:
                direct += sketch.project(n, mods[n], _exact_generic(mods[n], c, seg, S)).double()
                continue
            x, g, alpha = fac
            u_out, u_in = sketch.mats[n][0]
            n_rows, (d_out, d_in) = x.shape[0], (g.shape[1], x.shape[1])
            if n_rows * d_in * d_out + S * d_in * d_out * sketch.p < n_rows * sketch.p * (d_in + d_out):
                direct += _sketch_summed(x, g, seg, S, u_out, u_in).double() * alpha  # many rows, small block
                continue
            term = (g.to(u_out.dtype) @ u_out.T) * (x.to(u_in.dtype) @ u_in.T)
            if alpha != 1.0:
                term = term * alpha
            key = id(seg)
            rows[key] = (seg, term if key not in rows else rows[key][1] + term)
    out = direct / math.sqrt(sketch.p)
    for seg, total in rows.values():
        out = out + segment_sum(total / math.sqrt(sketch.p), seg, S).double()
    return out


def feature_map(adapter: PotentialAdapter, items: Sequence[Any], n_atoms: Sequence[int] | np.ndarray, base: str, *,
                p: int = DEFAULT_RP_DIM, seed: int | None = None, max_atoms: int = DEFAULT_MAX_ATOMS
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(positions, features)`` per batch of prepared ``items``: ``base`` is ``"ll"``, ``"rp"``
    (needs ``seed``) or ``"full"``."""
    if base not in ("ll", "rp", "full"):
        raise ValueError(f"base must be 'll', 'rp' or 'full', got {base!r}")
    names = module_names(adapter, base)
    sketch = None
    if base == "rp":
        if seed is None:
            raise ValueError("FEAT(RP) needs a seed for its projection matrices")
        sketch = _Sketch.draw(adapter.model, names, p=p, seed=seed)
        ref = next(adapter.model.parameters())
        sketch.mats = {n: [(u.to(ref.device, ref.dtype), v.to(ref.device, ref.dtype)) for u, v in m]
                       for n, m in sketch.mats.items()}
    if getattr(adapter, "one_structure_per_batch", False):
        max_atoms = 1  # one structure per batch (a chunk holds at least one)
    was_training = adapter.model.training
    adapter.model.eval()
    try:
        for idx, batch in batches(adapter, items, n_atoms, max_atoms=max_atoms):
            yield idx, _batch_features(adapter, batch, names, base, sketch)
    finally:
        adapter.model.train(was_training)


def gradient_features(adapter: PotentialAdapter, structures: Sequence[Any], base: str, *, p: int = DEFAULT_RP_DIM,
                      seed: int | None = None, max_atoms: int = DEFAULT_MAX_ATOMS) -> np.ndarray:
    """FEAT(LL) (``base="ll"``), FEAT(RP) (``"rp"``, ``p`` columns, matrices from ``seed``) or the
    exact full gradient (``"full"``) of every structure, ``(S, d)`` float64.

    ``structures``: :class:`ase.Atoms` (prepared here through the adapter) or items the adapter
    already prepared. One call uses one set of projection matrices for all its structures: pass
    the pool and the labelled set together when their rows are compared.
    """
    items = [adapter.prepare(s) if _is_atoms(s) else s for s in structures]
    if not items:
        raise ValueError("no structures given: the set is empty")
    n = [_n_atoms(s) for s in structures]
    parts = [phi for _, phi in feature_map(adapter, items, n, base, p=p, seed=seed, max_atoms=max_atoms)]
    return torch.cat(parts).double().cpu().numpy()


def _is_atoms(x: Any) -> bool:
    from ase import Atoms

    return isinstance(x, Atoms)


def _n_atoms(x: Any) -> int:
    n = getattr(x, "n_atoms", None)
    return int(n) if n is not None else len(x)
