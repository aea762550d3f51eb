"""The separated attribute predictability score (Kumar et al. 2018), as disentanglement_lib computes it.

For every latent i and factor j, a linear SVM predicts factor j from latent i alone (the factors
are treated as discrete, disentanglement_lib's setting); its accuracy on held-out images fills a
[D, F] score matrix. The score is the mean over factors of the gap between the best and the
second-best latent.
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


def score_matrix(z: np.ndarray, factors: np.ndarray, z_test: np.ndarray, factors_test: np.ndarray,
                 seed: int) -> np.ndarray:
    """[D, F] test accuracy of LinearSVC(C=0.01, balanced classes) predicting each factor from each latent."""
    from sklearn.svm import LinearSVC

    scores = np.zeros((z.shape[1], factors.shape[1]))
    for i in range(z.shape[1]):
        for j in range(factors.shape[1]):
            classifier = LinearSVC(C=0.01, class_weight="balanced", dual=True, random_state=seed)
            classifier.fit(z[:, i:i + 1], factors[:, j])
            scores[i, j] = np.mean(classifier.predict(z_test[:, i:i + 1]) == factors_test[:, j])
    return scores


def top_two_gap(scores: np.ndarray) -> float:
    """Mean over factors (columns) of the best minus the second-best latent's score."""
    ranked = np.sort(scores, axis=0)
    return float(np.mean(ranked[-1] - ranked[-2]))


def compute(truth: GroundTruth, rng: np.random.Generator, *, num_train: int, num_test: int) -> dict[str, float]:
    factors, z, factors_test, z_test = train_and_test(truth, rng, num_train, num_test)
    return {"SAP_score": top_two_gap(score_matrix(z, factors, z_test, factors_test, seed_for_sklearn(rng)))}


METRIC = Metric(
    compute=compute,
    params=(
        *sample_sizes("images the classifiers are trained on", "images their accuracy is measured on"),
    ),
    headline="SAP_score",
    paper="Kumar et al. 2018, Variational Inference of Disentangled Latent Concepts from Unlabeled Observations (ICLR)",
    requires=SKLEARN,
)
