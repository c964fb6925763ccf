"""Seeded draws that split a dataset's crops into val and test, shared by the formats.

Every draw uses numpy's PCG64 generator (`numpy.random.default_rng(seed)`), which gives the
same indices for the same seed on any machine, so a store's split is reproducible from its
manifest. Which part of a dataset each split comes from is each format's own rule
(`hgpose.data.formats`); these helpers only draw rows from a pool of crops.
"""

from __future__ import annotations

import numpy as np

from hgpose.errors import HgposeError


def resolve_size(size: int | float, pool: int, option: str, what: str) -> int:
    """A count, or a fraction in (0,1) of the pool; never more than the pool.

    `option` and `what` name the command-line option and the pool in the error message
    (e.g. "--test-size", "train2017 crops")."""
    if isinstance(size, float) and 0 < size < 1:
        return int(round(size * pool))
    try:
        count = int(size)
    except (TypeError, ValueError, OverflowError):  # text, nan, inf
        count = -1
    if count < 0 or count != size:
        raise HgposeError(f"{option} {size}: give a whole count >= 0 or a fraction in (0, 1)")
    if count > pool:
        raise HgposeError(
            f"{option} {count} is larger than the {pool} {what} available; "
            f"give a smaller count or a fraction such as 0.1"
        )
    return count


def draw_test(n: int, test_size: int | float, seed: int, what: str = "crops") -> np.ndarray:
    """Indices (sorted) of the `test_size` crops, out of a pool of n, that form the test split."""
    k = resolve_size(test_size, n, "--test-size", what)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=k, replace=False))


def draw_val_test(n: int, val_size: int | float, test_size: int | float, seed: int,
                  name: str) -> tuple[np.ndarray, np.ndarray]:
    """(val, test) indices (each sorted, never overlapping) out of the n crops of source
    `name`, for a dataset that ships no val split of its own."""
    n_test = resolve_size(test_size, n, "--test-size", f"crops of {name}")
    n_val = resolve_size(val_size, n, "--val-size", f"crops of {name}")
    if n_val + n_test > n:
        raise HgposeError(f"--val-size and --test-size ask for {n_val} + {n_test} of the {n} crops of "
                          f"{name}; give smaller sizes")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:n_test + n_val]), np.sort(order[:n_test])
