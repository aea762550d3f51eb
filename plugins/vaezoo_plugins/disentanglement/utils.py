"""What several metrics share: histogram discretisation, discrete mutual information and entropy,
standardisation, and the one-versus-rest logistic regression disentanglement_lib's results used."""

from __future__ import annotations

from typing import Any

import numpy as np

from vaezoo.evaluation.ground_truth import GroundTruth
from vaezoo.hparams import Param

SKLEARN = {"sklearn": "pip install 'vaezoo[metrics]'"}


def histogram_discretize(values: np.ndarray, bins: int) -> np.ndarray:
    """Each column [n, D] cut into `bins` equal-width bins over its own range: bin numbers 1..bins.

    disentanglement_lib's `_histogram_discretize`: np.digitize against the histogram's edges
    without the last, so the maximum falls in the last bin.
    """
    out = np.empty(values.shape, dtype=np.int64)
    for d in range(values.shape[1]):
        out[:, d] = np.digitize(values[:, d], np.histogram_bin_edges(values[:, d], bins)[:-1])
    return out


def discrete_mutual_info(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[Da, Db] mutual information in nats between each column of `a` [n, Da] and of `b` [n, Db]
    (non-negative integer labels), from their empirical joint distribution."""
    n = a.shape[0]
    out = np.zeros((a.shape[1], b.shape[1]))
    columns = [np.unique(b[:, j], return_inverse=True) for j in range(b.shape[1])]
    for i in range(a.shape[1]):
        x_values, x = np.unique(a[:, i], return_inverse=True)
        for j, (y_values, y) in enumerate(columns):
            counts = np.bincount(x * len(y_values) + y, minlength=len(x_values) * len(y_values))
            joint = counts.reshape(len(x_values), len(y_values)) / n
            outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
            seen = joint > 0
            out[i, j] = float(np.sum(joint[seen] * np.log(joint[seen] / outer[seen])))
    return out


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """[D] entropy in nats of each column of `labels` [n, D], from its empirical distribution."""
    out = np.empty(labels.shape[1])
    for d in range(labels.shape[1]):
        p = np.unique(labels[:, d], return_counts=True)[1] / labels.shape[0]
        out[d] = float(-np.sum(p * np.log(p)))
    return out


def standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets scaled by the training set's mean and standard deviation per column; a constant
    column is only centred (disentanglement_lib would divide by zero)."""
    mean, std = train.mean(0), train.std(0)
    std = np.where(std > 0, std, 1.0)
    return (train - mean) / std, (test - mean) / std


def logistic_regression(seed: int) -> Any:
    """L2 logistic regression (C = 1), one binary classifier per class, fitted by liblinear.

    disentanglement_lib calls `LogisticRegression()` with scikit-learn's defaults; its published
    results predate scikit-learn 0.22, whose defaults were liblinear and one-versus-rest. Naming
    them keeps the scores from changing with the installed version (disentanglement_lib issue #33).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(LogisticRegression(C=1.0, solver="liblinear", max_iter=100, random_state=seed))


def sample_sizes(train_help: str, test_help: str) -> tuple[Param, Param]:
    """`num_train` and `num_test` with disentanglement_lib's defaults, 10,000 and 5,000 images."""
    return (Param("num_train", "int", 10_000, train_help, low=2), Param("num_test", "int", 5_000, test_help, low=1))


def train_and_test(truth: GroundTruth, rng: np.random.Generator, num_train: int,
                   num_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Factor codes and representations of `num_train` images, then of `num_test` more."""
    factors, z = truth.sample(num_train, rng)
    factors_test, z_test = truth.sample(num_test, rng)
    return factors, z, factors_test, z_test


def seed_for_sklearn(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))
