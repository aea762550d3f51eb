"""Modularity and explicitness (Ridgeway & Mozer 2018), as disentanglement_lib computes them.

Modularity: with the mutual information m[i, j] between latent i (histogram-discretised) and
factor j, each latent scores 1 - (sum_j m_ij^2 - max_j m_ij^2) / (max_j m_ij^2 (F - 1)), i.e. 1 when
it informs about one factor only (0 for a latent that informs about none); the score is the mean.
Explicitness: a logistic regression on the standardised latents predicts each factor; the score is
its ROC AUC (one class against the rest, averaged over classes), averaged over factors.
"""

from __future__ import annotations

import numpy as np

from vaezoo.evaluation.ground_truth import GroundTruth
from vaezoo.evaluation.metrics import Metric
from vaezoo.hparams import Param
from vaezoo_plugins.disentanglement.utils import (
    SKLEARN,
    discrete_mutual_info,
    histogram_discretize,
    logistic_regression,
    sample_sizes,
    seed_for_sklearn,
    standardize,
    train_and_test,
)


def modularity(information: np.ndarray) -> float:
    """Mean over latents of the modularity of each row of the mutual information [D, F]."""
    squared = np.square(information)
    peak = squared.max(1)
    spread = np.divide(squared.sum(1) - peak, peak * (squared.shape[1] - 1),
                       out=np.ones_like(peak), where=peak > 0)  # an uninformative latent scores 0
    return float(np.mean(1.0 - spread))


def explicitness(z: np.ndarray, factors: np.ndarray, z_test: np.ndarray, factors_test: np.ndarray,
                 seed: int) -> tuple[float, float]:
    """Mean over factors of the macro ROC AUC of a logistic regression, on the training and test images.

    A class is scored where the images hold both it and others (on the test images of a small
    sample, a rare class may be absent; disentanglement_lib fails there).
    """
    from sklearn.metrics import roc_auc_score

    z, z_test = standardize(z, z_test)
    train, test = [], []
    for j in range(factors.shape[1]):
        classifier = logistic_regression(seed).fit(z, factors[:, j])
        for x, y, out in ((z, factors[:, j], train), (z_test, factors_test[:, j], test)):
            probability = classifier.predict_proba(x)
            if len(classifier.classes_) == 2:
                out.append(roc_auc_score(y == classifier.classes_[1], probability[:, 1]))
                continue
            onehot = y[:, None] == classifier.classes_[None, :]
            scored = (onehot.sum(0) > 0) & (onehot.sum(0) < len(y))
            out.append(roc_auc_score(onehot[:, scored], probability[:, scored], average="macro"))
    return float(np.mean(train)), float(np.mean(test))


def compute(truth: GroundTruth, rng: np.random.Generator, *, num_train: int, num_test: int,
            num_bins: int) -> dict[str, float]:
    factors, z, factors_test, z_test = train_and_test(truth, rng, num_train, num_test)
    train, test = explicitness(z, factors, z_test, factors_test, seed_for_sklearn(rng))
    return {"modularity_score": modularity(discrete_mutual_info(histogram_discretize(z, num_bins), factors)),
            "explicitness_score_train": train, "explicitness_score_test": test}


METRIC = Metric(
    compute=compute,
    params=(
        *sample_sizes("images for the mutual information and the classifiers",
                      "images the test ROC AUC is measured on"),
        Param("num_bins", "int", 20, "equal-width histogram bins per latent", low=1),
    ),
    headline="modularity_score",
    paper="Ridgeway & Mozer 2018, Learning Deep Disentangled Embeddings with the F-Statistic Loss (NeurIPS)",
    requires=SKLEARN,
)
