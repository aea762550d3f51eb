"""A Gaussian mixture with full covariances fitted to the codes by expectation-maximisation.

The same algorithm and conventions as scikit-learn's GaussianMixture (k-means initialisation, a
small ridge `covariance_reg` on every covariance, 10 machine epsilons added to each component's
count, convergence on the change of the mean log-likelihood), written in torch so it fits on the
model's device and saves as plain tensors. Computed in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from vaezoo.errors import UsageError
from vaezoo.model.parts import BuildContext
from vaezoo.model.samplers import Sampler

KMEANS_ITERATIONS = 10


def kmeans_responsibilities(codes: Tensor, k: int, iterations: int = KMEANS_ITERATIONS) -> Tensor:
    """[N, K] one-hot assignments after Lloyd's k-means from k distinct random codes (the caller's seed)."""
    centres = codes[torch.randperm(codes.shape[0], device=codes.device)[:k]]
    for _ in range(iterations):
        labels = torch.cdist(codes, centres).argmin(1)
        counts = torch.bincount(labels, minlength=k).to(codes.dtype)
        sums = torch.zeros_like(centres).index_add_(0, labels, codes)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    return torch.nn.functional.one_hot(torch.cdist(codes, centres).argmin(1), k).to(codes.dtype)


def m_step(codes: Tensor, resp: Tensor, reg: float) -> tuple[Tensor, Tensor, Tensor]:
    """(weights [K], means [K, D], covariances [K, D, D]) maximising the expected log-likelihood."""
    counts = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps
    means = resp.T @ codes / counts[:, None]
    eye = torch.eye(codes.shape[1], dtype=codes.dtype, device=codes.device)
    covariances = torch.stack([(resp[:, k, None] * (codes - means[k])).T @ (codes - means[k]) / counts[k]
                               for k in range(resp.shape[1])]) + reg * eye
    return counts / codes.shape[0], means, covariances


def e_step(codes: Tensor, weights: Tensor, means: Tensor, covariances: Tensor) -> tuple[Tensor, Tensor]:
    """(log responsibilities [N, K], mean log-likelihood of the codes)."""
    joint = MultivariateNormal(means, covariance_matrix=covariances).log_prob(codes[:, None]) + weights.log()
    norm = torch.logsumexp(joint, 1)
    return joint - norm[:, None], norm.mean()


class GaussianMixtureSampler(Sampler):
    """sum_k w_k N(mu_k, Sigma_k) over the codes; Sigma_k is kept as its Cholesky factor."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        k, d = int(ctx.hp["components"]), ctx.latent_dim
        self.iterations, self.tolerance = int(ctx.hp["iterations"]), float(ctx.hp["tolerance"])
        self.reg = float(ctx.hp["covariance_reg"])
        options = {"dtype": torch.float64}
        self.register_buffer("weights", torch.full((k,), 1.0 / k, **options))
        self.register_buffer("means", torch.zeros(k, d, **options))
        self.register_buffer("scale_tril", torch.eye(d, **options).repeat(k, 1, 1))

    def fit(self, codes: Tensor) -> None:
        codes = codes.to(torch.float64)
        k = self.weights.shape[0]
        if codes.shape[0] < k:
            raise UsageError(f"{codes.shape[0]} codes cannot fit {k} mixture components")
        weights, means, covariances = m_step(codes, kmeans_responsibilities(codes, k), self.reg)
        previous = None
        for _ in range(self.iterations):
            log_resp, mean_log_likelihood = e_step(codes, weights, means, covariances)
            weights, means, covariances = m_step(codes, log_resp.exp(), self.reg)
            if previous is not None and abs(float(mean_log_likelihood - previous)) < self.tolerance:
                break
            previous = mean_log_likelihood
        self.weights.copy_(weights)
        self.means.copy_(means)
        self.scale_tril.copy_(torch.linalg.cholesky(covariances))

    def distribution(self) -> MixtureSameFamily:
        return MixtureSameFamily(Categorical(probs=self.weights, validate_args=False),
                                 MultivariateNormal(self.means, scale_tril=self.scale_tril, validate_args=False),
                                 validate_args=False)

    def sample(self, n: int) -> Tensor:
        return self.distribution().sample((n,))

    def log_prob(self, codes: Tensor) -> Tensor:
        return self.distribution().log_prob(codes.to(torch.float64))
