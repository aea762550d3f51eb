"""The FactorVAE score (Kim & Mnih 2018), as disentanglement_lib computes it.

Latents are scaled by their standard deviation over the data (those below `prune_threshold` are
dropped as collapsed). A vote: fix one factor k across a batch, find the latent whose scaled
variance over the batch is smallest, and record (k, that latent). The classifier is the majority
vote (each latent names the factor it was most often chosen for); the score is its accuracy.
"""

from __future__ import annotations

import numpy as np

from vaezoo.evaluation.ground_truth import GroundTruth
from vaezoo.evaluation.metrics import Metric
from vaezoo.hparams import Param


def votes(truth: GroundTruth, rng: np.random.Generator, n: int, batch_size: int, scale: np.ndarray) -> np.ndarray:
    """[F, D'] counts over n batches: which (active) latent varied least when factor k was fixed.

    `scale` is the data variance of each active latent (NaN for a pruned one, which never wins).
    """
    fixed = rng.integers(truth.num_factors, size=n)
    codes = truth.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
    codes[np.arange(n), :, fixed] = codes[np.arange(n), :1, fixed]
    z = truth.represent(codes.reshape(n * batch_size, -1)).reshape(n, batch_size, -1)
    active = ~np.isnan(scale)
    least = np.argmin(z[:, :, active].var(1, ddof=1) / scale[active], axis=1)
    counts = np.zeros((truth.num_factors, int(active.sum())), dtype=np.int64)
    np.add.at(counts, (fixed, least), 1)
    return counts


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> float:
    """Accuracy on `eval_votes` of the classifier that maps each latent to its most voted factor in
    `train_votes` (ties to the lower factor)."""
    choice = np.argmax(train_votes, axis=0)
    return float(eval_votes[choice, np.arange(eval_votes.shape[1])].sum() / eval_votes.sum())


def compute(truth: GroundTruth, rng: np.random.Generator, *, batch_size: int, num_train: int, num_eval: int,
            num_variance_estimate: int, prune_threshold: float) -> dict[str, float]:
    variance = truth.sample(num_variance_estimate, rng)[1].var(0, ddof=1)
    active = np.sqrt(variance) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    scale = np.where(active, variance, np.nan)
    train_votes = votes(truth, rng, num_train, batch_size, scale)
    eval_votes = votes(truth, rng, num_eval, batch_size, scale)
    return {"train_accuracy": majority_vote_accuracy(train_votes, train_votes),
            "eval_accuracy": majority_vote_accuracy(train_votes, eval_votes),
            "num_active_dims": int(active.sum())}


METRIC = Metric(
    compute=compute,
    params=(
        Param("batch_size", "int", 64, "images per vote, all sharing the fixed factor", low=2),
        Param("num_train", "int", 10_000, "votes the majority classifier is built from", low=1),
        Param("num_eval", "int", 5_000, "votes the accuracy is measured on", low=1),
        Param("num_variance_estimate", "int", 10_000, "images for each latent's variance over the data", low=2),
        Param("prune_threshold", "float", 0.05, "latents whose standard deviation is below this are left out",
              low=0.0),
    ),
    headline="eval_accuracy",
    paper="Kim & Mnih 2018, Disentangling by Factorising (ICML)",
)
