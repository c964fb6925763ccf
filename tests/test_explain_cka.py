"""Linear CKA (hgpose.explain.similarity) against its known properties, and the minibatch
estimator against the full formula.

The properties (Kornblith et al. 2019, section 3): CKA(X, X) = 1; invariant to an orthogonal
transform and to an isotropic scaling of X; not invariant to an invertible linear map that is
not orthogonal. The minibatch estimator (Nguyen et al. 2021) with one minibatch of every row
is the debiased CKA of Kornblith et al.'s reference code (feature space, written out below
independently of the Gram-space code under test); with many minibatches it estimates the same
population value as the full formula.
"""

from __future__ import annotations

import numpy as np
import pytest

from hgpose.explain.similarity import (MIN_BATCH, MinibatchCKA, linear_cka, minibatch_cka, minibatches,
                                       unbiased_hsic)


def reference_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s `feature_space_linear_cka(x, y, debiased=True)` (their CKA colab)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    n = len(x)

    def debiased(xty, rows_x, rows_y, norm_x, norm_y):
        return xty - n / (n - 2.0) * rows_x.dot(rows_y) + norm_x * norm_y / ((n - 1) * (n - 2))

    rows_x, rows_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    norm_x, norm_y = rows_x.sum(), rows_y.sum()
    cross = debiased(np.linalg.norm(x.T @ y) ** 2, rows_x, rows_y, norm_x, norm_y)
    self_x = debiased(np.linalg.norm(x.T @ x) ** 2, rows_x, rows_x, norm_x, norm_x)
    self_y = debiased(np.linalg.norm(y.T @ y) ** 2, rows_y, rows_y, norm_y, norm_y)
    return float(cross / np.sqrt(self_x * self_y))


@pytest.fixture(scope="module")
def xy():
    """300 rows of 20 features, and a noisy linear image of them in 12 features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20)) @ np.diag(np.linspace(0.5, 3, 20))
    y = x @ rng.normal(size=(20, 12)) + rng.normal(size=(300, 12)) * 4
    return x, y


def test_cka_of_a_representation_with_itself_is_one(xy):
    x, _ = xy
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka([x], [x], batch=64)[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(xy):
    x, y = xy
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(20, 20)))
    moved = 7.5 * x @ q + 3.0       # rotated, scaled and shifted (centring removes the shift)
    assert linear_cka(moved, y) == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert minibatch_cka([moved], [y], batch=64)[0, 0] == pytest.approx(minibatch_cka([x], [y], batch=64)[0, 0],
                                                                        rel=1e-10)
    assert linear_cka(moved, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_not_invariant_to_a_non_orthogonal_invertible_map(xy):
    x, _ = xy
    stretch = np.diag(np.geomspace(0.05, 20, 20))       # invertible, condition number 400
    assert np.linalg.matrix_rank(stretch) == 20
    # x's feature scales already spread 0.5 .. 3; the stretch makes a few features dominate
    assert linear_cka(x, x @ stretch) < 0.8
    assert minibatch_cka([x], [x @ stretch], batch=64)[0, 0] < 0.8


def test_one_minibatch_of_every_row_is_the_reference_debiased_cka(xy):
    x, y = xy
    ours = MinibatchCKA(2)
    ours.add([x, y])
    assert ours.cka()[0, 1] == pytest.approx(reference_debiased_cka(x, y), rel=1e-9)


def test_unbiased_hsic_of_independent_features_averages_to_zero():
    """HSIC_1 is unbiased: over many minibatches of independent X and Y its mean is ~0, where
    the full (biased) formula of 100-wide features on 400 rows is far from 0."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(4000, 100)), rng.normal(size=(4000, 100))
    assert linear_cka(x[:400], y[:400]) > 0.15          # the biased estimate: ~ p / (n + p)
    assert abs(minibatch_cka([x], [y], batch=400)[0, 0]) < 0.02


def test_minibatch_estimator_agrees_with_the_full_formula():
    """6,000 rows of a 16-feature relation (CKA ~0.6): the full formula on all rows against the
    minibatch estimate at three minibatch sizes. The two differ by the full formula's O(p / n)
    bias (~0.003 here) and the estimator's spread over minibatch shuffles (std 0.001 at
    m = 256, measured over 5 shuffles), both far inside 0.02."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6000, 16))
    y = x @ rng.normal(size=(16, 16)) + rng.normal(size=(6000, 16)) * 2
    full = linear_cka(x, y)
    assert 0.4 < full < 0.8
    for batch in (64, 256, 1000):
        assert minibatch_cka([x], [y], batch=batch, seed=batch)[0, 0] == pytest.approx(full, abs=0.02)


def test_minibatches_cover_every_row_once_in_batches_of_nearly_equal_size():
    batches = minibatches(1000, 256, np.random.default_rng(0))
    assert [len(b) for b in batches] == [250, 250, 250, 250]
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    assert [len(b) for b in minibatches(9, 256, np.random.default_rng(0))] == [9]
    with pytest.raises(ValueError, match="at least 4"):
        minibatches(MIN_BATCH - 1, 256, np.random.default_rng(0))


def test_all_pairs_at_once_equal_each_pair_alone(xy):
    x, y = xy
    z = np.random.default_rng(4).normal(size=(300, 5))
    grams = np.stack([a @ a.T for a in (x, y, z)])
    together = unbiased_hsic(grams)
    for i in range(3):
        for j in range(3):
            assert together[i, j] == pytest.approx(unbiased_hsic(grams[[i, j]])[0, 1], rel=1e-12)
    assert np.allclose(together, together.T)
    block = minibatch_cka([x, y], [z, x], batch=100)
    assert block.shape == (2, 2) and block[0, 1] == pytest.approx(1.0, abs=1e-12)
