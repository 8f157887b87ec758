"""The offline snapshot: real Materials Project and OQMD data that ships inside PyPI packages.

Build it (needs PyPI only, once)::

    python -m alhelpers.data.snapshot build      # download pinned inputs, check sha256, write data_cache/
    python -m alhelpers.data.snapshot verify     # check the committed files against MANIFEST.json

Inputs (STUDY §1), downloaded with pip by pinned version and checked by sha256:

* ``matminer==0.4.2`` source distribution → ``matminer/datasets/flla_2015.csv``: 3,938 Materials
  Project (2015) entries with structures (Faber, Lindmaa, von Lilienfeld, Armiento,
  Int. J. Quantum Chem. 115 (2015) 1094).
* ``qmpy==1.4.0`` wheel → ``qmpy/data/thermodata/legacy.dat`` (OQMD legacy formation energies) and
  ``mat_proj.dat`` (a Materials Project subset), both composition-only. The files are read out of
  the archive; qmpy itself is never imported (it needs Django/MySQL).

Outputs: one tidy parquet file per input table under ``data_cache/snapshot/`` and
``data_cache/MANIFEST.json``. Building again with the same pyarrow version reproduces the files
byte for byte (no timestamps, no pandas metadata, rows in source order).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alhelpers.cli import build_verify_parser
from alhelpers.data.paths import REPO_ROOT, cache_root, manifest_path, snapshot_dir
from alhelpers.files import UnreadableFileError, read_json, read_local_parquet
from alhelpers.keys import ENTRY_COLUMNS, PROPERTY_COLUMNS, Key

SNAPSHOT_FORMAT = 1


class SnapshotIntegrityError(RuntimeError):
    """A snapshot file is missing or does not match the sha256 recorded in MANIFEST.json."""


@dataclass(frozen=True)
class ArchiveInput:
    """A pinned PyPI distribution and the data members read out of it."""

    package: str
    version: str
    filename: str
    sha256: str
    kind: str  # "sdist" | "wheel"
    members: tuple[str, ...]
    licence: str


INPUTS: dict[str, ArchiveInput] = {
    "matminer": ArchiveInput(
        package="matminer",
        version="0.4.2",
        filename="matminer-0.4.2.tar.gz",
        sha256="355792330e20b121cae1492e6e8b4bcae4cf5fc5fa30d44241ef680fb809030c",
        kind="sdist",
        members=("matminer-0.4.2/matminer/datasets/flla_2015.csv",),
        licence="matminer: BSD-style (modified BSD); data: CC-BY 4.0 Materials Project",
    ),
    "qmpy": ArchiveInput(
        package="qmpy",
        version="1.4.0",
        filename="qmpy-1.4.0-py3-none-any.whl",
        sha256="663eeab0c3563ca07c7e893920f8358f85d246acf686ee78c82f48717291614f",
        kind="wheel",
        members=("qmpy/data/thermodata/legacy.dat", "qmpy/data/thermodata/mat_proj.dat"),
        licence="qmpy: MIT; OQMD data: CC-BY 4.0; mat_proj.dat: Materials Project (CC-BY 4.0)",
    ),
}

#: Output table name → (source, dataset, description, attribution).
TABLES: dict[str, dict[str, str]] = {
    "flla_2015": {
        "source": "mp",
        "input": "matminer",
        "description": "Materials Project (2015) entries with structures, from matminer 0.4.2",
        "attribution": (
            "A. Jain et al., APL Materials 1, 011002 (2013) (Materials Project); F. Faber, "
            "A. Lindmaa, O. A. von Lilienfeld, R. Armiento, Int. J. Quantum Chem. 115, 1094 (2015)"
        ),
    },
    "qmpy_legacy": {
        "source": "oqmd",
        "input": "qmpy",
        "description": "OQMD legacy formation energies (composition only), from qmpy 1.4.0",
        "attribution": (
            "J. E. Saal et al., JOM 65, 1501 (2013); S. Kirklin et al., npj Comput. Mater. 1, "
            "15010 (2015) (OQMD)"
        ),
    },
    "qmpy_mat_proj": {
        "source": "mp",
        "input": "qmpy",
        "description": "Materials Project formation energies (composition only), from qmpy 1.4.0",
        "attribution": "A. Jain et al., APL Materials 1, 011002 (2013) (Materials Project)",
    },
}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- inputs


def download_input(spec: ArchiveInput, dest: Path) -> Path:
    """Download one pinned distribution with pip (no dependencies) and check its sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / spec.filename
    if not path.exists():
        fmt = ["--no-binary", ":all:"] if spec.kind == "sdist" else ["--only-binary", ":all:"]
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               *fmt, f"{spec.package}=={spec.version}", "-d", str(dest)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
            raise RuntimeError(
                f"could not download {spec.package}=={spec.version} from PyPI with pip "
                f"(exit {proc.returncode}). Check the network or pass --download-dir with "
                f"{spec.filename} already in it.\n{proc.stderr[-2000:]}"
            )
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise SnapshotIntegrityError(
            f"{path} has sha256 {digest}, expected {spec.sha256}; delete it and build again"
        )
    return path


def read_members(archive: Path, spec: ArchiveInput) -> dict[str, bytes]:
    """Read the data members out of an sdist (tar.gz) or wheel (zip) without installing it."""
    out: dict[str, bytes] = {}
    if spec.kind == "sdist":
        with tarfile.open(archive, "r:gz") as tar:
            for name in spec.members:
                fh = tar.extractfile(name)
                if fh is None:
                    raise SnapshotIntegrityError(f"{name} not found in {archive}")
                out[name] = fh.read()
    else:
        with zipfile.ZipFile(archive) as zf:
            for name in spec.members:
                out[name] = zf.read(name)
    return out


# --------------------------------------------------------------------------- parsers


def _formula_from_counts(counts: dict[str, float]) -> tuple[str, int]:
    from pymatgen.core import Composition

    comp = Composition(counts)
    # "K2 Ti1 O3" → "K2TiO3": drop spaces and unit counts
    formula = re.sub(r"(?<=[A-Za-z])1(?![0-9.])", "", comp.formula.replace(" ", ""))
    return formula, int(round(comp.num_atoms))


def parse_flla(raw: bytes) -> pd.DataFrame:
    """Parse matminer's ``flla_2015.csv`` into the tidy entries table (one row per entry).

    ``formula`` is a Python-literal element→count dict and ``structure`` a Python-literal
    pymatgen ``Structure`` dict; both are read with ``ast.literal_eval``. Density (g/cm³) and
    volume (Å³ per cell) are computed from the structure; ``is_stable`` is ``e_above_hull == 0``.
    """
    from pymatgen.core import Structure

    df = pd.read_csv(io.BytesIO(raw), comment=None, skiprows=1)
    rows = []
    for rec in df.itertuples(index=False):
        sdict = ast.literal_eval(rec.structure)
        struct = Structure.from_dict(sdict)
        formula, _ = _formula_from_counts(ast.literal_eval(rec.formula))
        rows.append(
            {
                Key.source: "mp",
                Key.dataset: "flla_2015",
                Key.entry_id: str(rec.material_id),
                Key.formula: formula,
                Key.nsites: int(rec.nsites),
                Key.target: float(rec.formation_energy_per_atom),
                Key.energy_per_atom: np.nan,
                Key.band_gap: np.nan,
                Key.density: float(struct.density),
                Key.volume: float(struct.volume),
                Key.e_above_hull: float(rec.e_above_hull),
                Key.is_stable: bool(float(rec.e_above_hull) <= 0.0),
                Key.structure: json.dumps(sdict, sort_keys=True, separators=(",", ":")),
            }
        )
    return pd.DataFrame(rows)


def parse_thermodata(raw: bytes, *, source: str, dataset: str) -> pd.DataFrame:
    """Parse a qmpy ``thermodata/*.dat`` file (``composition energy`` per line, eV/atom)."""
    rows = []
    for lineno, line in enumerate(raw.decode().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 2 or parts[0] == "composition":
            continue
        formula, nsites = _formula_from_counts(_parse_formula(parts[0]))
        rows.append(
            {
                Key.source: source,
                Key.dataset: dataset,
                Key.entry_id: f"{dataset}:{lineno}",
                Key.formula: formula,
                Key.nsites: nsites,
                Key.target: float(parts[1]),
            }
        )
    df = pd.DataFrame(rows)
    for col in PROPERTY_COLUMNS:
        df[col] = None if col in (Key.structure, Key.is_stable) else np.nan
    return df


def _parse_formula(text: str) -> dict[str, float]:
    from pymatgen.core import Composition

    return dict(Composition(text).get_el_amt_dict())


# --------------------------------------------------------------------------- writing


_SCHEMA = pa.schema(
    [
        (Key.source, pa.string()),
        (Key.dataset, pa.string()),
        (Key.entry_id, pa.string()),
        (Key.formula, pa.string()),
        (Key.nsites, pa.int64()),
        (Key.target, pa.float64()),
        (Key.energy_per_atom, pa.float64()),
        (Key.band_gap, pa.float64()),
        (Key.density, pa.float64()),
        (Key.volume, pa.float64()),
        (Key.e_above_hull, pa.float64()),
        (Key.is_stable, pa.bool_()),
        (Key.structure, pa.string()),
        (Key.elements, pa.string()),
    ]
)


def write_table(df: pd.DataFrame, path: Path) -> str:
    """Write a tidy entries table as deterministic parquet (fixed schema, no metadata)."""
    from alhelpers.data.formulas import elements_of

    df = df.assign(**{Key.elements: [" ".join(sorted(elements_of(f))) for f in df[Key.formula]]})
    cols = [*ENTRY_COLUMNS, *PROPERTY_COLUMNS, Key.elements]
    table = pa.Table.from_pandas(df[cols], schema=_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(None)
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=9, write_statistics=False)
    data = sink.getvalue()
    path.write_bytes(data)
    return sha256_bytes(data)


def build_snapshot(out_root: Path | None = None, *, download_dir: Path | None = None) -> dict:
    """Download the pinned inputs, parse them and write ``snapshot/*.parquet`` + ``MANIFEST.json``."""
    root = out_root or cache_root()
    tmp = None
    if download_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="alhelpers-snapshot-")
        download_dir = Path(tmp.name)
    try:
        members: dict[str, dict[str, bytes]] = {}
        inputs_manifest = {}
        for key, spec in INPUTS.items():
            archive = download_input(spec, download_dir)
            members[key] = read_members(archive, spec)
            inputs_manifest[key] = {
                "package": spec.package,
                "version": spec.version,
                "distribution": spec.filename,
                "sha256": spec.sha256,
                "members": {m: sha256_bytes(b) for m, b in members[key].items()},
                "licence": spec.licence,
            }
    finally:
        if tmp is not None:
            tmp.cleanup()

    mm, qm = members["matminer"], members["qmpy"]
    tables = {
        "flla_2015": parse_flla(mm[INPUTS["matminer"].members[0]]),
        "qmpy_legacy": parse_thermodata(
            qm["qmpy/data/thermodata/legacy.dat"], source="oqmd", dataset="qmpy_legacy"
        ),
        "qmpy_mat_proj": parse_thermodata(
            qm["qmpy/data/thermodata/mat_proj.dat"], source="mp", dataset="qmpy_mat_proj"
        ),
    }
    outputs = {}
    for name, df in tables.items():
        path = snapshot_dir(root) / f"{name}.parquet"
        digest = write_table(df, path)
        outputs[name] = {
            **TABLES[name],
            "file": f"snapshot/{name}.parquet",
            "sha256": digest,
            "rows": int(len(df)),
            "with_structure": bool(df[Key.structure].notna().any()),
        }
    manifest = {
        "format": SNAPSHOT_FORMAT,
        "built_with": {"pyarrow": pa.__version__, "python": sys.version.split()[0]},
        "inputs": inputs_manifest,
        "outputs": outputs,
        "licence_note": (
            "Materials Project and OQMD data are CC-BY 4.0: cite the works in 'attribution' when "
            "you use this snapshot."
        ),
    }
    manifest_path(root).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# --------------------------------------------------------------------------- reading


def manifest_fix(root: Path | None = None) -> str:
    """What to do about a broken ``MANIFEST.json``: restore it from git, or build the snapshot
    again (into ``root``, when that is not the repository's ``data_cache/``)."""
    base = manifest_path(root).parent
    out = "" if base == REPO_ROOT / "data_cache" else f" --out {base}"
    return ("Restore it with `git checkout -- data_cache/MANIFEST.json` (in the repository), or "
            f"build the snapshot again with `python -m alhelpers.data.snapshot build{out}`.")


def read_manifest(root: Path | None = None) -> dict:
    """The snapshot's ``MANIFEST.json``, checked: a dict whose ``outputs`` name a file and a
    sha256 each. :class:`SnapshotIntegrityError` when it is missing; :class:`UnreadableFileError`
    (the file and :func:`manifest_fix`) when it is truncated, not JSON or not a manifest."""
    path = manifest_path(root)
    if not path.exists():
        raise SnapshotIntegrityError(
            f"no snapshot manifest at {path}. Build the snapshot with "
            "`python -m alhelpers.data.snapshot build` or set ALHELPERS_DATA_CACHE to a folder "
            "that has one."
        )
    manifest = read_json(path, todo=manifest_fix(root))
    outputs = manifest.get("outputs") if isinstance(manifest, dict) else None
    if not (isinstance(outputs, dict) and outputs and all(
            isinstance(o, dict) and isinstance(o.get("file"), str) and isinstance(o.get("sha256"), str)
            for o in outputs.values())):
        raise UnreadableFileError(
            path, "not a snapshot manifest: no 'outputs' with a 'file' and a 'sha256' each",
            manifest_fix(root))
    return manifest


def verify_snapshot(root: Path | None = None) -> dict:
    """Check every snapshot file against its sha256 in the manifest; return the manifest."""
    manifest = read_manifest(root)
    base = manifest_path(root).parent
    for name, out in manifest["outputs"].items():
        path = base / out["file"]
        if not path.exists():
            raise SnapshotIntegrityError(f"snapshot file {path} is missing ({name})")
        digest = sha256_file(path)
        if digest != out["sha256"]:
            raise SnapshotIntegrityError(
                f"snapshot file {path} is corrupt or was changed: sha256 {digest[:12]}… but "
                f"MANIFEST.json records {out['sha256'][:12]}…. Restore it with "
                "`git checkout -- data_cache/` or rebuild it with "
                "`python -m alhelpers.data.snapshot build`."
            )
    return manifest


def load_snapshot(tables: Sequence[str] | None = None, *, root: Path | None = None) -> pd.DataFrame:
    """All snapshot entries (or the named tables) as one tidy table, hash-checked first."""
    manifest = verify_snapshot(root)
    names = list(tables) if tables is not None else list(manifest["outputs"])
    unknown = sorted(set(names) - set(manifest["outputs"]))
    if unknown:
        raise ValueError(f"unknown snapshot table(s) {unknown}; known: {sorted(manifest['outputs'])}")
    base = manifest_path(root).parent
    frames = [read_local_parquet(base / manifest["outputs"][n]["file"]) for n in names]
    return pd.concat(frames, ignore_index=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser, b = build_verify_parser("python -m alhelpers.data.snapshot", __doc__,
                                    build="download the pinned inputs and write the snapshot",
                                    out="cache root (default: data_cache/)",
                                    verify="check the snapshot files against MANIFEST.json")
    b.add_argument("--download-dir", type=Path, default=None,
                   help="keep/reuse the downloaded distributions here")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        manifest = build_snapshot(args.out, download_dir=args.download_dir)
    else:
        manifest = verify_snapshot(args.root)
    for name, out in manifest["outputs"].items():
        print(f"{name:15s} rows={out['rows']:6d} sha256={out['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
