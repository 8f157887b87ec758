"""Reading and writing result files safely: atomic writes, hashes, and readable errors.

Every table, checkpoint and executed notebook the project writes goes through :func:`atomic_write`:
the content is written to a temporary file with a per-process name in the same folder and then
renamed over the target, so a reader never sees half a file and two processes never share a
temporary name. A command checks the paths it will write with :func:`check_output_paths` before
any work: never one of its inputs, and an existing file only when the user says so. Every file the
project reads back goes through :func:`read_json` / :func:`read_parquet`, which turn a truncated or
corrupt file into one :class:`UnreadableFileError` that names the file and says what to do; a data
file whose sha256 does not match its record raises the subclass :class:`DataIntegrityError`.
Parquet files are opened by Arrow itself (:func:`read_local_parquet`), not through a Python file
object, which let an Arrow worker release Python buffers after shutdown began (``terminate called``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "DataIntegrityError",
    "UnreadableFileError",
    "atomic_write",
    "check_output_paths",
    "folder_lock",
    "read_json",
    "read_local_parquet",
    "read_parquet",
    "sha256_file",
    "write_csv",
    "write_json",
    "write_parquet",
    "write_text",
]


class UnreadableFileError(ValueError):
    """A file the project wrote (or was given) cannot be read: truncated, corrupt or not the format."""

    def __init__(self, path: str | os.PathLike, reason: str, todo: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path} is unreadable ({reason}). {todo}")


class DataIntegrityError(UnreadableFileError, RuntimeError):
    """A data file does not match the sha256 recorded for it (corrupt, truncated or replaced).

    An :class:`UnreadableFileError` (its content cannot be trusted) whose message is given whole,
    saying which hashes differ and how to get a good copy; also a ``RuntimeError``, as it was
    before the two were joined. ``path`` is the file, or ``None`` where none was written.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        Exception.__init__(self, message)  # not the "<path> is unreadable (...)" form


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then rename it to ``path``.

    The temporary name carries this process's id and a random part, so concurrent writers of the
    same file never collide; the rename is atomic, so readers see the old or the new file whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same inode when both exist (links included), else the
    same absolute path once ``..`` and links are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()


def check_output_paths(outputs: Mapping[str, str | os.PathLike], inputs: Sequence[tuple[str, str | os.PathLike]],
                       *, overwrite: bool) -> None:
    """Refuse, before any work, output paths that would lose data: one of the inputs (even with
    ``overwrite``), two outputs naming one file, a folder, or an existing file unless ``overwrite``.

    Args:
        outputs: The flag and the path of each file the command writes (``{"--out": …, "--csv": …}``).
        inputs: ``(what, path)`` of each file it reads, ``what`` as the message names it
            (``"the pool file"``).
        overwrite: The user passed ``--overwrite``: existing files that are no input may be replaced.

    Raises:
        ValueError: Naming the flag, the path and what to do.
    """
    flags = list(outputs)
    for k, flag in enumerate(flags):
        out = outputs[flag]
        for what, source in inputs:
            if _same_file(out, source):
                spelt = "" if os.fspath(out) == os.fspath(source) else f" ({os.fspath(source)})"
                raise ValueError(f"{flag} {os.fspath(out)} is {what}{spelt}; the command never writes over its "
                                 "inputs, not even with --overwrite: choose another path")
        for other in flags[k + 1:]:
            if _same_file(out, outputs[other]):
                raise ValueError(f"{flag} and {other} both name {os.fspath(out)}; give two different paths")
        if os.path.isdir(out):
            raise ValueError(f"{flag} {os.fspath(out)} is a folder; give the path of a file")
        if os.path.exists(out) and not overwrite:
            raise ValueError(f"{flag} {os.fspath(out)} already exists; pass --overwrite to replace it, or choose "
                             "another path")


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, payload: Any, *, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(payload, indent=indent, sort_keys=True, default=str) + "\n")


def write_parquet(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


#: Columns of the result tables that hold ids (hex digests of the code and of the configuration).
ID_COLUMNS: tuple[str, ...] = ("code_id", "config_id")


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A table this project wrote with :func:`write_csv`, its id columns (:data:`ID_COLUMNS`) as text:
    pandas would read an id made only of digits (about 1 in 300 of them), or of digits and one
    ``e``, as a number."""
    return pd.read_csv(path, dtype=dict.fromkeys(ID_COLUMNS, str))


def read_json(path: str | os.PathLike, *, todo: str) -> Any:
    """Parse a JSON file; a truncated or corrupt one raises :class:`UnreadableFileError` saying ``todo``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnreadableFileError(path, f"not valid JSON: {exc}", todo) from None


def read_local_parquet(path: str | os.PathLike, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_parquet`` of a local file, opened by Arrow's own file system, not by Python.

    Given a bare path, pandas opens a Python file object and hands it to Arrow; the parquet scan
    then reads it into Python-owned buffers, and an Arrow CPU-pool worker may release the last of
    them (taking the GIL) just after the read has returned. A short script that exits at once
    can reach interpreter shutdown first: the worker is then stopped inside that C++ destructor
    and the process aborts with ``terminate called without an active exception`` (rc 134), after
    its output was printed. Opened through ``pyarrow.fs.LocalFileSystem`` the buffers are Arrow's
    and no worker touches Python. Same table, same dtypes; ``kwargs`` go to ``pd.read_parquet``.
    """
    from pyarrow import fs

    return pd.read_parquet(os.fspath(path), filesystem=fs.LocalFileSystem(), **kwargs)


def read_parquet(path: str | os.PathLike, *, todo: str, **kwargs: Any) -> pd.DataFrame:
    """Read a parquet file; a truncated or corrupt one raises :class:`UnreadableFileError`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist. {todo}")
    try:
        return read_local_parquet(path, **kwargs)
    except (OSError, ValueError) as exc:  # pyarrow: ArrowInvalid (a ValueError), ArrowIOError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableFileError(path, f"not a valid parquet file: {first}", todo) from None


@contextlib.contextmanager
def folder_lock(lock: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold ``lock`` (an ``flock`` on that file) for this process; ``RuntimeError`` with ``busy``
    and who holds it when another process does.

    The operating system releases an ``flock`` when its process ends, however it ends, so a
    crashed command never leaves a stale lock.
    """
    import fcntl

    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RuntimeError(busy.format(holder=holder)) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    fh.flush()
    try:
        yield
    finally:
        fh.close()
