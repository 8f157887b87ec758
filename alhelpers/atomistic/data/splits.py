"""Seeded, disjoint pool / validation / test splits of a Track B set."""

from __future__ import annotations

import numpy as np

from alhelpers.al.seeding import stream

__all__ = ["split_indices"]


def split_indices(
    n: int, *, n_pool: int, n_val: int, n_test: int, seed: int
) -> dict[str, np.ndarray]:
    """Disjoint random pool / validation / test index sets of ``range(n)``.

    One permutation from :func:`alhelpers.al.seeding.stream` ``(seed)`` (the same numbers as
    ``numpy.random.default_rng(seed)``) is cut into ``n_pool``, ``n_val`` and ``n_test``
    consecutive pieces; ``"rest"`` holds what is left (often empty). Indices keep the permutation
    order, so ``pool[:k]`` is a random start set.

    Raises:
        ValueError: Negative sizes, or more indices asked for than ``n``.
    """
    sizes = {"pool": n_pool, "val": n_val, "test": n_test}
    if any(int(v) < 0 for v in sizes.values()) or n < 0:
        raise ValueError(f"split sizes must be non-negative, got n={n}, {sizes}")
    total = sum(int(v) for v in sizes.values())
    if total > n:
        raise ValueError(f"n_pool + n_val + n_test = {total} exceeds the {n} structures available")
    perm = stream(seed).permutation(int(n)).astype(np.int64)
    out, start = {}, 0
    for key, size in sizes.items():
        out[key] = perm[start : start + int(size)]
        start += int(size)
    out["rest"] = perm[start:]
    return out
