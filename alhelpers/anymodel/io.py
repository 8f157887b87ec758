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


def load_model(path: str | os.PathLike, what: str = "the model file") -> Any:
    """A whole model saved with ``torch.save(model, path)`` (MACE model files are), on the CPU.

    Unpickling runs code from the file: load only files you trust. ``mace`` is imported first
    when it is installed (e3nn's constants only load after it). ``what`` names the file in
    messages (``"a --committee file"``).

    Raises:
        FileNotFoundError: No such file.
        UnreadableFileError: ``torch.load`` cannot read it (truncated, not a torch.save file, or
            the package that defines the model is not installed), saying which and what to do.
        ValueError: It holds something other than a model (a state dict).
    """
    import torch

    try:
        import mace  # noqa: F401
    except ImportError:
        pass
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {os.fspath(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except ImportError as err:  # the class of the pickled model lives in a package that is not installed
        raise UnreadableFileError(path, f"{what}: its model needs the module {err.name or err}, which is not "
                                        "installed", "Install the package that defines the model (for MACE: pip "
                                        "install 'alhelpers[mace]').") from err
    except Exception as err:
        raise UnreadableFileError(path, f"{what}: {_why_unreadable(path, err)}",
                                  "Is it truncated, or not a model file? Save the whole model again with "
                                  "torch.save(model, path), or copy the complete file; MACE's .model files "
                                  "load as they are.") from err
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{os.fspath(path)} ({what}) holds a {type(obj).__name__}, not a model: save the whole "
                         "model with torch.save(model, path) (a state dict has no architecture)")
    return obj.eval()


def _why_unreadable(path: str | os.PathLike, err: Exception) -> str:
    """Why ``torch.load`` failed, in words: a zip archive (torch.save's format) without its end is
    a truncated file; else torch's own first line."""
    import zipfile

    with open(path, "rb") as fh:
        zip_start = fh.read(4) == b"PK\x03\x04"
    if zip_start and not zipfile.is_zipfile(path):
        return ("it is cut short: it starts as a torch.save archive but its end (the zip directory) is missing, "
                f"{os.path.getsize(path)} bytes")
    first = (str(err).strip().splitlines() or [""])[0]
    return f"torch.load cannot read it: {type(err).__name__}{': ' + first if first else ''}"


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
