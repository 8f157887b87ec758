"""Every random stream of both tracks comes from one function, :func:`seed_sequence`.

A stream is named by its keys: the run's seed first, then what it is for, e.g.
``stream(seed, "split")`` or ``stream(seed, strategy, round)``. Strings are hashed with CRC32
(stable across runs and machines), so a stream never depends on the order in which other streams
were used, and a resumed run draws exactly what an uninterrupted one would. Nothing in the
project seeds or reads NumPy's or torch's global random state.

Where a library wants an integer seed (a ``torch.Generator``, a child model), it is drawn from the
same sequence with :func:`seed_int`.
"""

from __future__ import annotations

import zlib
from typing import Literal

import numpy as np

__all__ = ["seed_sequence", "seed_int", "stream", "torch_seed"]


def _word(key: int | str) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"a stream key must be an int or a string, got {key!r}")
    if isinstance(key, str):
        return zlib.crc32(key.encode())
    key = int(key)
    if key < 0:
        raise ValueError(f"a stream key must be >= 0, got {key}")
    return key


def seed_sequence(*keys: int | str, spawn_key: tuple[int, ...] = ()) -> np.random.SeedSequence:
    """The :class:`numpy.random.SeedSequence` of the stream named by ``keys``."""
    if not keys:
        raise ValueError("seed_sequence needs at least one key (the run's seed)")
    return np.random.SeedSequence([_word(k) for k in keys], spawn_key=tuple(int(s) for s in spawn_key))


def stream(*keys: int | str, spawn_key: tuple[int, ...] = ()) -> np.random.Generator:
    """An independent NumPy generator for the stream named by ``keys``."""
    return np.random.default_rng(seed_sequence(*keys, spawn_key=spawn_key))


def seed_int(*keys: int | str, spawn_key: tuple[int, ...] = (), bits: Literal[32, 63] = 32) -> int:
    """An integer seed drawn from the stream named by ``keys``.

    ``bits=32``: the sequence's first 32-bit word; ``bits=63``: its first 64-bit word shifted
    right by one (fits a signed 64-bit integer, e.g. ``torch.Generator.manual_seed``).
    """
    ss = seed_sequence(*keys, spawn_key=spawn_key)
    if bits == 32:
        return int(ss.generate_state(1, dtype=np.uint32)[0])
    if bits == 63:
        return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)
    raise ValueError(f"bits must be 32 or 63, got {bits!r}")


def torch_seed(*keys: int | str, spawn_key: tuple[int, ...] = ()) -> int:
    """A 63-bit ``torch.Generator`` seed from two 32-bit words, ``(w0 << 31) ^ w1``.

    Track A's ensemble has seeded its torch generators this way from the start; it is kept as
    its own function so that its results stay bit-identical.
    """
    w = seed_sequence(*keys, spawn_key=spawn_key).generate_state(2, dtype=np.uint32)
    return (int(w[0]) << 31) ^ int(w[1])
