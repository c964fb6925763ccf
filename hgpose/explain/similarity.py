"""Linear CKA: how alike two representations of the same crops are (the maths of the `cka` part).

Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations Revisited"
(ICML 2019), on column-centred activations X [n, p] and Y [n, q] of the same n crops:

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)                          (full formula)

It is 1 for X = Y, invariant to orthogonal transforms and isotropic scaling of either side,
and not to general invertible linear maps. In Gram form, K = X X^T and L = Y Y^T, it is
HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with HSIC(K, L) = tr(K H L H) / (n-1)^2, H the
centring matrix: an n x n Gram of all crops is what stops it scaling.

The estimator used for many crops is the minibatch one of Nguyen, Raghu & Kornblith, "Do
Wide and Deep Networks Learn the Same Things?" (ICLR 2021), section 3.1: the crops are split
into k minibatches of m; per minibatch i, the unbiased HSIC of Song et al. (JMLR 2012),

    HSIC_1(K, L) = [ tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((m-1)(m-2)) - 2/(m-2) 1^T K~ L~ 1 ] / (m(m-3))

(K~, L~: the Grams with their diagonals set to 0), and

    CKA_minibatch = mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) * mean_i HSIC_1(L_i, L_i)).

HSIC_1 being unbiased, the averages converge to the population HSIC whatever m, so the
estimate does not depend on the minibatch size the way the biased one would; only m x m Grams
are ever held (one per layer), and each minibatch's contribution is a few inner products.
"""

from __future__ import annotations

import numpy as np

MIN_BATCH = 4   # HSIC_1 divides by m(m-3)(m-2): a minibatch needs at least 4 crops


def centred(x: np.ndarray) -> np.ndarray:
    """Columns minus their means, in float64 (sums of squares over many rows)."""
    x = np.asarray(x, np.float64)
    return x - x.mean(0, keepdims=True)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The full formula on all rows (Kornblith et al. 2019, eq. for linear CKA)."""
    x, y = centred(x), centred(y)
    cross = np.linalg.norm(y.T @ x) ** 2
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def gram(x: np.ndarray) -> np.ndarray:
    """The linear Gram matrix X X^T of one minibatch (float64)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x @ x.T


def unbiased_hsic(grams: np.ndarray) -> np.ndarray:
    """HSIC_1 of every pair of Grams of one minibatch: [G, m, m] -> [G, G] (Song et al. 2012).

    All pairs at once: tr(K~ L~) is the inner product of the flattened K~ and L~ (both
    symmetric), 1^T K~ L~ 1 that of their row sums."""
    grams = np.array(grams, np.float64)          # a copy: the diagonals are zeroed in place
    g, m, _ = grams.shape
    if m < MIN_BATCH:
        raise ValueError(f"a minibatch of {m} rows: HSIC_1 needs at least {MIN_BATCH}")
    idx = np.arange(m)
    grams[:, idx, idx] = 0.0
    flat = grams.reshape(g, m * m)
    rows = grams.sum(2)                          # K~ 1, [G, m]
    totals = rows.sum(1)                         # 1^T K~ 1, [G]
    trace = flat @ flat.T
    return (trace + np.outer(totals, totals) / ((m - 1) * (m - 2)) - 2.0 / (m - 2) * (rows @ rows.T)) / (m * (m - 3))


class MinibatchCKA:
    """Accumulates HSIC_1 over minibatches for G representations; `cka()` gives the G x G
    matrix of CKA_minibatch (Nguyen et al. 2021). Memory: the G Grams of one minibatch."""

    def __init__(self, count: int):
        self.sums = np.zeros((count, count), np.float64)
        self.batches = 0

    def add(self, features: list[np.ndarray]) -> None:
        """One minibatch: each representation's rows for the same crops, in the same order."""
        self.sums += unbiased_hsic(np.stack([gram(f) for f in features]))
        self.batches += 1

    def cka(self) -> np.ndarray:
        if self.batches == 0:
            raise ValueError("no minibatch was added")
        hsic = self.sums / self.batches
        scale = np.sqrt(np.clip(np.diag(hsic), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            out = hsic / np.outer(scale, scale)
        return np.where(np.outer(scale, scale) > 0, out, np.nan)


def minibatches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The rows 0..n-1 shuffled and cut into ceil(n / size) minibatches of nearly equal size
    (so every one weighs the same in the average), each at least MIN_BATCH rows."""
    if n < MIN_BATCH:
        raise ValueError(f"{n} crops: minibatch CKA needs at least {MIN_BATCH}")
    return [np.sort(b) for b in np.array_split(rng.permutation(n), batch_count(n, size))]


def batch_count(n: int, size: int) -> int:
    """How many minibatches `minibatches` cuts n rows into."""
    return max(1, min(-(-n // size), n // MIN_BATCH))


def minibatch_cka(xs: list[np.ndarray], ys: list[np.ndarray] | None = None, *, batch: int = 256,
                  seed: int = 0) -> np.ndarray:
    """CKA_minibatch between every representation in `xs` (and those of `ys`, when given: then
    the [len(xs), len(ys)] block) over the same rows. Each may be an array or a read-only
    memory map [n, ...]; only one minibatch of each is read at a time."""
    reps = list(xs) + list(ys or [])
    n = len(reps[0])
    if any(len(r) != n for r in reps):
        raise ValueError("every representation needs the same crops (rows)")
    acc = MinibatchCKA(len(reps))
    for rows in minibatches(n, batch, np.random.default_rng(seed)):
        acc.add([np.asarray(r[rows]) for r in reps])
    full = acc.cka()
    return full if ys is None else full[: len(xs), len(xs):]
