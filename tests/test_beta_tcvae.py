"""beta-TCVAE: the minibatch estimators of log q(z) and the KL decomposition, against independent computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from vaezoo_plugins.beta_tcvae.decomposition import (
    kl_decomposition,
    log_aggregate,
    log_weight_matrix,
)

from vaezoo.model.distributions import DiagonalGaussian


def _posteriors(n: int, d: int, seed: int = 0) -> DiagonalGaussian:
    g = torch.Generator().manual_seed(seed)
    return DiagonalGaussian(torch.randn(n, d, generator=g, dtype=torch.float64),
                            0.5 * torch.randn(n, d, generator=g, dtype=torch.float64))


def _normal_pdf(z, mu, var):
    return math.exp(-0.5 * (z - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def test_stratified_weights_sit_on_the_diagonal_and_rows_sum_to_one():
    n, b = 100, 6
    w = log_weight_matrix(b, n, "mss").exp()
    assert torch.allclose(w.diagonal(), torch.full((b,), 1 / n, dtype=w.dtype))
    assert torch.allclose(w.sum(1), torch.ones(b, dtype=w.dtype))
    m = b - 1
    # each row: its own image 1/N, one image (N - M) / (N M) for the last stratum, the rest 1/M
    for row in w.tolist():
        assert sorted(row) == pytest.approx(sorted([1 / n, (n - m) / (n * m)] + [1 / m] * (b - 2)))


def test_stratified_estimate_of_q_z_is_unbiased_over_all_batches():
    """E over batches holding image n* (at any position) of sum_j W_ij q(z|x_j) equals q(z) exactly.

    The reference code's weights, 1/N in column 0 instead of the diagonal, fail this for n* not first.
    """
    n, b, d = 5, 3, 2
    q_all = _posteriors(n, d)
    z = torch.tensor([0.3, -0.4], dtype=torch.float64)
    exact = q_all.log_prob(z).exp().mean()
    for own in range(n):
        others = [i for i in range(n) if i != own]
        for position in range(b):
            estimates = []
            for chosen in itertools.permutations(others, b - 1):
                index = list(chosen[:position]) + [own] + list(chosen[position:])
                q = DiagonalGaussian(q_all.mu[index], q_all.logvar[index])
                zs = z.expand(b, d).clone()
                estimates.append(log_aggregate(q, zs, n, "mss")[0][position].exp())
            assert torch.stack(estimates).mean() == pytest.approx(float(exact), rel=1e-10)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_estimates_match_a_hand_written_double_loop(estimator):
    n, b, d = 10, 4, 3
    q = _posteriors(b, d, seed=1)
    z = q.rsample()
    mu, var = q.mu.numpy(), q.logvar.exp().numpy()
    m = b - 1

    def weight(i, j):
        if estimator == "mws":
            return 1 / b
        if i == j:
            return 1 / n
        return (n - m) / (n * m) if j == (i + 1) % b else 1 / m

    log_qz, log_qz_product = log_aggregate(q, z, n, estimator)
    for i in range(b):
        zi = z[i].numpy()
        joint = sum(weight(i, j) * np.prod([_normal_pdf(zi[k], mu[j, k], var[j, k]) for k in range(d)])
                    for j in range(b))
        marginals = [sum(weight(i, j) * _normal_pdf(zi[k], mu[j, k], var[j, k]) for j in range(b))
                     for k in range(d)]
        assert float(log_qz[i]) == pytest.approx(math.log(joint), rel=1e-10)
        assert float(log_qz_product[i]) == pytest.approx(sum(map(math.log, marginals)), rel=1e-10)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_terms_sum_to_the_monte_carlo_kl(estimator):
    q = _posteriors(8, 4, seed=2)
    z = q.rsample()
    log_pz = DiagonalGaussian(torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)).log_prob(z)
    parts = kl_decomposition(q, z, log_pz, 1000, estimator)
    assert float(sum(parts.values())) == pytest.approx(float((q.log_prob(z) - log_pz).mean()), rel=1e-12)


def test_identical_posteriors_carry_no_information_and_no_total_correlation():
    """All images with one posterior: q(z) = q(z|x) factorises, so MI = TC = 0 and the rest is the KL."""
    b, d = 16, 3
    single = _posteriors(1, d, seed=3)
    q = DiagonalGaussian(single.mu.expand(b, d), single.logvar.expand(b, d))
    z = q.rsample()
    log_pz = DiagonalGaussian(torch.zeros(d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)).log_prob(z)
    parts = kl_decomposition(q, z, log_pz, 500, "mss")
    assert float(parts["mi"]) == pytest.approx(0.0, abs=1e-12)
    assert float(parts["tc"]) == pytest.approx(0.0, abs=1e-12)
    assert float(parts["dim_kl"]) == pytest.approx(float((q.log_prob(z) - log_pz).mean()), rel=1e-12)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_total_correlation_estimate_matches_the_gaussian_closed_form(rho, estimator):
    """Narrow posteriors around correlated means: q(z) ~ N(0, S), TC = -log(1 - r^2) / 2. Logged
    under both estimators without constant offsets (the paper's mws weights 1/(N B) would put this
    (D - 1) log N = 7.6 nats too high)."""
    n, var = 2000, 0.02
    g = torch.Generator().manual_seed(4)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    means = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    q = DiagonalGaussian(means, torch.full_like(means, math.log(var)))
    z = means + math.sqrt(var) * torch.randn(n, 2, generator=g, dtype=torch.float64)
    r = rho / (1 + var)
    expected = -0.5 * math.log(1 - r**2)
    log_qz, log_qz_product = log_aggregate(q, z, n, estimator)
    assert float((log_qz - log_qz_product).mean()) == pytest.approx(expected, abs=0.06)


def test_estimator_needs_two_images_per_batch():
    from vaezoo.errors import UsageError

    with pytest.raises(UsageError, match="batch size"):
        log_weight_matrix(1, 100, "mss")
