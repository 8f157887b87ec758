"""Neighbour graphs of fixed structures and their collation into batches (STUDY §8).

A pool's positions never change, so each structure's neighbour list is computed **once**
(:func:`build_graph`) and kept as a :class:`Graph`: atomic numbers, positions, cell, and the
directed edges ``i → j`` with integer cell shifts ``S`` such that the vector from atom ``i`` to
its neighbour is

    ``r_ij = pos[j] − pos[i] + S_ij @ cell``.

Periodic (and partly periodic) cells use :func:`matscipy.neighbours.neighbour_list` (C, linear
in the number of atoms, handles cutoffs longer than the cell: an atom then sees its own images,
``i == j`` with ``S ≠ 0``). Structures without a usable cell (isolated molecules: no periodic
direction and a degenerate cell) use :func:`ase.neighborlist.neighbor_list`, which needs none.
Both return every pair within the cutoff in both directions, never ``i == j`` with ``S = 0``.
(Without matscipy installed, ASE is used for every structure: the same lists, more slowly.)

:func:`collate` concatenates several graphs into a :class:`Batch` of tensors by offsetting the
atom indices (NumPy concatenation, no Python loop over atoms): positions ``(N, 3)`` — the leaf
forces are taken with respect to —, the structure index of every atom, global edge indices and
the Cartesian shift vectors ``S @ cell`` as constants. :class:`GraphCache` keeps graphs keyed by
the structure's content so repeated fits on overlapping training sets never recompute them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

__all__ = ["MIN_DISTANCE", "BadStructureError", "Batch", "Graph", "GraphCache", "build_graph", "build_graphs", "collate",
           "neighbour_distances"]

#: Closest two atoms may be (Å): below any bond (H2: 0.74 Å), well above coincident atoms.
MIN_DISTANCE = 0.5


class BadStructureError(ValueError):
    """A structure no model can be trained on or asked about: non-finite numbers, atoms too close.

    ``index`` is the structure's position in the list it came in (None if unknown), ``reason``
    the message without the structure's name, so callers can name it in their own terms.
    """

    def __init__(self, reason: str, index: int | None = None, name: str | None = None) -> None:
        self.reason, self.index = reason, index
        super().__init__(f"{name}: {reason}" if name else reason)


@dataclass(frozen=True, eq=False)
class Graph:
    """One structure's atoms and directed neighbour edges within ``cutoff`` (NumPy, read-only).

    Attributes:
        numbers: ``(n,)`` int64 atomic numbers.
        positions: ``(n, 3)`` float64 Cartesian positions (Å).
        cell: ``(3, 3)`` float64 cell vectors as rows (Å; zeros for a molecule).
        pbc: ``(3,)`` bool periodic directions.
        edge_i, edge_j: ``(E,)`` int64 centre and neighbour atom of each edge.
        shifts: ``(E, 3)`` int64 integer cell shifts of the neighbour's image.
        cutoff: The cutoff radius the edges were built with (Å).
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    edge_i: np.ndarray
    edge_j: np.ndarray
    shifts: np.ndarray
    cutoff: float

    @property
    def n_atoms(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_i.shape[0])

    @property
    def shift_vectors(self) -> np.ndarray:
        """``(E, 3)`` Cartesian shifts ``S @ cell`` (Å)."""
        return self.shifts.astype(np.float64) @ self.cell

    def edge_vectors(self) -> np.ndarray:
        """``(E, 3)`` vectors ``r_ij = pos[j] − pos[i] + S @ cell`` (Å)."""
        return self.positions[self.edge_j] - self.positions[self.edge_i] + self.shift_vectors


def _needs_cell_free_list(atoms: Atoms) -> bool:
    """True when matscipy cannot be used: no periodic direction and a (near-)degenerate cell."""
    if atoms.pbc.any():
        return False
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    return abs(np.linalg.det(cell)) < 1e-8


def _neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not _needs_cell_free_list(atoms):
        try:
            from matscipy.neighbours import neighbour_list
        except ImportError:  # matscipy is optional: ASE gives the same lists, more slowly
            pass
        else:
            return neighbour_list("ijS", atoms, cutoff)
    from ase.neighborlist import neighbor_list

    return neighbor_list("ijS", atoms, cutoff)


def neighbour_distances(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every directed pair ``i → j`` (periodic images included) closer than ``cutoff`` Å, and its distance."""
    i, j, S = _neighbour_list(atoms, float(cutoff))
    return np.asarray(i), np.asarray(j), _pair_distances(atoms, i, j, S)


def _pair_distances(atoms: Atoms, i: np.ndarray, j: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``|pos[j] − pos[i] + S @ cell|`` of each pair (Å)."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    return np.linalg.norm(pos[j] - pos[i] + np.asarray(S, dtype=np.float64) @ cell, axis=1)


def build_graph(atoms: Atoms, cutoff: float) -> Graph:
    """The neighbour graph of ``atoms`` for the given ``cutoff`` (Å).

    Raises:
        ValueError: Empty structure, non-positive cutoff, or a periodic direction with a
            degenerate cell (the neighbour list would be meaningless).
        BadStructureError: Non-finite positions, or two atoms closer than
            :data:`~alhelpers.structures.MIN_DISTANCE` (the descriptor would be NaN).
    """

    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    if len(atoms) == 0:
        raise ValueError("cannot build a neighbour graph of a structure with no atoms")
    cell = np.array(atoms.cell[:], dtype=np.float64)
    pbc = np.array(atoms.pbc, dtype=bool)
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
        raise ValueError(
            f"structure {atoms.get_chemical_formula()} is periodic along {pbc.tolist()} but its cell "
            f"is degenerate ({cell.tolist()}); give it a proper cell or set pbc=False"
        )
    if not np.isfinite(atoms.positions).all():
        raise BadStructureError("non-finite coordinates")
    i, j, S = _neighbour_list(atoms, float(cutoff))
    if len(i):
        d = _pair_distances(atoms, i, j, S)
        if d.min() < MIN_DISTANCE:
            k = int(np.argmin(d))
            raise BadStructureError(f"atoms {int(i[k])} and {int(j[k])} are {d[k]:.3f} Å apart, closer than "
                                    f"{MIN_DISTANCE} Å (its descriptor would be singular); fix or drop this structure")
    return Graph(
        numbers=np.array(atoms.numbers, dtype=np.int64),
        positions=np.array(atoms.positions, dtype=np.float64),
        cell=cell,
        pbc=pbc,
        edge_i=np.ascontiguousarray(i, dtype=np.int64),
        edge_j=np.ascontiguousarray(j, dtype=np.int64),
        shifts=np.ascontiguousarray(S, dtype=np.int64).reshape(-1, 3),
        cutoff=float(cutoff),
    )


def _structure_key(atoms: Atoms, cutoff: float) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    for arr in (
        np.asarray(atoms.numbers, dtype=np.int64),
        np.asarray(atoms.positions, dtype=np.float64),
        np.asarray(atoms.cell[:], dtype=np.float64),
        np.asarray(atoms.pbc, dtype=bool),
        np.asarray([cutoff], dtype=np.float64),
    ):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.digest()


class GraphCache:
    """Neighbour graphs keyed by structure content (numbers, positions, cell, pbc) and cutoff.

    Fitting many models on overlapping subsets of one pool (an AL run) then builds each
    structure's graph once. Hashing a structure costs microseconds; a hit returns the stored
    :class:`Graph` (shared, read-only).
    """

    def __init__(self) -> None:
        self._graphs: dict[bytes, Graph] = {}
        #: Optional :class:`~alhelpers.atomistic.train.FrozenStore` of a whole set's structures
        #: (set by an AL run), which fits, predictions and features then gather from.
        self.frozen = None

    def __len__(self) -> int:
        return len(self._graphs)

    def get(self, atoms: Atoms, cutoff: float) -> Graph:
        key = _structure_key(atoms, cutoff)
        graph = self._graphs.get(key)
        if graph is None:
            graph = build_graph(atoms, cutoff)
            self._graphs[key] = graph
        return graph

    def graphs(self, structures: Sequence[Atoms], cutoff: float) -> list[Graph]:
        return build_graphs(structures, cutoff, cache=self)


def build_graphs(structures: Sequence[Atoms], cutoff: float, *, cache: GraphCache | None = None) -> list[Graph]:
    """One :class:`Graph` per structure (through ``cache`` when given).

    A structure no graph can be built for raises :class:`BadStructureError` with its position
    ``index`` in ``structures``.
    """
    get = cache.get if cache is not None else build_graph
    out = []
    for k, atoms in enumerate(structures):
        try:
            out.append(get(atoms, cutoff))
        except BadStructureError as err:
            src = atoms.info.get("source")
            raise BadStructureError(err.reason, k, f"structure {k}" + (f" [{src}]" if src else "")) from None
    return out


@dataclass(eq=False)
class Batch:
    """Several structures concatenated for one pass of the model (torch tensors on one device).

    Attributes:
        positions: ``(N, 3)`` atom positions; forces are ``−∂E/∂positions``.
        numbers: ``(N,)`` long atomic numbers.
        structure: ``(N,)`` long index of each atom's structure in the batch (``0..S-1``).
        n_structures: ``S``.
        n_atoms: ``(S,)`` long atoms per structure.
        edge_i, edge_j: ``(E,)`` long global atom indices of each edge.
        shift_vectors: ``(E, 3)`` Cartesian image shifts (constants).
        cutoff: The graphs' cutoff (Å).
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    structure: torch.Tensor
    n_structures: int
    n_atoms: torch.Tensor
    edge_i: torch.Tensor
    edge_j: torch.Tensor
    shift_vectors: torch.Tensor
    cutoff: float

    @property
    def n_total_atoms(self) -> int:
        return int(self.positions.shape[0])

    def edge_vectors(self) -> torch.Tensor:
        """``(E, 3)`` ``r_ij`` as a differentiable function of :attr:`positions`."""
        return self.positions[self.edge_j] - self.positions[self.edge_i] + self.shift_vectors


def collate(
    graphs: Sequence[Graph],
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Batch:
    """Concatenate ``graphs[indices]`` (all of them when ``indices`` is None) into a :class:`Batch`."""
    chosen = list(graphs) if indices is None else [graphs[int(k)] for k in np.asarray(indices).reshape(-1)]
    if not chosen:
        raise ValueError("cannot collate an empty list of structures")
    cutoffs = {g.cutoff for g in chosen}
    if len(cutoffs) != 1:
        raise ValueError(f"graphs built with different cutoffs {sorted(cutoffs)} cannot share a batch")
    n_atoms = np.array([g.n_atoms for g in chosen], dtype=np.int64)
    n_edges = np.array([g.n_edges for g in chosen], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    edge_offset = np.repeat(offsets, n_edges)
    edge_i = np.concatenate([g.edge_i for g in chosen]) + edge_offset
    edge_j = np.concatenate([g.edge_j for g in chosen]) + edge_offset
    shift_vectors = np.concatenate([g.shift_vectors for g in chosen], axis=0).reshape(-1, 3)

    def _t(x: np.ndarray, dt: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dt).to(device)

    return Batch(
        positions=_t(np.concatenate([g.positions for g in chosen], axis=0), dtype),
        numbers=_t(np.concatenate([g.numbers for g in chosen]), torch.long),
        structure=_t(np.repeat(np.arange(len(chosen)), n_atoms), torch.long),
        n_structures=len(chosen),
        n_atoms=_t(n_atoms, torch.long),
        edge_i=_t(edge_i, torch.long),
        edge_j=_t(edge_j, torch.long),
        shift_vectors=_t(shift_vectors, dtype),
        cutoff=float(cutoffs.pop()),
    )
