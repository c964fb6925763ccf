"""Fast scalar random draws for drawing one image.

A numpy Generator call costs ~10 µs (~80 µs with `p=`), and one image needs a few hundred
scalar draws. `Draws` pulls uniform and normal numbers from the generator in blocks and
hands them out one by one: the sequence is a pure function of the generator's seed, so
images stay reproducible.
"""

from __future__ import annotations

import bisect
import itertools

import numpy as np

_BLOCK = 256


class Draws:
    """Scalar draws (uniform, normal, integers, weighted choice) from a numpy Generator.

    Array draws go straight to `.rng` (same generator, same determinism).
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self._u: list[float] = []
        self._ui = 0
        self._n: list[float] = []
        self._ni = 0

    def random(self) -> float:
        """Uniform in [0, 1)."""
        if self._ui == len(self._u):
            self._u = self.rng.random(_BLOCK).tolist()
            self._ui = 0
        v = self._u[self._ui]
        self._ui += 1
        return v

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * self.random()

    def normal(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        if self._ni == len(self._n):
            self._n = self.rng.standard_normal(_BLOCK).tolist()
            self._ni = 0
        v = self._n[self._ni]
        self._ni += 1
        return mu + sigma * v

    def integers(self, lo: int, hi: int | None = None) -> int:
        """Like Generator.integers: [0, lo) with one argument, [lo, hi) with two."""
        if hi is None:
            lo, hi = 0, lo
        return lo + min(int(self.random() * (hi - lo)), hi - lo - 1)

    def choice(self, options, p=None):
        """One element of `options` (or an index when given an int), optionally weighted."""
        seq = range(options) if isinstance(options, int) else options
        if p is None:
            return seq[self.integers(len(seq))]
        cum = list(itertools.accumulate(p))
        i = bisect.bisect_right(cum, self.random() * cum[-1])
        return seq[min(i, len(seq) - 1)]
