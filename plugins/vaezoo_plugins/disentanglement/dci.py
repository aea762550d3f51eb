"""Disentanglement, completeness and informativeness (Eastwood & Williams 2018), as disentanglement_lib
computes them.

Gradient-boosted trees predict each factor from all latents; their feature importances fill a
[D, F] matrix R. Disentanglement: 1 minus the entropy (base F) of each latent's row of R,
normalised, weighted by the latent's share of all importance. Completeness: the same for each
factor's column (base D). Informativeness: the trees' mean accuracy (train and test).
"""

from __future__ import annotations

import numpy as np

from vaezoo.evaluation.ground_truth import GroundTruth
from vaezoo.evaluation.metrics import Metric
from vaezoo_plugins.disentanglement.utils import (
    SKLEARN,
    sample_sizes,
    seed_for_sklearn,
    train_and_test,
)

SMOOTHING = 1e-11  # disentanglement_lib adds it to R before taking entropies


def importance(z: np.ndarray, factors: np.ndarray, z_test: np.ndarray, factors_test: np.ndarray,
               seed: int) -> tuple[np.ndarray, float, float]:
    """R [D, F] from GradientBoostingClassifier (scikit-learn defaults), and its train and test accuracy."""
    from sklearn.ensemble import GradientBoostingClassifier

    matrix = np.zeros((z.shape[1], factors.shape[1]))
    train, test = [], []
    for j in range(factors.shape[1]):
        trees = GradientBoostingClassifier(random_state=seed).fit(z, factors[:, j])
        matrix[:, j] = np.abs(trees.feature_importances_)
        train.append(np.mean(trees.predict(z) == factors[:, j]))
        test.append(np.mean(trees.predict(z_test) == factors_test[:, j]))
    return matrix, float(np.mean(train)), float(np.mean(test))


def _one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
    """1 - entropy (in base `base`) of each column of `p` after normalising it to sum to 1."""
    p = p / p.sum(0, keepdims=True)
    return 1.0 + (p * np.log(p)).sum(0) / np.log(base)


def disentanglement(r: np.ndarray) -> float:
    """Importance-weighted mean over latents (rows of R [D, F]) of 1 - H_F(row)."""
    per_latent = _one_minus_entropy(r.T + SMOOTHING, r.shape[1])
    weights = r.sum(1) if r.sum() > 0 else np.ones(r.shape[0])
    return float(np.sum(per_latent * weights / weights.sum()))


def completeness(r: np.ndarray) -> float:
    """Importance-weighted mean over factors (columns of R [D, F]) of 1 - H_D(column)."""
    per_factor = _one_minus_entropy(r + SMOOTHING, r.shape[0])
    weights = r.sum(0) if r.sum() > 0 else np.ones(r.shape[1])
    return float(np.sum(per_factor * weights / weights.sum()))


def compute(truth: GroundTruth, rng: np.random.Generator, *, num_train: int, num_test: int) -> dict[str, float]:
    factors, z, factors_test, z_test = train_and_test(truth, rng, num_train, num_test)
    r, train, test = importance(z, factors, z_test, factors_test, seed_for_sklearn(rng))
    return {"disentanglement": disentanglement(r), "completeness": completeness(r),
            "informativeness_train": train, "informativeness_test": test}


METRIC = Metric(
    compute=compute,
    params=(
        *sample_sizes("images the trees are trained on", "images the test accuracy is measured on"),
    ),
    headline="disentanglement",
    paper="Eastwood & Williams 2018, A Framework for the Quantitative Evaluation of Disentangled "
          "Representations (ICLR)",
    requires=SKLEARN,
)
