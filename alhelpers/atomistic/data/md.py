"""Aspirin and its molecular dynamics: the geometry, relaxation and Langevin MD behind the offline set.

:func:`aspirin` builds the molecule from :data:`ASPIRIN_ZMATRIX`, :func:`relax` relaxes it with any
ASE calculator (checking the :func:`bond_graph` stays the same) and :func:`run_md` runs Langevin
dynamics, keeping the energies and forces of the very calls that drove each kept step. The recipe
that puts them together is :func:`alhelpers.atomistic.data.offline.build`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms, units

from alhelpers.al.seeding import stream

__all__ = ["ASPIRIN_ZMATRIX", "aspirin", "bond_graph", "relax", "run_md"]

#: Aspirin as a Z-matrix: (symbol, (i_bond, i_angle, i_dihedral), bond Å, angle °, dihedral °).
#: Atoms 0–5 ring C; 6 carboxyl C, 7 =O, 8 O(H), 9 H; 10 ester O, 11 acyl C, 12 =O, 13 methyl C,
#: 14–16 methyl H; 17–20 ring H.
ASPIRIN_ZMATRIX: tuple[tuple, ...] = (
    ("C", None, None, None, None),
    ("C", (0, None, None), 1.39, None, None),
    ("C", (1, 0, None), 1.39, 120.0, None),
    ("C", (2, 1, 0), 1.39, 120.0, 0.0),
    ("C", (3, 2, 1), 1.39, 120.0, 0.0),
    ("C", (4, 3, 2), 1.39, 120.0, 0.0),
    ("C", (0, 1, 2), 1.48, 120.0, 180.0),
    ("O", (6, 0, 1), 1.21, 123.0, 0.0),
    ("O", (6, 0, 1), 1.35, 114.0, 180.0),
    ("H", (8, 6, 0), 0.97, 107.0, 180.0),
    ("O", (1, 0, 5), 1.40, 120.0, 180.0),
    ("C", (10, 1, 0), 1.36, 118.0, 90.0),
    ("O", (11, 10, 1), 1.20, 123.0, 0.0),
    ("C", (11, 10, 1), 1.50, 111.0, 180.0),
    ("H", (13, 11, 10), 1.09, 109.5, 60.0),
    ("H", (13, 11, 10), 1.09, 109.5, 180.0),
    ("H", (13, 11, 10), 1.09, 109.5, 300.0),
    ("H", (2, 1, 0), 1.08, 120.0, 180.0),
    ("H", (3, 2, 1), 1.08, 120.0, 180.0),
    ("H", (4, 3, 2), 1.08, 120.0, 180.0),
    ("H", (5, 4, 3), 1.08, 120.0, 180.0),
)

def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, dihedral: float) -> np.ndarray:
    """Position d with |cd| = bond, ∠bcd = angle, dihedral abcd = dihedral (NeRF construction)."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    th, ph = np.radians(angle), np.radians(dihedral)
    d = np.array([-bond * np.cos(th), bond * np.sin(th) * np.cos(ph), bond * np.sin(th) * np.sin(ph)])
    return c + d[0] * bc + d[1] * m + d[2] * n


def aspirin() -> Atoms:
    """Unrelaxed aspirin (C9H8O4) from :data:`ASPIRIN_ZMATRIX`, centred at the origin."""
    pos: list[np.ndarray] = []
    for _, refs, bond, angle, dih in ASPIRIN_ZMATRIX:
        if refs is None:
            pos.append(np.zeros(3))
        elif refs[1] is None:
            pos.append(pos[refs[0]] + np.array([bond, 0.0, 0.0]))
        elif refs[2] is None:  # third atom: in the xy plane
            b, c = pos[refs[1]], pos[refs[0]]
            pos.append(_place(b + np.array([0.0, 1.0, 0.0]), b, c, bond, angle, 0.0))
        else:
            i, j, k = refs
            pos.append(_place(pos[k], pos[j], pos[i], bond, angle, dih))
    atoms = Atoms([row[0] for row in ASPIRIN_ZMATRIX], positions=np.array(pos))
    atoms.positions -= atoms.get_center_of_mass()
    return atoms


def bond_graph(atoms: Atoms, mult: float = 1.2) -> frozenset[tuple[int, int]]:
    """Covalent bonds ``(i, j)``, i < j: distance below ``mult`` × the sum of covalent radii."""
    from ase.neighborlist import NeighborList, natural_cutoffs

    nl = NeighborList(
        natural_cutoffs(atoms, mult=mult), skin=0.0, self_interaction=False, bothways=False
    )
    nl.update(atoms)
    return frozenset(
        (min(i, int(j)), max(i, int(j))) for i in range(len(atoms)) for j in nl.get_neighbors(i)[0]
    )


def relax(atoms: Atoms, calculator_factory: Callable, *, fmax: float = 0.005, steps: int = 1000) -> Atoms:
    """A BFGS-relaxed copy of ``atoms``; raises if it does not converge or bonds change."""
    from ase.optimize import BFGS

    out = atoms.copy()
    out.calc = calculator_factory()
    before = bond_graph(out)
    opt = BFGS(out, logfile=None)
    if not opt.run(fmax=fmax, steps=steps):
        raise RuntimeError(f"relaxation did not reach fmax={fmax} eV/Å in {steps} steps")
    if bond_graph(out) != before:
        raise RuntimeError("the bond graph changed during relaxation; check the starting geometry")
    out.info["relax_steps"] = int(opt.nsteps)
    return out


def run_md(
    atoms: Atoms,
    calculator_factory: Callable,
    *,
    temperature_K: float,
    timestep_fs: float,
    friction_per_fs: float,
    n_equilibrate: int,
    stride: int,
    n_frames: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Langevin MD; returns kept frames with the energies and forces of the driving calls.

    Returns:
        ``positions (F, N, 3)``, ``energy_total (F,)`` (eV), ``forces (F, N, 3)`` (eV/Å),
        ``temperature (F,)`` (K, instantaneous), ``step (F,)`` (MD step after equilibration start)
        and ``n_force_calls`` (calculator evaluations, equilibration included).
    """
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md import velocitydistribution as vd

    rng = stream(seed)  # = numpy.random.default_rng(seed): one generator for velocities and noise
    work = atoms.copy()
    work.set_constraint(FixCom())  # ASE's recommended replacement for Langevin(fixcm=True)
    work.calc = calculator_factory()
    calls = {"n": 0}
    calc_fn = work.calc.calculate

    def counted(*args, **kwargs):
        calls["n"] += 1
        return calc_fn(*args, **kwargs)

    work.calc.calculate = counted  # count real evaluations (ASE caches repeated queries)
    if hasattr(vd, "thermalize_momenta"):  # ASE ≥ 3.29; same draws as the deprecated function
        vd.thermalize_momenta(work, temperature_K, rng=rng)
    else:  # pragma: no cover - older ASE
        vd.MaxwellBoltzmannDistribution(work, temperature_K=temperature_K, rng=rng)
    vd.Stationary(work)
    vd.ZeroRotation(work)
    dyn = Langevin(
        work,
        timestep=timestep_fs * units.fs,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(n_equilibrate)
    n = len(work)
    pos = np.empty((n_frames, n, 3))
    frc = np.empty((n_frames, n, 3))
    ene = np.empty(n_frames)
    temp = np.empty(n_frames)
    step = np.empty(n_frames, dtype=np.int64)
    for k in range(n_frames):
        dyn.run(stride)
        pos[k] = work.get_positions()
        # cached: computed at these positions by the last MD step. apply_constraint=False: the
        # raw calculator forces, not the ones FixCom projects for the integrator
        frc[k] = work.get_forces(apply_constraint=False)
        ene[k] = work.get_potential_energy()
        temp[k] = work.get_temperature()
        step[k] = n_equilibrate + (k + 1) * stride
        if progress is not None:
            progress(k + 1, n_frames)
    return {"positions": pos, "energy_total": ene, "forces": frc, "temperature": temp,
            "step": step, "n_force_calls": np.int64(calls["n"])}
