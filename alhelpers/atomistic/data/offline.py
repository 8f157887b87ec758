"""The offline conformational set: GFN2-xTB molecular dynamics of aspirin (MD17-like, STUDY §8).

Build it (tblite + ASE only, no network; a few minutes on one core)::

    python -m alhelpers.atomistic.data.offline build   # write data_cache/potentials/aspirin_gfn2_md.npz + RECIPE.json
    python -m alhelpers.atomistic.data.offline verify  # check the data file against RECIPE.json

Recipe (defaults of :func:`build`, all recorded in ``RECIPE.json``):

1. Aspirin (acetylsalicylic acid, C9H8O4, 21 atoms) is built from the internal coordinates in
   :data:`~alhelpers.atomistic.data.md.ASPIRIN_ZMATRIX` (textbook bond lengths and angles, acetoxy group twisted out of the ring
   plane) and relaxed with GFN2-xTB (BFGS to ``fmax`` 0.005 eV/Å); the bond graph before and after
   must agree and the bond lengths are recorded.
2. Langevin dynamics (``ase.md.langevin``) driven by GFN2-xTB (tblite's ASE calculator): 0.5 fs
   steps at 500 K, friction 0.01 fs⁻¹, centre of mass fixed (``FixCom``), Maxwell–Boltzmann start
   velocities; all random numbers come from one generator ``alhelpers.al.seeding.stream(seed)``
   (the same numbers as ``numpy.random.default_rng(seed)``) passed explicitly. After ``n_equilibrate`` steps, every ``stride``-th step is kept until ``n_frames``
   frames are stored.
3. Each kept frame stores the energy and forces of the very GFN2-xTB call that drove the step
   (no extra calls; a fresh call on a stored frame reproduces the energy to ~1e-7 eV and the
   forces to ~3e-4 eV/Å, the SCF convergence at tblite's default accuracy, since the MD restarts
   each SCF from the previous wavefunction). Energies are stored minus isolated-atom references
   from the same calculator (one atom in vacuum, ground-state multiplicity: H doublet, C triplet,
   O triplet; see :func:`alhelpers.atomistic.oracle.isolated_atom_energies`).

Output: ``aspirin_gfn2_md.npz`` (positions float64 Å, forces float32 eV/Å, energies float64 eV,
written as a zip with fixed timestamps) and ``RECIPE.json`` with every parameter, versions, the
references, timings and the sha256 of the data file. tblite results carry float noise across
machines and BLAS builds, so a rebuild elsewhere gives a statistically equivalent but not a
bit-identical trajectory; the committed file is the reference and :func:`load_offline` checks it.
"""

from __future__ import annotations

import io
import json
import platform
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from alhelpers.atomistic.data.md import (
    ASPIRIN_ZMATRIX,
    aspirin,
    bond_graph,
    relax,
    run_md,
)
from alhelpers.atomistic.oracle import (
    GROUND_STATE_MULTIPLICITY,
    isolated_atom_energies,
    tblite_calculator,
)
from alhelpers.cli import build_verify_parser
from alhelpers.data.paths import cache_root
from alhelpers.files import DataIntegrityError, sha256_file
from alhelpers.structures import StructureSet

__all__ = [
    "ASPIRIN_ZMATRIX",
    "DATA_FILE",
    "RECIPE_FILE",
    "aspirin",
    "relax",
    "bond_graph",
    "run_md",
    "build",
    "potentials_dir",
    "verify_offline",
    "load_offline",
    "main",
]

DATA_FILE = "aspirin_gfn2_md.npz"
RECIPE_FILE = "RECIPE.json"
RECIPE_FORMAT = 1

DEFAULTS: dict = {
    "molecule": "aspirin",
    "method": "GFN2-xTB",
    "temperature_K": 500.0,
    "timestep_fs": 0.5,
    "friction_per_fs": 0.01,
    "n_equilibrate": 2000,
    "stride": 20,
    "n_frames": 1200,
    "seed": 20240917,
    "relax_fmax": 0.005,
}


def potentials_dir(root: Path | None = None) -> Path:
    """Folder of the offline set: ``<cache>/potentials`` (``$ALHELPERS_DATA_CACHE`` or ``data_cache/``)."""
    return (root or cache_root()) / "potentials"


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` layout with fixed zip timestamps (same arrays → same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("tblite", "ase", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = "unknown"
    return out


def build(
    out: Path | None = None,
    *,
    n_frames: int = DEFAULTS["n_frames"],
    stride: int = DEFAULTS["stride"],
    n_equilibrate: int = DEFAULTS["n_equilibrate"],
    temperature_K: float = DEFAULTS["temperature_K"],
    timestep_fs: float = DEFAULTS["timestep_fs"],
    friction_per_fs: float = DEFAULTS["friction_per_fs"],
    seed: int = DEFAULTS["seed"],
    relax_fmax: float = DEFAULTS["relax_fmax"],
    verbose: bool = False,
) -> dict:
    """Run the recipe and write ``aspirin_gfn2_md.npz`` + ``RECIPE.json`` into ``out``.

    Args:
        out: Target folder; default ``<cache>/potentials`` (see :func:`potentials_dir`).
        n_frames, stride, n_equilibrate, temperature_K, timestep_fs, friction_per_fs, seed,
        relax_fmax: The recipe (see the module docstring); defaults are the committed set's.
        verbose: Print progress.

    Returns:
        The recipe dictionary written to ``RECIPE.json``.
    """
    out = Path(out) if out is not None else potentials_dir()
    method = DEFAULTS["method"]

    def factory():
        return tblite_calculator(method)

    t0 = time.perf_counter()
    start = relax(aspirin(), factory, fmax=relax_fmax)
    bonds = bond_graph(start)
    symbols = start.get_chemical_symbols()
    refs = isolated_atom_energies(factory, symbols)
    t_relax = time.perf_counter() - t0

    def progress(k: int, total: int) -> None:
        if verbose and (k % max(1, total // 10) == 0 or k == total):
            print(f"  frame {k}/{total}  ({time.perf_counter() - t0:.0f} s)", flush=True)

    t1 = time.perf_counter()
    md = run_md(
        start, factory, temperature_K=temperature_K, timestep_fs=timestep_fs,
        friction_per_fs=friction_per_fs, n_equilibrate=n_equilibrate, stride=stride,
        n_frames=n_frames, seed=seed, progress=progress,
    )
    t_md = time.perf_counter() - t1
    shift = float(sum(refs[s] for s in symbols))
    energy = md["energy_total"] - shift
    intact = [bond_graph(Atoms(symbols, positions=p)) == bonds for p in md["positions"]]

    arrays = {
        "numbers": start.numbers.astype(np.int64),
        "positions": md["positions"].astype(np.float64),
        "energy": energy.astype(np.float64),
        "forces": md["forces"].astype(np.float32),
        "step": md["step"],
        "temperature": md["temperature"].astype(np.float32),
    }
    path = out / DATA_FILE
    _write_npz(path, arrays)
    fnorm = np.linalg.norm(md["forces"], axis=-1)
    bond_lengths = {
        f"{symbols[i]}{i}-{symbols[j]}{j}": round(float(start.get_distance(i, j)), 4)
        for i, j in sorted(bonds)
    }
    recipe = {
        "format": RECIPE_FORMAT,
        "name": "offline",
        "description": "GFN2-xTB Langevin molecular dynamics of aspirin (MD17-like conformational set)",
        "molecule": {
            "name": "aspirin (acetylsalicylic acid)",
            "formula": start.get_chemical_formula(),
            "n_atoms": len(start),
            "start_geometry": "alhelpers.atomistic.data.md.ASPIRIN_ZMATRIX, relaxed with GFN2-xTB (BFGS)",
            "relax_fmax_eV_per_A": relax_fmax,
            "relax_steps": int(start.info["relax_steps"]),
            "relaxed_positions_A": np.round(start.positions, 6).tolist(),
            "relaxed_bond_lengths_A": bond_lengths,
        },
        "method": {
            "name": method,
            "calculator": "tblite.ase.TBLite",
            "parameters": {"method": method, "accuracy": 1.0, "electronic_temperature_K": 300.0,
                           "charge": 0, "multiplicity": "closed shell (initial magmoms 0)"},
        },
        "md": {
            "integrator": "ase.md.langevin.Langevin (fixcm=False) with ase.constraints.FixCom",
            "temperature_K": temperature_K,
            "timestep_fs": timestep_fs,
            "friction_per_fs": friction_per_fs,
            "initial_velocities": (
                "Maxwell-Boltzmann (ase thermalize_momenta, formerly "
                "MaxwellBoltzmannDistribution) + Stationary + ZeroRotation"
            ),
            "n_equilibrate_steps": n_equilibrate,
            "stride_steps": stride,
            "n_frames": n_frames,
            "simulated_time_ps": round((n_equilibrate + stride * n_frames) * timestep_fs / 1000, 3),
            "seed": seed,
            "rng": "numpy.random.default_rng(seed), one generator for velocities and Langevin noise",
            "labels": "energy and forces of the same GFN2-xTB call that drove each kept step",
            "n_force_calls": int(md["n_force_calls"]),
        },
        "references": {
            "energies_eV": refs,
            "multiplicities": {s: GROUND_STATE_MULTIPLICITY[s] for s in sorted(refs)},
            "how": "one atom in vacuum with the same calculator; stored energy = E_total − Σ references",
            "sum_for_molecule_eV": shift,
        },
        "checks": {
            "all_frames_bonds_intact": bool(all(intact)),
            "frames_with_changed_bonds": int(len(intact) - sum(intact)),
            "energy_eV": {"min": float(energy.min()), "max": float(energy.max()),
                          "mean": float(energy.mean()), "std": float(energy.std())},
            "force_component_abs_max_eV_per_A": float(np.abs(md["forces"]).max()),
            "force_norm_eV_per_A": {"mean": float(fnorm.mean()), "max": float(fnorm.max())},
            "temperature_K_mean": float(md["temperature"].mean()),
        },
        "timing_s": {"relax_and_references": round(t_relax, 2), "md": round(t_md, 2),
                     "per_force_call": round(t_md / max(1, int(md["n_force_calls"])), 5)},
        "versions": _versions(),
        "file": {
            "name": DATA_FILE,
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "arrays": {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
            "units": {"positions": "Å", "energy": "eV (reference-subtracted)", "forces": "eV/Å",
                      "temperature": "K"},
        },
        "rebuild": "python -m alhelpers.atomistic.data.offline build",
        "licence": "generated by this project (MIT). Method: C. Bannwarth, S. Ehlert, S. Grimme, "
                   "J. Chem. Theory Comput. 15, 1652 (2019); tblite (LGPL-3.0).",
    }
    (out / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n")
    return recipe


def verify_offline(root: Path | None = None) -> dict:
    """Check the offline data file against the sha256 in ``RECIPE.json``; return the recipe.

    Args:
        root: The folder holding ``RECIPE.json`` and the data file; default :func:`potentials_dir`.
    """
    folder = Path(root) if root is not None else potentials_dir()
    recipe_path = folder / RECIPE_FILE
    if not recipe_path.exists():
        raise FileNotFoundError(
            f"no {RECIPE_FILE} in {folder}. The offline set is committed in the repository under "
            "data_cache/potentials/; restore it with `git checkout -- data_cache/potentials` or "
            "build it with `python -m alhelpers.atomistic.data.offline build`."
        )
    recipe = json.loads(recipe_path.read_text())
    path = folder / recipe["file"]["name"]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing (listed in {recipe_path}); rebuild the set")
    digest = sha256_file(path)
    if digest != recipe["file"]["sha256"]:
        raise DataIntegrityError(
            f"{path} is corrupt or was changed: sha256 {digest[:16]}… but {RECIPE_FILE} records "
            f"{recipe['file']['sha256'][:16]}…. Restore it with `git checkout -- "
            "data_cache/potentials` or rebuild with `python -m alhelpers.atomistic.data.offline build`.",
            path,
        )
    return recipe


def load_offline(root: Path | None = None, *, limit: int | None = None, verify: bool = True) -> StructureSet:
    """The offline GFN2-xTB aspirin MD set as a :class:`StructureSet` (sha256-checked first).

    Energies are reference-subtracted (``references`` holds the GFN2-xTB isolated-atom energies),
    forces in eV/Å; ``meta["recipe"]`` is the full ``RECIPE.json``.

    Args:
        root: Folder with ``RECIPE.json`` and the data file; default :func:`potentials_dir`.
        limit: Only the first ``limit`` frames (trajectory order).
        verify: Check the sha256 against ``RECIPE.json``.
    """
    folder = Path(root) if root is not None else potentials_dir()
    if verify:
        recipe = verify_offline(folder)
    else:
        recipe = json.loads((folder / RECIPE_FILE).read_text())
    with np.load(folder / recipe["file"]["name"], allow_pickle=False) as z:
        numbers = z["numbers"]
        positions = z["positions"]
        energy = z["energy"]
        forces = z["forces"].astype(np.float64)
        step = z["step"]
    n = len(energy) if limit is None else min(int(limit), len(energy))
    structures = []
    for k in range(n):
        a = Atoms(numbers=numbers, positions=positions[k])
        a.info.update(source=f"offline:frame{k}", md_step=int(step[k]))
        structures.append(a)
    return StructureSet(
        name="offline",
        structures=structures,
        energy=energy[:n],
        forces=[forces[k] for k in range(n)],
        references={k: float(v) for k, v in recipe["references"]["energies_eV"].items()},
        has_forces=True,
        meta={"source_file": str(folder / recipe["file"]["name"]),
              "sha256": recipe["file"]["sha256"], "recipe": recipe},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, b = build_verify_parser("python -m alhelpers.atomistic.data.offline", __doc__,
                                    build="run the GFN2-xTB MD recipe and write the offline set",
                                    out="folder (default: data_cache/potentials)",
                                    verify="check the data file against RECIPE.json")
    for key in ("n_frames", "stride", "n_equilibrate", "seed"):
        b.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    for key in ("temperature_K", "timestep_fs", "friction_per_fs", "relax_fmax"):
        b.add_argument(f"--{key.replace('_', '-')}", type=float, default=DEFAULTS[key])
    args = parser.parse_args(argv)
    if args.cmd == "build":
        kw = {k: getattr(args, k) for k in ("n_frames", "stride", "n_equilibrate", "seed",
                                            "temperature_K", "timestep_fs", "friction_per_fs",
                                            "relax_fmax")}
        recipe = build(args.out, verbose=True, **kw)
    else:
        recipe = verify_offline(args.root)
    f, c = recipe["file"], recipe["checks"]
    print(f"{f['name']}: {recipe['md']['n_frames']} frames, {f['bytes']} bytes, sha256 {f['sha256'][:16]}")
    print(f"energy {c['energy_eV']['min']:.3f} … {c['energy_eV']['max']:.3f} eV, "
          f"|F| max {c['force_norm_eV_per_A']['max']:.2f} eV/Å, bonds intact: {c['all_frames_bonds_intact']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
