"""The BetaVAE score (Higgins et al. 2017), as disentanglement_lib computes it.

A training point: pick a factor k, draw two batches of factor codes that agree on factor k only,
and take the mean over the batch of |z1 - z2| per latent. A linear classifier learns to name k from
that vector; the score is its accuracy on fresh points. A latent that holds factor k alone shows
zero difference there, which the classifier reads.
"""

from __future__ import annotations

import numpy as np

from vaezoo.evaluation.ground_truth import GroundTruth
from vaezoo.evaluation.metrics import Metric
from vaezoo.hparams import Param
from vaezoo_plugins.disentanglement.utils import (
    SKLEARN,
    logistic_regression,
    seed_for_sklearn,
)


def points(truth: GroundTruth, rng: np.random.Generator, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """n training points: features [n, D] (mean |z1 - z2| over a batch pair) and the fixed factors [n]."""
    fixed = rng.integers(truth.num_factors, size=n)
    first = truth.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
    second = truth.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
    second[np.arange(n), :, fixed] = first[np.arange(n), :, fixed]
    z1 = truth.represent(first.reshape(n * batch_size, -1)).reshape(n, batch_size, -1)
    z2 = truth.represent(second.reshape(n * batch_size, -1)).reshape(n, batch_size, -1)
    return np.abs(z1 - z2).mean(1), fixed


def compute(truth: GroundTruth, rng: np.random.Generator, *, batch_size: int, num_train: int,
            num_eval: int) -> dict[str, float]:
    train_x, train_y = points(truth, rng, num_train, batch_size)
    classifier = logistic_regression(seed_for_sklearn(rng)).fit(train_x, train_y)
    eval_x, eval_y = points(truth, rng, num_eval, batch_size)
    return {"train_accuracy": float(np.mean(classifier.predict(train_x) == train_y)),
            "eval_accuracy": float(np.mean(classifier.predict(eval_x) == eval_y))}


METRIC = Metric(
    compute=compute,
    params=(
        Param("batch_size", "int", 64, "image pairs averaged into one training point", low=1),
        Param("num_train", "int", 10_000, "training points for the classifier", low=1),
        Param("num_eval", "int", 5_000, "points the accuracy is measured on", low=1),
    ),
    headline="eval_accuracy",
    paper="Higgins et al. 2017, beta-VAE (ICLR)",
    requires=SKLEARN,
)
