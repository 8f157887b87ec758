"""Files of the model-agnostic path: model files in, the selection out (extxyz and CSV)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ase import Atoms

from alhelpers.anymodel.select import Selection
from alhelpers.files import UnreadableFileError, atomic_write, write_csv

__all__ = ["load_model", "write_selection"]


def load_model(path: str | os.PathLike) -> Any:
    """A whole model saved with ``torch.save(model, path)`` (MACE model files are), on the CPU.

    Unpickling runs code from the file: load only files you trust. ``mace`` is imported first
    when it is installed (e3nn's constants only load after it).
    """
    import torch

    try:
        import mace  # noqa: F401
    except ImportError:
        pass
    if not os.path.exists(path):
        raise FileNotFoundError(f"the model file {os.fspath(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UnreadableFileError(f"{os.fspath(path)} is not a model torch.load can read ({err}); save the whole "
                                  "model with torch.save(model, path), or install the package that defines it "
                                  "(e.g. pip install 'alhelpers[mace]')") from err
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{os.fspath(path)} holds a {type(obj).__name__}, not a model: save the whole model with "
                         "torch.save(model, path) (a state dict has no architecture)")
    return obj.eval()


def write_selection(sel: Selection, pool: Sequence[Atoms], out: str | os.PathLike, csv: str | os.PathLike
                    ) -> tuple[Path, Path]:
    """The selected structures (selection order, extxyz, with ``pool_index``, ``rank``, ``score``
    in their info) and the per-structure table, each written atomically."""
    from ase.io import write

    frames = []
    for rank, i in enumerate(sel.indices, start=1):
        a = pool[int(i)].copy()
        a.calc = None
        a.info.update(pool_index=int(i), rank=rank, score=float(sel.scores[int(i)]), method=sel.method)
        frames.append(a)
    path = atomic_write(out, lambda tmp: write(tmp, frames, format="extxyz"))
    return path, write_csv(csv, sel.table())
