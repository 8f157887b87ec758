"""Per-round checkpoints of both tracks' AL loops: one small JSON file per (strategy, round).

A run's folder is keyed by its config, a hash of its data and the package's code
(:func:`run_folder`), so a changed parameter, changed inputs or changed code start afresh instead
of resuming a stale run. A round's file holds its
row, the points it queried and, where the loop needs it, an ``extra`` payload (Track B: the labels
the oracle returned that round); nothing earlier is rewritten. A round may also leave a
*snapshot* (``roundNN.pt``, :func:`torch.save`): what the next round needs that the row cannot
rebuild — Track B's trained models, from which the next round warm-starts. It is written before
the round's JSON (so a round with a JSON always has its snapshot), and only the last three rounds'
snapshots are kept (an unreadable last one then costs one round, not the run), and none once the
run has finished. Every write is atomic. A file that cannot be read (truncated by a crash, say)
is reported, removed and its round recomputed, with the rounds after it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alhelpers.files import UnreadableFileError, atomic_write, read_json, write_json

__all__ = ["RoundCheckpoints", "run_folder"]

_RECOMPUTE = "It is removed and that round is recomputed."


def run_folder(root: str | Path, *parts: str, config: dict, data: Iterable[bytes] = ()) -> Path:
    """``root/parts…/<12 hex>``: the hash of ``config`` (as sorted JSON), the ``data`` bytes and the
    package's code (:func:`alhelpers.provenance.code_id`: rounds computed by other code are never
    resumed)."""
    from alhelpers.provenance import code_id

    h = hashlib.sha256(json.dumps({"config": config, "code": code_id()}, sort_keys=True, default=str).encode())
    for chunk in data:
        h.update(chunk)
    return Path(root, *parts, h.hexdigest()[:12])


class RoundCheckpoints:
    """The checkpoint files of one run folder (``folder/<strategy>/roundNN.json``)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, strategy: str, rnd: int) -> Path:
        return self.folder / strategy / f"round{rnd:02d}.json"

    def snapshot_path(self, strategy: str, rnd: int) -> Path:
        return self.folder / strategy / f"round{rnd:02d}.pt"

    def save(self, strategy: str, rnd: int, row: dict, queried: Iterable[int], extra: dict | None = None,
             snapshot: Any = None) -> Path:
        payload = {"row": row, "queried": [int(i) for i in queried]}
        if extra:
            payload["extra"] = extra
        if snapshot is not None:
            import torch

            atomic_write(self.snapshot_path(strategy, rnd), lambda tmp: torch.save(snapshot, tmp))
            payload["snapshot"] = True
        path = write_json(self.path(strategy, rnd), payload, indent=None)
        if rnd >= 3:
            self.snapshot_path(strategy, rnd - 3).unlink(missing_ok=True)
        return path

    def load_snapshot(self, strategy: str, rnd: int) -> Any:
        """The snapshot round ``rnd`` left; :class:`UnreadableFileError` when missing or unreadable."""
        import torch

        path = self.snapshot_path(strategy, rnd)
        if not path.exists():
            raise UnreadableFileError(path, "missing", _RECOMPUTE)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # truncated zip, bad pickle, …
            raise UnreadableFileError(path, f"not a snapshot torch.load can read: {type(err).__name__}: {err}",
                                      _RECOMPUTE) from None

    def drop_snapshots(self, strategies: Iterable[str]) -> None:
        """Remove every snapshot of ``strategies`` (a finished run needs none)."""
        for strategy in strategies:
            for path in (self.folder / strategy).glob("round*.pt"):
                path.unlink()

    def drop(self, strategy: str, rnd: int) -> None:
        """Remove round ``rnd`` and every later round of ``strategy`` (they are recomputed)."""
        for path in sorted((self.folder / strategy).glob("round*")):
            if path.stem[5:].isdigit() and int(path.stem[5:]) >= rnd:
                path.unlink()

    def load(self, strategy: str, n_rounds: int) -> list[dict]:
        """The strategy's checkpointed rounds in order, up to the first missing or unreadable one."""
        out: list[dict] = []
        for rnd in range(n_rounds):
            path = self.path(strategy, rnd)
            if not path.exists():
                break
            try:
                ck = read_json(path, todo=_RECOMPUTE)
                if not isinstance(ck, dict) or not {"row", "queried"} <= set(ck):
                    raise UnreadableFileError(path, "not a round checkpoint of this loop", _RECOMPUTE)
            except UnreadableFileError as err:
                warnings.warn(str(err), stacklevel=3)
                path.unlink()
                break
            out.append(ck)
        return out
