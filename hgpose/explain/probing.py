"""Linear probes on frozen features (the maths of the `probes` part).

Alain & Bengio, "Understanding intermediate layers using linear classifier probes" (2016):
a linear model fitted on a frozen layer's output measures what that layer makes linearly
available. Hewitt & Liang, "Designing and Interpreting Probes with Control Tasks" (EMNLP
2019): a probe's score means little without the score of the same probe on a control task;
here the control is the same target shuffled across the crops (so nothing in the image can
predict it), fitted and scored exactly like the real one; selectivity = score - control.

One layer at a time: the features of the training crops are standardised and projected on
their top principal components (at most PCA_DIMS, fitted on the training part only), then

    numbers      ridge regression (scikit-learn RidgeCV), scored by R² on the held-out crops
                 (the mean over a target's columns: a joint's x and y)
    categories   logistic regression (LogisticRegressionCV, balanced class weights), scored
                 by balanced accuracy (the mean recall of the classes; chance = 1 / classes)

the regularisation chosen by cross-validation on the training part: ridge's by its efficient
leave-one-out form (RidgeCV), logistic regression's by 3 folds stratified by class and grouped
by image (one crop per image in LSP; a COCO image's other crops may then share a fold).
The held-out part is a quarter of the images (no image in both parts: GroupShuffleSplit).
Intervals: the 2.5th and 97.5th percentiles of the score over bootstrap resamples of the
held-out images (their crops together), with the fitted probe fixed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from hgpose.explain.targets import Target

PCA_DIMS = 128          # the probe's input: the layer's top principal components (training part)
ALPHAS = np.logspace(-2, 5, 8)   # ridge's regularisation grid
CS = np.logspace(-5, -1, 5)      # logistic regression's inverse regularisation grid (measured choices 1e-4 .. 1e-1)
FOLDS = 3
TEST_FRACTION = 0.25
MIN_TRAIN, MIN_TEST = 20, 10     # crops a target needs in each part
MIN_CLASS = 5                    # crops each class needs in the training part (2 held out)


@dataclass
class Partition:
    """Which sampled crops train the probes and which score them, by image."""

    train: np.ndarray        # indices into the sampled crops
    test: np.ndarray
    groups: np.ndarray       # image id of every sampled crop
    draws: np.ndarray        # float [B, len(test)]: bootstrap weight of each held-out crop


def partition(groups: np.ndarray, seed: int, bootstrap: int) -> Partition:
    """A quarter of the images held out, and `bootstrap` resamples of the held-out images."""
    from sklearn.model_selection import GroupShuffleSplit

    rows = np.arange(len(groups))
    train, test = next(GroupShuffleSplit(1, test_size=TEST_FRACTION, random_state=seed).split(rows, groups=groups))
    images, position = np.unique(groups[test], return_inverse=True)
    counts = np.random.default_rng([seed, 1]).multinomial(len(images), np.full(len(images), 1 / len(images)),
                                                           size=bootstrap)
    return Partition(np.sort(train), np.sort(test), groups, counts[:, position].astype(np.float64))


def reduce(features: np.ndarray, train: np.ndarray, dims: int = PCA_DIMS) -> np.ndarray:
    """All sampled crops' features, standardised and projected on the top principal components
    of the training part (float64 [n, <= dims])."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, np.float64)
    scaler = StandardScaler().fit(x[train])
    x = scaler.transform(x)
    k = int(min(dims, len(train) - 1, x.shape[1]))
    pca = PCA(k, svd_solver="randomized" if k < min(x.shape) // 2 else "full", random_state=0).fit(x[train])
    z = pca.transform(x)
    # One scale for every layer: the components' mean variance 1 (their ratios kept, so the
    # penalties still shrink the weak directions most), which keeps one grid of penalties
    # meaningful for all layers and the logistic solver well conditioned.
    return z / np.sqrt(pca.explained_variance_.mean())


def r2_weighted(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """R² (mean over columns) of y, pred [n, k] under row weights w [B, n] -> [B]."""
    total = w.sum(1, keepdims=True)
    mean = (w @ y) / total                                    # [B, k]
    ss_tot = w @ (y**2) - total * mean**2
    ss_res = w @ ((y - pred) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1 - ss_res / ss_tot
    return _nanmean(np.where(ss_tot > 0, r2, np.nan))


def balanced_accuracy_weighted(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean recall over the classes present) under row weights w [B, n] -> [B]."""
    recalls = []
    for c in np.unique(y):
        member = (y == c).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            recalls.append((w @ (member * (pred == c))) / (w @ member))
    return _nanmean(np.stack(recalls, 1))


def _nanmean(values: np.ndarray, axis: int = 1) -> np.ndarray:
    """The mean over `axis` of the defined values; NaN (silently) where none is (a resample that
    drew one class only, or a constant column)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis)


def _score(kind: str, y, pred, w) -> np.ndarray:
    return r2_weighted(y, pred, w) if kind == "numeric" else balanced_accuracy_weighted(y, pred, w)


def too_small(target: Target, part: Partition) -> str | None:
    """Why a target cannot be probed on this partition (None: it can)."""
    train, test = part.train[target.valid[part.train]], part.test[target.valid[part.test]]
    if len(train) < MIN_TRAIN or len(test) < MIN_TEST:
        return f"{len(train)} training / {len(test)} held-out crops define it (needs {MIN_TRAIN} / {MIN_TEST})"
    if target.kind == "numeric":
        return None if np.ptp(target.values[train], 0).max() > 0 else "constant on the training crops"
    classes, counts = np.unique(target.values[train], return_counts=True)
    if len(classes) < 2 or counts.min() < MIN_CLASS or len(np.unique(target.values[test])) < 2:
        return f"needs 2+ classes with {MIN_CLASS}+ training crops each and 2+ classes held out"
    return None


def class_folds(target: Target, part: Partition, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """A categorical target's cross-validation folds within its training crops: stratified by
    class, grouped by image (made once per target: the same for every layer). None: numeric."""
    from sklearn.model_selection import StratifiedGroupKFold

    if target.kind == "numeric":
        return None
    train = part.train[target.valid[part.train]]
    splitter = StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed)
    return list(splitter.split(train, target.values[train], groups=part.groups[train]))


def fit_predict(kind: str, z: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                folds: list | None) -> np.ndarray:
    """The probe fitted on z[train] -> y[train], predicting z[test]. Ridge's penalty is chosen by
    its efficient leave-one-out cross-validation (RidgeCV); logistic regression's by `folds`."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    if kind == "numeric":
        return RidgeCV(alphas=ALPHAS).fit(z[train], y[train]).predict(z[test]).reshape(len(test), -1)
    classes, codes = np.unique(y, return_inverse=True)   # integer classes: LogisticRegressionCV's
    model = LogisticRegressionCV(Cs=CS, cv=folds, class_weight="balanced",   # balanced weights want them
                                 scoring="balanced_accuracy", max_iter=500, **_current_defaults(LogisticRegressionCV))
    with warnings.catch_warnings():   # a fold's classifier predicting a class its fold lacks: expected
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        model.fit(z[train], codes[train])
    return classes[model.predict(z[test])]


def _current_defaults(estimator) -> dict:
    """The settings scikit-learn 1.8+ asks for explicitly (plain L2 and its new attributes), where
    the installed version knows them; before, they are the behaviour anyway."""
    import inspect

    known = inspect.signature(estimator).parameters
    wanted = {"l1_ratios": (0.0,), "use_legacy_attributes": False}
    return {k: v for k, v in wanted.items() if k in known}


def probe(target: Target, z: np.ndarray, part: Partition, seed: int, folds: list | None = None) -> dict:
    """One target on one layer's reduced features: score, control, their bootstrap intervals."""
    train, test = part.train[target.valid[part.train]], part.test[target.valid[part.test]]
    weights = part.draws[:, np.searchsorted(part.test, test)]
    shuffled = target.values.copy()
    valid = np.flatnonzero(target.valid)
    shuffled[valid] = target.values[np.random.default_rng([seed, 2]).permutation(valid)]
    out = {}
    for name, y in (("score", target.values), ("control", shuffled)):
        pred = fit_predict(target.kind, z, y, train, test, folds)
        point = _score(target.kind, y[test], pred, np.ones((1, len(test))))[0]
        boot = _score(target.kind, y[test], pred, weights)
        out[name] = float(point)
        out[f"{name}_boot"] = boot
    return out


def chance(target: Target, part: Partition) -> float:
    """What a probe that learned nothing scores: R² 0, or 1 / the held-out classes."""
    if target.kind == "numeric":
        return 0.0
    return 1.0 / len(np.unique(target.values[part.test[target.valid[part.test]]]))


def interval(boot: np.ndarray) -> list[float]:
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    return [float(low), float(high)]
